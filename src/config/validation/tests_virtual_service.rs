//! VirtualService rules against Istio's (validation.go
//! `ValidateVirtualService`, virtualservice.go `validateHTTPRoute`), one
//! test per rule, and what an accepted form does to a request.

use serde_json::{Value, json};

use crate::config::ConfigError;
use crate::http::HeaderList;
use crate::rng::SplitMix64;
use crate::route::{Decision, RouteTable};
use crate::testutil::{compile, vs};

/// The error of a VirtualService with `spec`, as `path: message`.
fn refused(spec: Value) -> String {
    compile(vec![vs(spec)]).map_or_else(|e: ConfigError| e.to_string(), |_| "accepted".into())
}

/// A VirtualService for host `a` with one rule `rule` (a `route` to `a` added
/// unless the rule has an action).
fn rule(rule: Value) -> Value {
    let mut r = rule;
    if ["route", "redirect", "directResponse", "delegate"]
        .iter()
        .all(|k| r.get(k).is_none())
    {
        r["route"] = json!([{"destination": {"host": "a"}}]);
    }
    json!({"hosts": ["a"], "http": [r]})
}

fn matched(t: &RouteTable, req: &HeaderList) -> bool {
    matches!(
        t.decide(req, &mut SplitMix64::new(1)),
        Decision::Matched { .. }
    )
}

#[test]
fn without_headers_regex_star_means_the_header_is_absent() {
    // virtualservice.go skips regex "*" under withoutHeaders; route.go
    // emits an inverted present_match.
    let t = compile(vec![vs(rule(
        json!({"match": [{"withoutHeaders": {"x-debug": {"regex": "*"}}}]}),
    ))])
    .unwrap();
    assert!(matched(&t, &HeaderList::request("GET", "a", "/")));
    assert!(!matched(
        &t,
        &HeaderList::request("GET", "a", "/").with("x-debug", "")
    ));
    // Under `headers` it is a regex, and does not compile.
    let e = refused(rule(json!({"match": [{"headers": {"x": {"regex": "*"}}}]})));
    assert!(e.contains("headers.x.regex"), "{e}");
}

fn refuses(cases: &[(Value, &str, &str)]) {
    crate::testutil::assert_refusals(refused, cases);
}

fn accepts(specs: &[Value]) {
    crate::testutil::assert_accepted(refused, specs);
}

fn on_gateway(mut spec: Value) -> Value {
    spec["gateways"] = json!(["istio-system/gw"]);
    spec
}

#[test]
fn hosts_are_domains_ips_or_a_gateway_wildcard_and_never_overlap() {
    let http = json!([{"route": [{"destination": {"host": "a"}}]}]);
    let hosts = |h: Value| json!({"hosts": h, "http": http});
    refuses(&[
        (
            hosts(json!(["foo.ba!r"])),
            "hosts[0]",
            "invalid (label \"ba!r\" invalid)",
        ),
        (hosts(json!(["foo.*.com"])), "hosts[0]", "invalid"),
        (
            hosts(json!(["*"])),
            "hosts[0]",
            "wildcard host * is not allowed",
        ),
        (
            hosts(json!(["*.foo.bar", "*.bar"])),
            "hosts[1]",
            "duplicate hosts in virtual service: *.foo.bar & *.bar",
        ),
        (hosts(json!(["a.b", "a.b"])), "hosts[1]", "duplicate hosts"),
    ]);
    accepts(&[
        hosts(json!(["10.0.0.1", "a.b", "A.b"])),
        on_gateway(hosts(json!(["*"]))),
        json!({"hosts": ["outbound_.80_._.a.example"], "gateways": ["istio-system/gw"], "tls": [{"match": [{"sniHosts": ["outbound_.80_._.a.example"]}],
               "route": [{"destination": {"host": "a"}}]}]}),
    ]);
}

#[test]
fn gateway_names_are_namespace_slash_name_or_a_legacy_fqdn() {
    let gw = |g: Value| json!({"hosts": ["a"], "gateways": g, "http": [{"route": [{"destination": {"host": "a"}}]}]});
    refuses(&[
        (gw(json!(["b@d"])), "gateways[0]", "invalid"),
        (
            gw(json!(["ns/*"])),
            "gateways[0]",
            "invalid value for gateway name: \"*\"",
        ),
        (
            gw(json!(["*/gw"])),
            "gateways[0]",
            "invalid value for namespace: \"*\"",
        ),
        (gw(json!(["/gw"])), "gateways[0]", "cannot be empty"),
    ]);
    accepts(&[
        gw(json!(["mesh", "ns/gw"])),
        gw(json!(["gw.ns.svc.cluster.local"])),
    ]);
    let doc = crate::config::Document::parse(
        &crate::testutil::document_of(vec![vs(gw(json!(["gw.ns"])))]),
        crate::config::Kind::ALL,
    )
    .unwrap();
    assert!(
        doc.warnings
            .iter()
            .any(|w| w.contains("legacy gatewayName format") && w.contains("\"ns/gw\"")),
        "{:?}",
        doc.warnings
    );
}

#[test]
fn a_delegate_has_no_gateways_tcp_or_tls_and_jwt_claims_need_a_gateway() {
    refuses(&[
        (
            json!({"gateways": ["ns/gw"], "http": [{"route": [{"destination": {"host": "a"}}]}]}),
            "gateways",
            "delegate virtual service must have no gateways",
        ),
        (
            rule(json!({"match": [{"headers": {"@request.auth.claims.sub": {"exact": "a"}}}]})),
            "http[0].match[0].headers.@request.auth.claims.sub",
            "only supported for gateway",
        ),
    ]);
    accepts(&[on_gateway(rule(
        json!({"match": [{"headers": {"@request.auth.claims.sub": {"exact": "a"}}}]}),
    ))]);
}

#[test]
fn a_rule_has_one_action_and_combines_it_as_istio_allows() {
    let red = json!({"uri": "/x"});
    let dr = json!({"status": 200});
    let fault = json!({"abort": {"httpStatus": 500, "percentage": {"value": 1}}});
    refuses(&[
        (
            rule(json!({"redirect": red, "fault": fault})),
            "http[0]",
            "both redirect and fault",
        ),
        (
            rule(json!({"directResponse": dr, "fault": fault})),
            "http[0]",
            "both directResponse and fault",
        ),
        (
            rule(json!({"directResponse": dr, "rewrite": {"uri": "/"}})),
            "http[0]",
            "both directResponse and rewrite",
        ),
        (
            rule(json!({"mirror": {"host": "m"}, "mirrors": [{"destination": {"host": "m"}}]})),
            "http[0]",
            "both mirror and mirrors",
        ),
        (
            rule(json!({"delegate": {"name": "d"}, "route": [{"destination": {"host": "a"}}]})),
            "http[0].route",
            "root HTTP route must not specify route",
        ),
        (
            json!({"hosts": ["a"], "http": [{"name": "r"}]}),
            "http[0].route",
            "HTTP route, redirect or direct_response is required",
        ),
    ]);
}

#[test]
fn match_requests_follow_validate_http_route_match_request() {
    let m = |m: Value| rule(json!({"match": [m]}));
    refuses(&[
        (
            m(json!({"headers": {"a b": {"exact": "x"}}})),
            "http[0].match[0].headers.a b",
            "not a valid header name",
        ),
        (
            m(json!({"headers": {"x": {"prefix": ""}}})),
            "http[0].match[0].headers.x.prefix",
            "should not be empty",
        ),
        (
            m(json!({"method": {"prefix": ""}})),
            "http[0].match[0].method.prefix",
            "should not be empty",
        ),
        (
            m(json!({"uri": {"exact": "/a", "prefix": "/b"}})),
            "http[0].match[0].uri",
            "only one of exact, prefix or regex",
        ),
        (
            m(json!({"queryParams": {"q": {"regex": "("}}})),
            "http[0].match[0].queryParams.q.regex",
            "does not compile",
        ),
        (
            m(json!({"port": 70000})),
            "http[0].match[0].port",
            "must be in the range 1..65535",
        ),
        (
            m(json!({"sourceLabels": {"a": "b c"}})),
            "http[0].match[0].sourceLabels.a",
            "invalid tag value",
        ),
        (
            m(json!({"sourceNamespace": "Not_a_label"})),
            "http[0].match[0].sourceNamespace",
            "is invalid",
        ),
        (
            m(json!({"gateways": ["ns/*"]})),
            "http[0].match[0].gateways[0]",
            "invalid value for gateway name",
        ),
    ]);
    accepts(&[
        m(json!({"uri": {"prefix": ""}, "headers": {":authority": {"exact": "a"}}, "port": 0})),
        m(json!({"withoutHeaders": {"x": {"regex": "*"}}, "sourceNamespace": ""})),
    ]);
}

#[test]
fn header_operations_never_touch_pseudo_headers_or_host_except_the_authority() {
    let h = |h: Value| rule(json!({"headers": h}));
    refuses(&[
        (
            h(json!({"request": {"set": {":path": "/x"}}})),
            "http[0].headers.request.set.:path",
            "header cannot have \":\" prefix",
        ),
        (
            h(json!({"request": {"remove": ["Host"]}})),
            "http[0].headers.request.remove[0]",
            "cannot set Host header",
        ),
        (
            h(json!({"response": {"set": {"host": "x"}}})),
            "http[0].headers.response.set.host",
            "cannot set Host header",
        ),
        (
            h(json!({"response": {"add": {"x": "50%"}}})),
            "http[0].headers.response.add.x",
            "Un-escaped %",
        ),
        (
            h(json!({"request": {"set": {"x": "abc%123"}}})),
            "http[0].headers.request.set.x",
            "Un-terminated variable",
        ),
        (
            rule(
                json!({"route": [{"destination": {"host": "a"}, "headers": {"request": {"add": {"": "v"}}}}]}),
            ),
            "http[0].route[0].headers.request.add.",
            "header name cannot be empty",
        ),
    ]);
    accepts(&[h(
        json!({"request": {"set": {"host": "b", "x": "100%% %HOSTNAME%"}}}),
    )]);
}

#[test]
fn cors_policies_are_validated_though_not_applied() {
    let c = |c: Value| rule(json!({"corsPolicy": c}));
    refuses(&[
        (
            c(json!({"allowMethods": ["PUTT"]})),
            "http[0].corsPolicy.allowMethods[0]",
            "not a supported HTTP method",
        ),
        (
            c(json!({"allowHeaders": [""]})),
            "http[0].corsPolicy.allowHeaders[0]",
            "cannot be empty",
        ),
        (
            c(json!({"maxAge": "5.5s"})),
            "http[0].corsPolicy.maxAge",
            "seconds precision",
        ),
        (
            c(json!({"allowOrigins": [{}]})),
            "http[0].corsPolicy.allowOrigins[0]",
            "not a valid match type",
        ),
        (
            c(json!({"unmatchedPreflights": "DROP"})),
            "http[0].corsPolicy.unmatchedPreflights",
            "not one of",
        ),
    ]);
    accepts(&[c(
        json!({"allowOrigins": [{"exact": "https://a"}], "allowMethods": ["GET", "*"], "allowHeaders": ["*"], "maxAge": "24h"}),
    )]);
}

#[test]
fn mirrors_are_validated_though_not_applied() {
    refuses(&[
        (
            rule(json!({"mirror": {"host": "m"}, "mirrorPercentage": {"value": 101}})),
            "http[0].mirrorPercentage",
            "max value of 100",
        ),
        (
            rule(json!({"mirror": {"host": "m"}, "mirrorPercentage": {"value": -1}})),
            "http[0].mirrorPercentage",
            "min value of 0",
        ),
        (
            rule(json!({"mirror": {"host": "m"}, "mirrorPercent": 101})),
            "http[0].mirrorPercent",
            "max value of 100",
        ),
        (
            rule(
                json!({"mirrors": [{"destination": {"host": "m"}, "percentage": {"value": 200}}]}),
            ),
            "http[0].mirrors[0].percentage",
            "max value",
        ),
        (
            rule(json!({"mirror": {"host": "*"}})),
            "http[0].mirror.host",
            "invalid destination host *",
        ),
    ]);
}

#[test]
fn rewrites_set_something_and_the_authority_once() {
    refuses(&[
        (
            rule(json!({"rewrite": {}})),
            "http[0].rewrite",
            "must specify at least one of URI, UriRegexRewrite, or authority",
        ),
        (
            rule(json!({"rewrite": {"uriRegexRewrite": {"match": "a"}}})),
            "http[0].rewrite.uriRegexRewrite",
            "requires both Rewrite and Match",
        ),
        (
            rule(
                json!({"rewrite": {"authority": "bar"}, "headers": {"request": {"set": {":authority": "foo"}}}}),
            ),
            "http[0].headers.request.set.:authority",
            "authority header cannot be set multiple times",
        ),
    ]);
    accepts(&[rule(
        json!({"rewrite": {"authority": "bar"}, "headers": {"request": {"set": {"x": "foo"}}}}),
    )]);
}

#[test]
fn destinations_are_valid_hosts_subsets_ports_and_weights() {
    let d = |dest: Value| rule(json!({"route": [dest]}));
    refuses(&[
        (
            d(json!({"destination": {"host": "*"}})),
            "http[0].route[0].destination.host",
            "invalid destination host",
        ),
        (
            d(json!({"destination": {"host": "foo.*"}})),
            "http[0].route[0].destination.host",
            "invalid",
        ),
        (
            d(json!({"destination": {"host": "default/baz"}})),
            "http[0].route[0].destination.host",
            "invalid",
        ),
        (
            d(json!({"destination": {"host": "a", "subset": "V_1"}})),
            "http[0].route[0].destination.subset",
            "subset name is invalid",
        ),
        (
            d(json!({"destination": {"host": "a", "port": {}}})),
            "http[0].route[0].destination.port.number",
            "port number 0",
        ),
        (
            d(json!({"destination": {"host": "a"}, "weight": -1})),
            "http[0].route[0].weight",
            "weight -1 < 0",
        ),
        (
            rule(
                json!({"route": [{"destination": {"host": "a"}, "weight": 0}, {"destination": {"host": "b"}, "weight": 0}]}),
            ),
            "http[0].route",
            "total destination weight = 0",
        ),
    ]);
}

#[test]
fn tcp_and_tls_routes_are_validated_though_not_applied() {
    let dest = json!([{"destination": {"host": "a"}}]);
    refuses(&[
        (
            json!({"hosts": ["a"], "tcp": [{"match": [{"port": 80}]}]}),
            "tcp[0].route",
            "TCP route is required",
        ),
        (
            json!({"hosts": ["a"], "tcp": [{"match": [{"destinationSubnets": ["1.2.3.4/40"]}], "route": dest}]}),
            "tcp[0].match[0].destinationSubnets[0]",
            "not a valid CIDR",
        ),
        (
            json!({"hosts": ["a"], "tls": [{"route": dest}]}),
            "tls[0].match",
            "at least one match condition",
        ),
        (
            json!({"hosts": ["*.a.com"], "tls": [{"match": [{"sniHosts": ["foo.*.com"]}], "route": dest}]}),
            "tls[0].match[0].sniHosts[0]",
            "invalid",
        ),
        (
            json!({"hosts": ["a.com"], "tls": [{"match": [{"sniHosts": ["b.com"]}], "route": dest}]}),
            "tls[0].match[0].sniHosts[0]",
            "not a compatible subset",
        ),
        (
            json!({"hosts": ["a.com"], "tls": [{"match": [{"sniHosts": ["a.com"]}]}]}),
            "tls[0].route",
            "TLS route is required",
        ),
    ]);
    accepts(&[
        json!({"hosts": ["*.a.com"], "tls": [{"match": [{"sniHosts": ["b.a.com"], "port": 443}], "route": dest}]}),
    ]);
}

#[test]
fn export_to_and_gateway_bound_services_are_validated_too() {
    let mut spec = rule(json!({}));
    spec["exportTo"] = json!(["default", "."]);
    refuses(&[
        (
            spec,
            "exportTo[1]",
            "duplicate entries in exportTo: . and current namespace default",
        ),
        (
            on_gateway(rule(json!({"headers": {"request": {"set": {"x": "%"}}}}))),
            "http[0].headers.request.set.x",
            "Un-escaped %",
        ),
    ]);
}
