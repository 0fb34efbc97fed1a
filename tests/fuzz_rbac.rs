//! Property tests of the RBAC stage: whatever AuthorizationPolicy a user
//! writes, compiling it is a refusal with a path or a policy, never a
//! panic; whatever a client sends (paths, headers, addresses, certificates,
//! tokens), the stage allows, denies or refuses without panicking (a panic
//! traps the VM: SPEC.md §proxy-wasm ABI G); and path normalisation is a
//! fixed point, so a path Envoy already normalised is left alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::borrow::Cow;
use std::rc::Rc;

use meshwasm::authn::Identity;
use meshwasm::config::{Document, Kind, PathNormalization};
use meshwasm::http::HeaderList;
use meshwasm::pipeline::{Env, Exchange, MetricId, MetricSink, Metrics, Stage};
use meshwasm::rbac::path::{for_matching, normalize};
use meshwasm::rbac::{RbacPolicy, RbacStage, RbacState};
use meshwasm::rng::SplitMix64;
use meshwasm::verdict::Verdict;
use proptest::prelude::*;
use serde_json::{Value, json};

struct Sink;

impl MetricSink for Sink {
    fn add(&mut self, _id: MetricId, _delta: i64) {}
    fn value(&self, _id: MetricId) -> Option<i64> {
        None
    }
}

/// Strings built from the pieces Istio values are made of.
fn value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("*".to_owned()),
        Just("/".to_owned()),
        Just("{*}".to_owned()),
        Just("{**}".to_owned()),
        Just("cluster.local/ns/".to_owned()),
        Just("spiffe://".to_owned()),
        Just("10.0.0.0/8".to_owned()),
        Just("::1".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        "[a-z0-9.:%;-]{0,6}",
        any::<String>().prop_map(|s| s.chars().take(4).collect()),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|v| v.concat())
}

fn values() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(value(), 0..3)
}

const SOURCE_FIELDS: &[&str] = &[
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "trustDomains",
    "notTrustDomains",
];
const OPERATION_FIELDS: &[&str] = &[
    "hosts",
    "notHosts",
    "ports",
    "notPorts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
];
const KEYS: &[&str] = &[
    "request.headers[x-a]",
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "source.trustDomain",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims[a][b]",
    "request.auth.claims[scope]",
    "destination.ip",
    "destination.port",
    "connection.sni",
    "experimental.envoy.filters.a.b[c]",
    "request.unknown",
    "request.headers",
    "",
];

fn fields(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(names), values()), 0..3).prop_map(|fs| {
        Value::Object(
            fs.into_iter()
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect(),
        )
    })
}

fn rule() -> impl Strategy<Value = Value> {
    let when = (prop::sample::select(KEYS), values(), values())
        .prop_map(|(k, v, n)| json!({"key": k, "values": v, "notValues": n}));
    (
        prop::option::of(prop::collection::vec(fields(SOURCE_FIELDS), 0..3)),
        prop::option::of(prop::collection::vec(fields(OPERATION_FIELDS), 0..3)),
        prop::collection::vec(when, 0..3),
    )
        .prop_map(|(from, to, when)| {
            let mut r = json!({"when": when});
            if let Some(f) = from {
                r["from"] = f.into_iter().map(|s| json!({"source": s})).collect();
            }
            if let Some(t) = to {
                r["to"] = t.into_iter().map(|o| json!({"operation": o})).collect();
            }
            r
        })
}

fn policy() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["ALLOW", "DENY", "AUDIT", "CUSTOM", "allow"]),
        prop::collection::vec(rule(), 0..3),
        prop::sample::select(vec!["foo", "istio-system", "bar"]),
        prop::option::of(prop::sample::select(vec!["true", "false", "yes"])),
        "[a-c]{1,2}",
    )
        .prop_map(|(action, rules, ns, dry, name)| {
            let mut p = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"action": action, "rules": rules}});
            if let Some(d) = dry {
                p["metadata"]["annotations"] = json!({"istio.io/dry-run": d});
            }
            if action == "CUSTOM" {
                p["spec"]["provider"] = json!({"name": "ext"});
            }
            p
        })
}

/// Paths from the pieces bypasses are made of.
fn path() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"/".to_vec()),
        Just(b"\\".to_vec()),
        Just(b".".to_vec()),
        Just(b"..".to_vec()),
        Just(b";x".to_vec()),
        Just(b"%2e".to_vec()),
        Just(b"%2E".to_vec()),
        Just(b"%2f".to_vec()),
        Just(b"%5C".to_vec()),
        Just(b"%25".to_vec()),
        Just(b"%00".to_vec()),
        Just(b"%".to_vec()),
        Just(b"?".to_vec()),
        Just(b"#".to_vec()),
        Just(b"admin".to_vec()),
        Just("é".as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..3),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|v| {
        let mut p = b"/".to_vec();
        p.extend(v.concat());
        p
    })
}

fn level() -> impl Strategy<Value = PathNormalization> {
    prop::sample::select(vec![
        PathNormalization::None,
        PathNormalization::Base,
        PathNormalization::MergeSlashes,
        PathNormalization::DecodeAndMergeSlashes,
    ])
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        value().prop_map(String::into_bytes),
        Just(b"127.0.0.1:40000".to_vec()),
        Just(b"[::1]:1".to_vec()),
        Just(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| {
            let mut p = b"-----BEGIN CERTIFICATE-----\n".to_vec();
            p.extend(base64_encode(&[&[0x30, 0x82, 0x01, 0x00][..], &b].concat()).bytes());
            p.extend(b"\n-----END CERTIFICATE-----\n");
            p
        }),
    ]
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn request() -> impl Strategy<Value = HeaderList> {
    let properties = prop::collection::vec(
        (
            prop::sample::select(vec![
                "connection.mtls",
                "connection.peer_certificate",
                "connection.uri_san_peer_certificate",
                "connection.dns_san_peer_certificate",
                "connection.subject_peer_certificate",
                "source.address",
                "destination.address",
                "connection.requested_server_name",
                "metadata\0filter_metadata\0envoy.filters.a.b\0c",
            ]),
            bytes(),
        ),
        0..6,
    );
    let headers = prop::collection::vec(
        (
            prop::sample::select(vec![
                "x-a",
                "x-forwarded-for",
                ":authority",
                ":method",
                "x-a",
            ]),
            bytes(),
        ),
        0..5,
    );
    (path(), headers, properties, prop::option::of(any::<u32>())).prop_map(
        |(p, hs, props, port)| {
            let mut r = HeaderList::new(vec![
                (":path".into(), p),
                (":method".into(), b"GET".to_vec()),
            ]);
            r.pairs
                .extend(hs.into_iter().map(|(k, v)| (k.to_owned(), v)));
            r.properties = props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            r.port = port;
            r
        },
    )
}

fn identity() -> impl Strategy<Value = Option<Identity>> {
    let claim = prop_oneof![
        value().prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        values().prop_map(|v| json!(v)),
        value().prop_map(|s| json!({"b": s})),
        Just(Value::Null),
    ];
    prop::option::of(prop::collection::vec(
        (
            prop::sample::select(vec!["iss", "sub", "aud", "azp", "a", "scope"]),
            claim,
        ),
        0..5,
    ))
    .prop_map(|c| {
        c.map(|c| Identity {
            claims: c.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            ..Identity::default()
        })
    })
}

/// A valid value for a field or key.
fn valid(field: &str) -> Vec<&'static str> {
    match field {
        "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" | "source.ip"
        | "remote.ip" | "destination.ip" => vec!["10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8"],
        "ports" | "notPorts" | "destination.port" => vec!["80", "28080", "0"],
        "paths" | "notPaths" => vec![
            "/admin", "/admin/*", "*", "*/x", "/a/{*}/b", "/{**}/x", "/a/{**}",
        ],
        "serviceAccounts" | "notServiceAccounts" | "source.serviceAccount" => {
            vec!["sleep", "bar/sleep"]
        }
        _ => vec![
            "*",
            "x",
            "x*",
            "*x",
            "cluster.local/ns/foo/*",
            "*/sa/admin",
            "iss/sub",
            "GET",
            "a.b",
        ],
    }
}

fn valid_fields(names: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec(prop::sample::select(names), 1..3)
        .prop_flat_map(|names| {
            let vals: Vec<_> = names
                .iter()
                .map(|n| prop::collection::vec(prop::sample::select(valid(n)), 1..3))
                .collect();
            (Just(names), vals)
        })
        .prop_map(|(names, vals)| {
            Value::Object(
                names
                    .into_iter()
                    .zip(vals)
                    .map(|(k, v)| (k.to_owned(), json!(v)))
                    .collect(),
            )
        })
}

fn valid_policy() -> impl Strategy<Value = Value> {
    let keys = &KEYS[..KEYS.len() - 3];
    let when = (prop::sample::select(keys), any::<bool>()).prop_flat_map(|(k, not)| {
        prop::collection::vec(prop::sample::select(valid(k)), 1..3).prop_map(move |v| {
            if not {
                json!({"key": k, "notValues": v})
            } else {
                json!({"key": k, "values": v})
            }
        })
    });
    let source = valid_fields(&[
        "principals",
        "notPrincipals",
        "requestPrincipals",
        "namespaces",
        "ipBlocks",
        "notRemoteIpBlocks",
        "trustDomains",
        "notTrustDomains",
    ]);
    let rule = (
        prop::option::of(prop::collection::vec(source, 1..3)),
        prop::option::of(prop::collection::vec(valid_fields(OPERATION_FIELDS), 1..3)),
        prop::collection::vec(when, 0..3),
    )
        .prop_map(|(from, to, when)| {
            let mut r = json!({"when": when});
            if let Some(f) = from {
                r["from"] = f.into_iter().map(|s| json!({"source": s})).collect();
            }
            if let Some(t) = to {
                r["to"] = t.into_iter().map(|o| json!({"operation": o})).collect();
            }
            r
        });
    (
        prop::sample::select(vec!["ALLOW", "DENY", "AUDIT"]),
        prop::collection::vec(rule, 0..3),
        "[a-z]{3}",
        any::<bool>(),
    )
        .prop_map(|(action, rules, name, dry)| {
            json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": name, "namespace": "foo",
                             "annotations": {"istio.io/dry-run": dry.to_string()}},
                "spec": {"action": action, "rules": rules}})
        })
}

fn compile(policies: Vec<Value>, level: PathNormalization) -> Option<RbacPolicy> {
    let level = serde_json::to_value(format!("{level:?}")).unwrap();
    let level = match level.as_str().unwrap() {
        "MergeSlashes" => "MERGE_SLASHES",
        "DecodeAndMergeSlashes" => "DECODE_AND_MERGE_SLASHES",
        "None" => "NONE",
        _ => "BASE",
    };
    let doc = serde_json::to_vec(&json!({
        "workload": {"namespace": "foo", "labels": {"app": "httpbin"}},
        "resources": policies, "envoy": {"pathNormalization": level}}))
    .unwrap();
    let doc = Document::parse(&doc, &[Kind::AuthorizationPolicy]).ok()?;
    match RbacPolicy::compile(&doc) {
        Ok(p) => Some(p),
        Err(e) => {
            assert!(
                e.path.starts_with("resources["),
                "an error names its field: {e}"
            );
            None
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn any_policy_and_any_request_decide_without_panicking(
        policies in prop::collection::vec(policy(), 0..4),
        level in level(),
        requests in prop::collection::vec((request(), identity()), 1..6),
    ) {
        let Some(policy) = compile(policies, level) else { return Ok(()); };
        let mut metrics = Metrics::default();
        let stage = RbacStage::new(Rc::new(policy), &mut metrics);
        for (r, id) in requests {
            let mut ex = Exchange::new(r);
            ex.identity = id.map(std::rc::Rc::new);
            let mut rng = SplitMix64::new(1);
            let mut sink = Sink;
            let mut env = Env::new(&mut rng, &mut sink);
            match stage.request(&mut ex, &mut RbacState::default(), &mut env) {
                Verdict::Continue(_) => {}
                Verdict::Reply(reply) => prop_assert!(reply.status == 403 || reply.status == 400),
                Verdict::Pause(w) => prop_assert!(false, "waited: {w:?}"),
            }
        }
    }

    #[test]
    fn valid_policies_compile_and_decide_any_request(
        policies in prop::collection::vec(valid_policy(), 1..4),
        level in level(),
        requests in prop::collection::vec((request(), identity()), 1..6),
    ) {
        let names: std::collections::BTreeSet<String> =
            policies.iter().map(|p| p["metadata"]["name"].to_string()).collect();
        let unique = names.len() == policies.len();
        let policy = compile(policies, level);
        prop_assert_eq!(policy.is_some(), unique);
        let Some(policy) = policy else { return Ok(()); };
        let stage = RbacStage::new(Rc::new(policy), &mut Metrics::default());
        for (r, id) in requests {
            let mut ex = Exchange::new(r);
            ex.identity = id.map(std::rc::Rc::new);
            let mut rng = SplitMix64::new(1);
            let mut sink = Sink;
            let mut env = Env::new(&mut rng, &mut sink);
            let verdict = stage.request(&mut ex, &mut RbacState::default(), &mut env);
            prop_assert!(!matches!(verdict, Verdict::Pause(_)));
        }
    }

    #[test]
    fn normalisation_is_a_fixed_point_and_keeps_the_query(p in path(), level in level()) {
        if let Ok(once) = normalize(level, &p) {
            let twice = normalize(level, &once).expect("a normal path is not malformed");
            prop_assert_eq!(&twice, &once);
            prop_assert!(matches!(twice, Cow::Borrowed(_)));
            if level != PathNormalization::None {
                prop_assert_eq!(once.first(), Some(&b'/'));
            }
            let query = |x: &[u8]| x.iter().position(|b| *b == b'?').map(|i| x[i..].to_vec());
            prop_assert_eq!(query(&once), query(&p));
            let m = for_matching(&once, true);
            prop_assert!(!m.contains(&b';') && !m.contains(&b'?'));
        }
    }
}
