//! DestinationRule rules against Istio's (validation.go
//! `ValidateDestinationRule`, `validateTrafficPolicy` and its parts;
//! agent/validation.go `ValidateTLS`, locality settings), one test per
//! rule.

use serde_json::{Value, json};

use super::traffic_policy::{is_prime, localities};
use crate::config::{Document, Kind};
use crate::testutil::document_of;

fn dr(spec: Value) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": "dr", "namespace": "ns"}, "spec": spec})
}

/// `path: message` of the error, or "accepted".
fn verdict(spec: Value) -> String {
    Document::parse(&document_of(vec![dr(spec)]), Kind::ALL)
        .map_or_else(|e| e.to_string(), |_| "accepted".into())
}

/// A DestinationRule for `reviews` with top-level `trafficPolicy: tp`.
fn policy(tp: Value) -> Value {
    json!({"host": "reviews", "trafficPolicy": tp})
}

fn refuses(cases: &[(Value, &str, &str)]) {
    crate::testutil::assert_refusals(verdict, cases);
}

fn accepts(specs: &[Value]) {
    crate::testutil::assert_accepted(verdict, specs);
}

#[test]
fn the_host_is_a_wildcard_domain() {
    refuses(&[
        (json!({"host": "1.1.1.1"}), "host", "all-numeric"),
        (json!({"host": "foo.*.com"}), "host", "invalid"),
        (
            json!({"host": format!("{}.com", "x".repeat(300))}),
            "host",
            "too long",
        ),
    ]);
    accepts(&[json!({"host": "*.foo.com"}), json!({"host": "reviews"})]);
}

#[test]
fn subsets_have_unique_dns_label_names_and_valid_labels() {
    refuses(&[
        (
            json!({"host": "a", "subsets": [{"name": "v1"}, {"name": "v1"}]}),
            "subsets[1].name",
            "duplicate subset names: v1",
        ),
        (
            json!({"host": "a", "subsets": [{"name": "v_1"}]}),
            "subsets[0].name",
            "subset name is invalid",
        ),
        (
            json!({"host": "a", "subsets": [{"name": "v1", "labels": {"a": "b c"}}]}),
            "subsets[0].labels.a",
            "invalid tag value",
        ),
        (
            json!({"host": "a", "subsets": [{"name": "v1", "trafficPolicy": {}}]}),
            "subsets[0].trafficPolicy",
            "at least one field",
        ),
    ]);
}

#[test]
fn a_traffic_policy_sets_something_and_not_tunnel_with_proxy_protocol() {
    refuses(&[
        (
            policy(json!({})),
            "trafficPolicy",
            "traffic policy must have at least one field",
        ),
        (
            policy(json!({"tunnel": {"targetHost": "a.b", "targetPort": 80}, "proxyProtocol": {}})),
            "trafficPolicy",
            "tunnel and proxyProtocol",
        ),
        (
            policy(json!({"tunnel": {"protocol": "GET", "targetHost": "a.b", "targetPort": 80}})),
            "trafficPolicy.tunnel.protocol",
            "CONNECT",
        ),
        (
            policy(json!({"tunnel": {"targetHost": "a.b", "targetPort": 0}})),
            "trafficPolicy.tunnel.targetPort",
            "port number 0",
        ),
        (
            policy(json!({"retryBudget": {"percent": 101.0}})),
            "trafficPolicy.retryBudget.percent",
            "not in range",
        ),
    ]);
    accepts(&[policy(
        json!({"tunnel": {"protocol": "POST", "targetHost": "10.0.0.1", "targetPort": 8080}}),
    )]);
}

#[test]
fn connection_pools_have_non_negative_limits_and_valid_durations() {
    let cp = |c: Value| policy(json!({"connectionPool": c}));
    refuses(&[
        (
            cp(json!({})),
            "trafficPolicy.connectionPool",
            "connection pool must have at least one field",
        ),
        (
            cp(json!({"tcp": {"maxConnections": -1}})),
            "trafficPolicy.connectionPool.tcp.maxConnections",
            "non-negative",
        ),
        (
            cp(json!({"tcp": {"connectTimeout": "1.5ms"}})),
            "trafficPolicy.connectionPool.tcp.connectTimeout",
            "millisecond precision",
        ),
        (
            cp(json!({"http": {"http2MaxRequests": -1}})),
            "trafficPolicy.connectionPool.http.http2MaxRequests",
            "non-negative",
        ),
        (
            cp(json!({"http": {"idleTimeout": "0s"}})),
            "trafficPolicy.connectionPool.http.idleTimeout",
            "at least 1ms",
        ),
        (
            cp(json!({"http": {"h2UpgradePolicy": "UPGRADE", "useClientProtocol": true}})),
            "trafficPolicy.connectionPool.http.useClientProtocol",
            "must not be true",
        ),
        (
            cp(json!({"http": {"http2KeepAlive": {"timeout": "5s"}}})),
            "trafficPolicy.connectionPool.http.http2KeepAlive.interval",
            "interval is required",
        ),
        (
            cp(json!({"http": {"http2KeepAlive": {"interval": "1s"}}})),
            "trafficPolicy.connectionPool.http.http2KeepAlive.timeout",
            "timeout is required",
        ),
        (
            cp(json!({"http": {"h2UpgradePolicy": "SOMETIMES"}})),
            "trafficPolicy.connectionPool.http.h2UpgradePolicy",
            "not one of",
        ),
    ]);
    accepts(&[cp(
        json!({"tcp": {"idleTimeout": "0s", "maxConnections": 0}, "http": {"maxRetries": 0}}),
    )]);
}

#[test]
fn outlier_detection_durations_percentages_and_local_origin_split() {
    let od = |o: Value| policy(json!({"outlierDetection": o}));
    refuses(&[
        (
            od(json!({"interval": "0s"})),
            "trafficPolicy.outlierDetection.interval",
            "at least 1ms",
        ),
        (
            od(json!({"baseEjectionTime": "1.5ms"})),
            "trafficPolicy.outlierDetection.baseEjectionTime",
            "precision",
        ),
        (
            od(json!({"maxEjectionPercent": 105})),
            "trafficPolicy.outlierDetection.maxEjectionPercent",
            "not in range 0..100",
        ),
        (
            od(json!({"minHealthPercent": -3})),
            "trafficPolicy.outlierDetection.minHealthPercent",
            "not in range",
        ),
        (
            od(json!({"consecutiveLocalOriginFailures": 5})),
            "trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
            "split external local origin errors",
        ),
        (
            od(json!({"consecutive5xxErrors": -1})),
            "trafficPolicy.outlierDetection.consecutive5xxErrors",
            "0..4294967295",
        ),
        (
            od(json!({"outlierDetectionHttpErrorCodes": [600]})),
            "trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[0]",
            "100..599",
        ),
    ]);
    accepts(&[od(
        json!({"consecutiveLocalOriginFailures": 5, "splitExternalLocalOriginErrors": true}),
    )]);
    let doc = Document::parse(
        &document_of(vec![dr(policy(
            json!({"outlierDetection": {"consecutiveErrors": 3}}),
        ))]),
        Kind::ALL,
    )
    .unwrap();
    assert!(doc.warnings.iter().any(|w| {
        w.contains("consecutiveErrors: outlier detection consecutive errors is deprecated")
    }));
}

#[test]
fn load_balancers_follow_validate_load_balancer() {
    let lb = |l: Value| policy(json!({"loadBalancer": l}));
    let p = "trafficPolicy.loadBalancer";
    refuses(&[
        (
            lb(json!({"simple": "RANDOM", "consistentHash": {"useSourceIp": true}})),
            p,
            "only one of simple, consistentHash",
        ),
        (
            lb(json!({"consistentHash": {"httpCookie": {"ttl": "0s"}}})),
            "trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
            "name required",
        ),
        (
            lb(
                json!({"consistentHash": {"httpCookie": {"name": "c", "attributes": [{"name": "a"}, {"name": "a"}]}}}),
            ),
            "trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[1].name",
            "duplicate cookie attribute",
        ),
        (
            lb(json!({"consistentHash": {"useSourceIp": true, "maglev": {"tableSize": 1000}}})),
            "trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "prime",
        ),
        (
            lb(json!({"consistentHash": {"useSourceIp": true, "maglev": {}}})),
            "trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "must be set",
        ),
        (
            lb(
                json!({"consistentHash": {"minimumRingSize": 10, "ringHash": {"minimumRingSize": 10}}}),
            ),
            "trafficPolicy.loadBalancer.consistentHash",
            "only one of MinimumRingSize",
        ),
        (
            lb(json!({"consistentHash": {"httpHeaderName": "x", "useSourceIp": true}})),
            "trafficPolicy.loadBalancer.consistentHash",
            "only one of httpHeaderName",
        ),
        (
            lb(json!({"localityLbSetting": {}, "zoneAwareLbSetting": {}})),
            p,
            "only one of localityLbSetting and zoneAwareLbSetting",
        ),
        (
            lb(json!({"warmup": {"minimumPercent": 5.0}})),
            "trafficPolicy.loadBalancer.warmup.duration",
            "duration is required",
        ),
        (
            lb(json!({"warmup": {"duration": "300s", "minimumPercent": 150.0}})),
            "trafficPolicy.loadBalancer.warmup.minimumPercent",
            "between 0 and 100",
        ),
        (
            lb(json!({"warmup": {"duration": "300s", "aggression": -0.1}})),
            "trafficPolicy.loadBalancer.warmup.aggression",
            "greater than 0",
        ),
        (
            lb(json!({"warmupDurationSecs": "0s"})),
            "trafficPolicy.loadBalancer.warmupDurationSecs",
            "greater than 1ms",
        ),
    ]);
    accepts(&[
        lb(
            json!({"consistentHash": {"httpCookie": {"name": "c", "ttl": "0s"}, "maglev": {"tableSize": 65537}}}),
        ),
        lb(
            json!({"simple": "LEAST_REQUEST", "warmup": {"duration": "300s", "minimumPercent": 5.0, "aggression": 5.0}}),
        ),
    ]);
}

#[test]
fn locality_and_zone_aware_settings_follow_istio() {
    let lb = |l: Value| policy(json!({"loadBalancer": l, "outlierDetection": {"interval": "1s"}}));
    let p = "trafficPolicy.loadBalancer";
    refuses(&[
        (
            lb(
                json!({"localityLbSetting": {"distribute": [{"from": "a", "to": {"b": 100}}], "failover": [{"from": "a", "to": "b"}]}}),
            ),
            &format!("{p}.localityLbSetting"),
            "distribute' and 'failover'",
        ),
        (
            lb(
                json!({"localityLbSetting": {"distribute": [{"from": "a", "to": {"b": 60, "c": 30}}]}}),
            ),
            &format!("{p}.localityLbSetting.distribute[0].to"),
            "total locality weight 90 != 100",
        ),
        (
            lb(json!({"localityLbSetting": {"distribute": [{"from": "a/*/c", "to": {"b": 100}}]}})),
            &format!("{p}.localityLbSetting.distribute"),
            "wildcard '*'",
        ),
        (
            lb(json!({"localityLbSetting": {"failover": [{"from": "a", "to": "a"}]}})),
            &format!("{p}.localityLbSetting.failover[0]"),
            "different regions",
        ),
        (
            lb(
                json!({"localityLbSetting": {"failover": [{"from": "a", "to": "b"}], "failoverPriority": ["topology.kubernetes.io/zone"]}}),
            ),
            &format!("{p}.localityLbSetting.failoverPriority"),
            "topology label",
        ),
        (
            lb(
                json!({"zoneAwareLbSetting": {"failoverPriority": ["topology.kubernetes.io/region"]}}),
            ),
            &format!("{p}.zoneAwareLbSetting.failoverPriority"),
            "must not use topology label",
        ),
        (
            lb(json!({"zoneAwareLbSetting": {"failover": [{"from": "a/z", "to": "b"}]}})),
            &format!("{p}.zoneAwareLbSetting.failover[0]"),
            "only specifies region",
        ),
    ]);
    accepts(&[lb(
        json!({"zoneAwareLbSetting": {"enabled": true, "failover": [{"from": "a", "to": "b"}]}}),
    )]);
}

#[test]
fn client_tls_follows_validate_tls() {
    let tls = |t: Value| policy(json!({"tls": t}));
    refuses(&[
        (
            tls(json!({"mode": "SIMPLE", "insecureSkipVerify": true, "caCertificates": "/ca"})),
            "trafficPolicy.tls",
            "InsecureSkipVerify",
        ),
        (
            tls(
                json!({"mode": "MUTUAL", "insecureSkipVerify": true, "subjectAltNames": ["a"], "clientCertificate": "c", "privateKey": "k"}),
            ),
            "trafficPolicy.tls",
            "InsecureSkipVerify",
        ),
        (
            tls(json!({"mode": "MUTUAL"})),
            "trafficPolicy.tls",
            "client certificate required",
        ),
        (
            tls(json!({"mode": "MUTUAL", "clientCertificate": "c"})),
            "trafficPolicy.tls",
            "private key required",
        ),
        (
            tls(json!({"mode": "SIMPLE", "credentialName": "s", "caCertificates": "/ca"})),
            "trafficPolicy.tls",
            "If credentialName is set",
        ),
        (
            tls(json!({"mode": "SIMPLE", "credentialName": "configmap://other/ca"})),
            "trafficPolicy.tls.credentialName",
            "must match",
        ),
    ]);
    accepts(&[
        tls(json!({"mode": "SIMPLE", "insecureSkipVerify": true})),
        tls(json!({"mode": "MUTUAL", "credentialName": "s"})),
        tls(json!({"mode": "SIMPLE", "credentialName": "configmap://ns/ca"})),
    ]);
}

#[test]
fn port_level_settings_name_a_port_and_set_something() {
    let pls = |p: Value| policy(json!({"portLevelSettings": [p]}));
    refuses(&[
        (
            pls(json!({"loadBalancer": {"simple": "RANDOM"}})),
            "trafficPolicy.portLevelSettings[0].port",
            "must have valid port",
        ),
        (
            pls(json!({"port": {"number": 80}})),
            "trafficPolicy.portLevelSettings[0]",
            "at least one field",
        ),
        (
            pls(json!({"port": {"number": 80}, "connectionPool": {"tcp": {"maxConnections": -1}}})),
            "trafficPolicy.portLevelSettings[0].connectionPool.tcp.maxConnections",
            "non-negative",
        ),
    ]);
    accepts(&[pls(
        json!({"port": {"number": 80}, "tls": {"mode": "ISTIO_MUTUAL"}}),
    )]);
}

#[test]
fn export_to_and_workload_selectors_follow_istio() {
    refuses(&[
        (
            json!({"host": "a", "exportTo": ["*", "b"]}),
            "exportTo",
            "both public (*) and non-public",
        ),
        (
            json!({"host": "a", "workloadSelector": {"matchLabels": {"app": "x"}}, "exportTo": ["other"]}),
            "exportTo",
            "beyond current namespace",
        ),
        (
            json!({"host": "a", "workloadSelector": {"matchLabels": {"app": "x*"}}}),
            "workloadSelector.matchLabels.app",
            "wildcard is not supported",
        ),
    ]);
    accepts(&[
        json!({"host": "a", "workloadSelector": {"matchLabels": {"app": "x"}}, "exportTo": ["."]}),
    ]);
}

#[test]
fn primes_are_envoys() {
    for p in [1, 2, 3, 5, 7, 65_537, 5_000_011] {
        assert!(is_prime(p), "{p}");
    }
    for n in [0, 4, 9, 65_536, 1_000_000] {
        assert!(!is_prime(n), "{n}");
    }
}

#[test]
fn localities_may_not_overlap() {
    let ok = |l: &[&str]| localities(l.iter().copied(), "p").is_ok();
    assert!(ok(&["us", "eu/a", "eu/b/c", "eu/b/d"]));
    assert!(!ok(&["us", "us/a"]), "region then its zone");
    assert!(!ok(&["eu/b/c", "eu/b/c"]));
    assert!(!ok(&["*", "us"]));
    assert!(!ok(&["u*s"]));
    assert!(!ok(&["us//a"]));
}
