//! The route filter in real Envoy 1.40 where a scenario file cannot say it:
//! a thousand users against the seed's A/B formula, counters against
//! upstream hits (and the harness's counters against its own), stickiness
//! across two Envoy workers. Expected values come from the seed's Go formula
//! (SPEC.md §seed behaviours, A/B assignment 2), computed here.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;

use meshwasm_harness::client;
use meshwasm_harness::scenario::{
    Backend, EnvoyBackend, Expect, HarnessBackend, Observed, Scenario, Started, Step,
};

/// The seed's `ab-testing.go` assignment, written out: FNV-1a-32 of the user
/// id followed by the test name, `% 100 < 50` ⇒ A. A and B are the first and
/// second destinations of the VirtualService below: v1 and v2.
fn seed_subset(user: &str) -> &'static str {
    let mut h: u32 = 2_166_136_261;
    for b in format!("{user}checkout-flow").bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(16_777_619);
    }
    if h % 100 < 50 { "v1" } else { "v2" }
}

/// A 50/50 VirtualService, sticky by `x-user-id` under the test
/// `checkout-flow`, echoing the subset in `x-ab-variant`; `/maintenance` is
/// a direct response (rule `http[0]`), the split is rule `http[1]`.
const STICKY: &str = r#"
filters: [route]
config:
  inline:
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {name: product-service}
      spec:
        host: product-service
        subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
    - apiVersion: networking.istio.io/v1
      kind: VirtualService
      metadata:
        name: checkout
        annotations:
          meshwasm.io/sticky-by: "header:x-user-id"
          meshwasm.io/sticky-test: checkout-flow
          meshwasm.io/sticky-response-header: x-ab-variant
      spec:
        hosts: [product-service]
        http:
          - match: [{uri: {prefix: /maintenance}}]
            directResponse: {status: 503, body: {string: "maintenance\n"}}
          - route:
              - {destination: {host: product-service, subset: v1}, weight: 50}
              - {destination: {host: product-service, subset: v2}, weight: 50}
"#;

fn sticky_scenario() -> Scenario {
    Scenario::from_yaml("route_e2e/sticky", STICKY).unwrap()
}

fn envoy(workers: u32) -> EnvoyBackend {
    match EnvoyBackend::start_with_workers(&sticky_scenario(), workers).unwrap() {
        Started::Running(e) => e,
        Started::Refused(log) => panic!("Envoy refused the configuration:\n{log}"),
    }
}

fn harness() -> HarnessBackend {
    match HarnessBackend::start(&sticky_scenario(), 7).unwrap() {
        Started::Running(h) => h,
        Started::Refused(log) => panic!("the harness refused the configuration:\n{log}"),
    }
}

/// A request step (sent once) with `headers`.
fn step(path: &str, authority: &str, headers: &[(&str, &str)]) -> Step {
    Step {
        name: path.to_owned(),
        method: "GET".into(),
        path: path.into(),
        authority: authority.into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        header_list: Vec::new(),
        client: Default::default(),
        jwt: None,
        repeat: 1,
        upstream_fail: BTreeMap::new(),
        upstream_delay_ms: BTreeMap::new(),
        wait_ms: 0,
        expect: Expect::default(),
    }
}

fn user_step(user: &str) -> Step {
    step("/api/products", "product-service", &[("x-user-id", user)])
}

/// `n` user ids of varied shapes (a seeded LCG, so the same every run).
fn users(n: usize) -> Vec<String> {
    let mut x: u64 = 0x6d65_7368;
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            match i % 4 {
                0 => format!("user-{i}"),
                1 => format!("{:08x}", x >> 32),
                2 => format!("customer{}@example.com", x % 100_000),
                _ => format!("U{}-{:x}", i * 7919, x & 0xffff),
            }
        })
        .collect()
}

fn send_all(b: &mut dyn Backend, steps: &[Step]) -> Vec<Observed> {
    steps.iter().map(|s| b.send(s).unwrap()).collect()
}

#[test]
fn a_thousand_users_get_the_variant_of_the_seed_formula_in_envoy() {
    // Arrange
    let mut envoy = envoy(1);
    let users = users(1000);
    let steps: Vec<Step> = users.iter().map(|u| user_step(u)).collect();

    // Act
    let seen = send_all(&mut envoy, &steps);

    // Assert
    let mut per_subset: BTreeMap<&str, usize> = BTreeMap::new();
    for (user, o) in users.iter().zip(&seen) {
        let want = seed_subset(user);
        *per_subset.entry(want).or_default() += 1;
        assert_eq!(o.status, 200, "{user}");
        assert_eq!(o.upstream.as_deref(), Some(want), "{user}: answered by");
        assert_eq!(
            o.header("x-ab-variant"),
            Some(want),
            "{user}: response header"
        );
        let variant = o
            .upstream_request
            .as_ref()
            .and_then(|r| r.header("x-ab-test-variant"));
        assert_eq!(variant, Some(want), "{user}: variant the upstream got");
    }
    assert_eq!(per_subset.len(), 2, "both variants occur: {per_subset:?}");
}

#[test]
fn counters_equal_the_upstream_hits_in_envoy_and_in_the_harness() {
    // Arrange
    let users = users(200);
    let mut steps: Vec<Step> = users.iter().map(|u| user_step(u)).collect();
    steps.extend((0..5).map(|_| step("/api/products", "other-service", &[])));
    steps.extend((0..3).map(|_| step("/maintenance", "product-service", &[])));
    let want_v1 = users.iter().filter(|u| seed_subset(u) == "v1").count() as u64;
    let want_v2 = users.len() as u64 - want_v1;
    let mut envoy = envoy(1);
    let mut harness = harness();

    // Act
    send_all(&mut envoy, &steps);
    send_all(&mut harness, &steps);

    // Assert
    let rq = "wasmcustom.meshwasm.route.rq.default.checkout.http_1_";
    let counters = [
        (format!("{rq}.v1"), want_v1),
        (format!("{rq}.v2"), want_v2),
        ("wasmcustom.meshwasm.route.pass_through".into(), 5),
        ("wasmcustom.meshwasm.route.direct_response".into(), 3),
        ("wasmcustom.meshwasm.route.no_route".into(), 0),
    ];
    // Pass-through requests reach v1 through envoy.yaml's fallback route.
    let hits = BTreeMap::from([("v1".to_owned(), want_v1 + 5), ("v2".to_owned(), want_v2)]);
    assert_eq!(envoy.hits().unwrap(), hits, "Envoy's upstream hits");
    assert_eq!(harness.hits().unwrap(), hits, "the harness's upstream hits");
    let wrong: Vec<String> = counters
        .iter()
        .map(|(name, want)| {
            (
                name,
                want,
                envoy.envoy().counter(name),
                harness.metric(name),
            )
        })
        .filter(|(_, want, e, h)| *e != Some(**want) || *h != Some(**want))
        .map(|(name, want, e, h)| format!("{name}: Envoy {e:?}, harness {h:?}, expected {want}"))
        .collect();
    let stats = envoy.envoy().stats();
    let ours: Vec<&str> = stats
        .lines()
        .filter(|l| l.starts_with("wasmcustom."))
        .collect();
    assert!(
        wrong.is_empty(),
        "{}\nEnvoy's wasm counters:\n{}",
        wrong.join("\n"),
        ours.join("\n")
    );
}

#[test]
fn a_user_keeps_the_subset_across_two_envoy_workers() {
    // Arrange
    let envoy = envoy(2);
    let url = format!("http://{}/api/products", envoy.addr().unwrap());
    let mut users = users(8);
    users.extend(["alice", "bob", ""].map(str::to_owned));
    let rounds = 12;

    // Act: a fresh connection per request, so the kernel spreads them over
    // both workers' listeners (each worker has its own wasm VM).
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    for _ in 0..rounds {
        for user in &users {
            let r = client::get(&url, &[("host", "product-service"), ("x-user-id", user)]).unwrap();
            assert_eq!(r.status, 200, "{user}");
            seen.push((user.clone(), r.header("service-version").map(str::to_owned)));
        }
    }

    // Assert
    for (user, got) in &seen {
        let id = if user.is_empty() { "anonymous" } else { user };
        assert_eq!(got.as_deref(), Some(seed_subset(id)), "user {user:?}");
    }
    let stats = envoy.envoy().stats();
    let per_worker: Vec<u64> = ["worker_0", "worker_1"]
        .iter()
        .map(|w| {
            stats
                .lines()
                .filter(|l| {
                    l.starts_with("listener.") && l.contains(&format!(".{w}.downstream_cx_total: "))
                })
                .filter_map(|l| l.rsplit_once(": ")?.1.trim().parse::<u64>().ok())
                .sum()
        })
        .collect();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers served connections: {per_worker:?}"
    );
}
