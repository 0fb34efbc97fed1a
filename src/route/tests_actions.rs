//! Route actions: timeouts and retries as router headers, header
//! operations, rewrite, redirect, direct response, sticky A/B.

use serde_json::json;

use super::*;
use crate::config::{Document, Kind};
use crate::http::HeaderList;
use crate::rng::SplitMix64;
use crate::testutil::{compile, document, dr, seed_variant, vs};

/// The request headers after applying the verdict to `req`'s headers.
fn applied(t: &RouteTable, req: &HeaderList) -> Result<HeaderList, LocalReply<'static>> {
    let d = t.decide(req, &mut SplitMix64::new(1));
    match t.verdict(&d, req) {
        Verdict::Continue(m) => {
            let mut out = req.clone();
            m.iter().for_each(|op| out.apply(op));
            Ok(out)
        }
        Verdict::Reply(r) => Err(LocalReply {
            status: r.status,
            body: Cow::Owned(r.body.into_owned()),
            details: if r.details == ROUTE_NOT_FOUND {
                ROUTE_NOT_FOUND
            } else {
                DIRECT_RESPONSE
            },
            headers: r.headers,
            grpc_status: r.grpc_status,
        }),
        Verdict::Pause(w) => panic!("routing never waits: {w:?}"),
    }
}

fn get(h: &HeaderList, name: &str) -> Option<String> {
    h.header(name)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

#[test]
fn the_seed_timeout_policy_becomes_router_headers() {
    let doc = Document::parse(
        &document(&["timeout-policy.yaml", "destination-rule-example.yaml"]),
        Kind::ALL,
    )
    .unwrap();
    let t = RouteTable::compile(&doc).unwrap();
    let out = applied(
        &t,
        &HeaderList::request("GET", "product-service", "/api/products"),
    )
    .unwrap();
    assert_eq!(get(&out, actions::TIMEOUT_MS).as_deref(), Some("10000"));
    assert_eq!(get(&out, actions::MAX_RETRIES).as_deref(), Some("3"));
    assert_eq!(
        get(&out, actions::RETRY_ON).as_deref(),
        Some("5xx,reset,connect-failure,refused-stream")
    );
    assert_eq!(
        get(&out, actions::PER_TRY_TIMEOUT_MS).as_deref(),
        Some("3000")
    );
}

#[test]
fn without_timeout_and_retries_istio_defaults_apply() {
    // SPEC.md §timeouts and retries 1 and 3: timeout disabled; 2 retries on
    // connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes.
    let t = compile(vec![
        dr(&["v1"]),
        vs(json!({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}]}]})),
    ])
    .unwrap();
    let out = applied(&t, &HeaderList::request("GET", "a", "/")).unwrap();
    assert_eq!(get(&out, actions::TIMEOUT_MS).as_deref(), Some("0"));
    assert_eq!(get(&out, actions::MAX_RETRIES).as_deref(), Some("2"));
    assert_eq!(
        get(&out, actions::RETRY_ON).as_deref(),
        Some("connect-failure,refused-stream,retriable-status-codes")
    );
    assert_eq!(
        get(&out, actions::RETRY_GRPC_ON).as_deref(),
        Some("unavailable,cancelled")
    );
}

#[test]
fn client_sent_router_headers_never_survive() {
    let t = compile(vec![
        dr(&["v1"]),
        vs(
            json!({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}],
        "retries": {"attempts": 1}}]}),
        ),
    ])
    .unwrap();
    let req = HeaderList::request("GET", "a", "/")
        .with(actions::PER_TRY_TIMEOUT_MS, "1")
        .with(actions::RETRIABLE_STATUS_CODES, "404")
        .with("x-ab-test-variant", "B");
    let out = applied(&t, &req).unwrap();
    assert_eq!(get(&out, actions::PER_TRY_TIMEOUT_MS), None);
    assert_eq!(get(&out, actions::RETRIABLE_STATUS_CODES), None);
    assert_eq!(get(&out, "x-ab-test-variant"), None);
}

#[test]
fn retry_status_codes_go_to_their_own_header() {
    let t = compile(vec![
        dr(&["v1"]),
        vs(
            json!({"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}}],
        "retries": {"attempts": 2, "retryOn": "503,gateway-error"}}]}),
        ),
    ])
    .unwrap();
    let out = applied(&t, &HeaderList::request("GET", "a", "/")).unwrap();
    assert_eq!(
        get(&out, actions::RETRY_ON).as_deref(),
        Some("gateway-error,retriable-status-codes")
    );
    assert_eq!(
        get(&out, actions::RETRIABLE_STATUS_CODES).as_deref(),
        Some("503")
    );
}

#[test]
fn invalid_timeouts_and_retries_are_refused_with_their_path() {
    let route = |extra: serde_json::Value| {
        let mut r = json!({"route": [{"destination": {"host": "a"}}]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        compile(vec![vs(json!({"hosts": ["a"], "http": [r]}))])
            .unwrap_err()
            .path
    };
    let p = "resources[0].spec.http[0]";
    assert_eq!(
        route(json!({"retries": {"attempts": 2, "retryOn": "5xx, reset"}})),
        format!("{p}.retries.retryOn")
    );
    assert_eq!(
        route(json!({"retries": {"attempts": 0, "perTryTimeout": "1s"}})),
        format!("{p}.retries")
    );
    assert_eq!(
        route(json!({"retries": {"attempts": -1}})),
        format!("{p}.retries.attempts")
    );
    assert_eq!(
        route(json!({"retries": {"attempts": 0, "retryRemoteLocalities": false}})),
        format!("{p}.retries")
    );
    assert_eq!(
        route(json!({"retries": {"attempts": 0, "backoff": "1us"}})),
        format!("{p}.retries.backoff")
    );
    assert_eq!(
        route(json!({"retries": {"attempts": 1, "retryOn": "499"}})),
        format!("{p}.retries.retryOn")
    );
    assert_eq!(route(json!({"timeout": "0s"})), format!("{p}.timeout"));
    assert_eq!(route(json!({"timeout": "1.0005s"})), format!("{p}.timeout"));
}

#[test]
fn attempts_0_takes_a_backoff_and_an_empty_retry_on() {
    // agent/validation.go ValidateHTTPRetry counts perTryTimeout, a
    // non-empty retryOn and retryRemoteLocalities, not backoff.
    for retries in [
        json!({"attempts": 0, "backoff": "1s"}),
        json!({"attempts": 0, "retryOn": ""}),
    ] {
        let t = compile(vec![vs(json!({"hosts": ["a"], "http": [
            {"route": [{"destination": {"host": "a"}}], "retries": retries}]}))])
        .unwrap();
        let out = applied(&t, &HeaderList::request("GET", "a", "/")).unwrap();
        assert_eq!(get(&out, actions::MAX_RETRIES).as_deref(), Some("0"));
    }
}

#[test]
fn destination_then_route_header_operations_apply_and_route_wins() {
    let t = compile(vec![dr(&["v1"]), vs(json!({"hosts": ["a"], "http": [{
        "headers": {"request": {"set": {"x-env": "route"}, "add": {"x-tag": "r"}, "remove": ["x-secret"]},
                    "response": {"set": {"x-served-by": "mesh"}}},
        "route": [{"destination": {"host": "a", "subset": "v1"},
                   "headers": {"request": {"set": {"x-env": "dest", "x-dest": "1"}}}}]}]}))])
    .unwrap();
    let req = HeaderList::request("GET", "a", "/").with("x-secret", "s");
    let out = applied(&t, &req).unwrap();
    assert_eq!(get(&out, "x-env").as_deref(), Some("route"));
    assert_eq!(get(&out, "x-dest").as_deref(), Some("1"));
    assert_eq!(get(&out, "x-tag").as_deref(), Some("r"));
    assert_eq!(get(&out, "x-secret"), None);
    let Decision::Matched {
        target: Some(target),
        ..
    } = t.decide(&req, &mut SplitMix64::new(1))
    else {
        panic!()
    };
    assert_eq!(
        target.response_ops,
        vec![HeaderOp::Set("x-served-by".into(), "mesh".into())]
    );
}

#[test]
fn rewrite_uri_replaces_the_matched_prefix_and_keeps_the_query() {
    let t = compile(vec![vs(json!({"hosts": ["a"], "http": [{
        "match": [{"uri": {"prefix": "/old/"}}], "rewrite": {"uri": "/new/", "authority": "b"},
        "route": [{"destination": {"host": "a"}}]}]}))])
    .unwrap();
    let out = applied(&t, &HeaderList::request("GET", "a", "/old/x?q=1")).unwrap();
    assert_eq!(get(&out, ":path").as_deref(), Some("/new/x?q=1"));
    assert_eq!(get(&out, ":authority").as_deref(), Some("b"));
}

#[test]
fn rewrite_uri_after_an_exact_or_regex_match_replaces_the_whole_path() {
    let t = compile(vec![vs(json!({"hosts": ["a"], "http": [{
        "match": [{"uri": {"exact": "/catalog"}}, {"uri": {"regex": "/cat.*"}}], "rewrite": {"uri": "/api/products"},
        "route": [{"destination": {"host": "a"}}]}]}))])
    .unwrap();
    for path in ["/catalog?x=1", "/catalogue?x=1"] {
        let out = applied(&t, &HeaderList::request("GET", "a", path)).unwrap();
        assert_eq!(
            get(&out, ":path").as_deref(),
            Some("/api/products?x=1"),
            "{path}"
        );
    }
}

#[test]
fn rewrite_uri_without_a_uri_match_replaces_the_leading_slash() {
    // Istio emits `prefix: "/"` for such a rule, so Envoy's prefix_rewrite
    // replaces that slash.
    let t = compile(vec![vs(json!({"hosts": ["a"], "http": [{
        "rewrite": {"uri": "/v2/"}, "route": [{"destination": {"host": "a"}}]}]}))])
    .unwrap();
    let out = applied(&t, &HeaderList::request("GET", "a", "/x?q")).unwrap();
    assert_eq!(get(&out, ":path").as_deref(), Some("/v2/x?q"));
}

#[test]
fn counter_names_keep_namespace_and_virtual_service_apart() {
    let t = compile(vec![
        dr(&["v1"]),
        vs(json!({"hosts": ["a"], "http": [
        {"name": "to.v1", "route": [{"destination": {"host": "a", "subset": "v1"}}]}]})),
    ])
    .unwrap();
    let names: Vec<String> = t.target_names().collect();
    assert_eq!(names, vec!["default.vs.to_v1.v1".to_owned()]);
}

#[test]
fn redirect_and_direct_response_answer_locally() {
    let t = compile(vec![vs(json!({"hosts": ["a"], "http": [
        {"match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/new", "authority": "b", "redirectCode": 308}},
        {"match": [{"uri": {"exact": "/teapot"}}], "directResponse": {"status": 418, "body": {"string": "short and stout"}}}]}))])
    .unwrap();
    let r = applied(&t, &HeaderList::request("GET", "a:8080", "/old?x=1")).unwrap_err();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.headers,
        vec![("location".to_owned(), "http://b/new?x=1".to_owned())]
    );
    let r = applied(&t, &HeaderList::request("GET", "a", "/teapot")).unwrap_err();
    assert_eq!((r.status, r.body.as_ref()), (418, &b"short and stout"[..]));
}

/// The `location` of a redirect rule for `GET host path`, or the error.
fn redirect_to(
    redirect: serde_json::Value,
    matches: serde_json::Value,
    host: &str,
    path: &str,
) -> Result<String, String> {
    let t = compile(vec![vs(json!({"hosts": ["a", "h"], "http": [
        {"match": matches, "redirect": redirect}]}))])
    .map_err(|e| e.to_string())?;
    let r = applied(&t, &HeaderList::request("GET", host, path)).unwrap_err();
    Ok(r.headers
        .first()
        .map(|(_, v)| v.clone())
        .unwrap_or_default())
}

#[test]
fn empty_redirect_strings_are_unset_and_a_redirect_setting_nothing_is_refused() {
    // validation.go validateHTTPRedirect: "redirect must specify URI,
    // authority, scheme, or port"; proto3 reads "" as unset.
    let e = redirect_to(
        json!({"uri": "", "authority": ""}),
        json!(null),
        "a",
        "/p?q=1",
    )
    .unwrap_err();
    assert!(
        e.starts_with("resources[0].spec.http[0].redirect: redirect must specify"),
        "{e}"
    );
    // Envoy keeps the request's host and path for an empty host/path redirect.
    assert_eq!(
        redirect_to(
            json!({"uri": "t", "authority": ""}),
            json!(null),
            "h",
            "/p?q=1"
        )
        .as_deref(),
        Ok("http://h/t?q=1")
    );
    assert_eq!(
        redirect_to(
            json!({"uri": "", "authority": "t"}),
            json!(null),
            "h",
            "/p?q=1"
        )
        .as_deref(),
        Ok("http://t/p?q=1")
    );
}

#[test]
fn redirect_code_0_is_301_and_codes_envoy_cannot_send_are_refused() {
    let t = compile(vec![vs(json!({"hosts": ["a"], "http": [
        {"redirect": {"uri": "/n", "redirectCode": 0}}]}))])
    .unwrap();
    let r = applied(&t, &HeaderList::request("GET", "a", "/")).unwrap_err();
    assert_eq!(r.status, 301);
    let e = redirect_to(
        json!({"uri": "/n", "redirectCode": 200}),
        json!(null),
        "a",
        "/",
    )
    .unwrap_err();
    assert!(
        e.ends_with("redirectCode: 200 is not a valid redirect code, must be 3xx"),
        "{e}"
    );
    let e = redirect_to(
        json!({"uri": "/n", "redirectCode": 305}),
        json!(null),
        "a",
        "/",
    )
    .unwrap_err();
    assert!(e.contains("cannot be sent by Envoy's redirect"), "{e}");
    let e = redirect_to(json!({"scheme": "ftp"}), json!(null), "a", "/").unwrap_err();
    assert!(
        e.ends_with(r#"scheme: invalid redirect scheme, must be "http" or "https""#),
        "{e}"
    );
}

#[test]
fn redirect_prefix_rewrite_replaces_the_matched_prefix() {
    let prefix = json!([{"uri": {"prefix": "/old"}}]);
    assert_eq!(
        redirect_to(
            json!({"prefixRewrite": "/new"}),
            prefix.clone(),
            "a",
            "/old/x?q=1"
        )
        .as_deref(),
        Ok("http://a/new/x?q=1")
    );
    // Without a uri match Istio emits prefix "/".
    assert_eq!(
        redirect_to(
            json!({"prefixRewrite": "/v2/", "authority": "b"}),
            json!(null),
            "a",
            "/x"
        )
        .as_deref(),
        Ok("http://b/v2/x")
    );
    let e = redirect_to(
        json!({"prefixRewrite": "/n"}),
        json!([{"uri": {"exact": "/o"}}]),
        "a",
        "/o",
    )
    .unwrap_err();
    assert!(
        e.contains("requires all URI matches to use prefix match type"),
        "{e}"
    );
    let e = redirect_to(
        json!({"prefixRewrite": "/n", "uri": "/m"}),
        prefix,
        "a",
        "/",
    )
    .unwrap_err();
    assert!(
        e.contains("may only specify one of uri or prefixRewrite"),
        "{e}"
    );
}

#[test]
fn a_redirect_port_of_the_schemes_own_or_zero_adds_no_port() {
    for port in [0, 80] {
        assert_eq!(
            redirect_to(
                json!({"authority": "b", "port": port}),
                json!(null),
                "a",
                "/"
            )
            .as_deref(),
            Ok("http://b/")
        );
    }
    assert_eq!(
        redirect_to(
            json!({"authority": "b", "port": 8080}),
            json!(null),
            "a",
            "/"
        )
        .as_deref(),
        Ok("http://b:8080/")
    );
    let e = redirect_to(
        json!({"authority": "b", "port": 70000}),
        json!(null),
        "a",
        "/",
    )
    .unwrap_err();
    assert!(
        e.ends_with("redirect.port: port number 70000 must be in the range 1..65535"),
        "{e}"
    );
}

fn ab_table() -> RouteTable {
    let mut v = vs(json!({"hosts": ["a"], "http": [{"route": [
        {"destination": {"host": "a", "subset": "A"}, "weight": 50},
        {"destination": {"host": "a", "subset": "B"}, "weight": 50}]}]}));
    v["metadata"]["annotations"] = json!({"meshwasm.io/sticky-by": "header:X-User-ID",
        "meshwasm.io/sticky-test": "checkout-flow", "meshwasm.io/sticky-response-header": "X-AB-Test-Variant"});
    compile(vec![dr(&["A", "B"]), v]).unwrap()
}

#[test]
fn sticky_assignment_reproduces_the_seed_formula_for_1000_users() {
    let t = ab_table();
    for i in 0..1000 {
        let user = format!("u{i}-{}", i * 7919);
        let out = applied(
            &t,
            &HeaderList::request("GET", "a", "/").with("x-user-id", &user),
        )
        .unwrap();
        assert_eq!(
            get(&out, "x-ab-test-variant").as_deref(),
            Some(seed_variant(&user)),
            "{user}"
        );
    }
}

#[test]
fn one_user_always_lands_on_one_subset_and_no_user_is_anonymous() {
    let t = ab_table();
    let variant = |req: HeaderList| get(&applied(&t, &req).unwrap(), "x-ab-test-variant");
    let first = variant(HeaderList::request("GET", "a", "/").with("x-user-id", "alice"));
    for _ in 0..20 {
        assert_eq!(
            variant(HeaderList::request("GET", "a", "/").with("x-user-id", "alice")),
            first
        );
    }
    assert_eq!(first.as_deref(), Some("A"));
    assert_eq!(
        variant(HeaderList::request("GET", "a", "/")).as_deref(),
        Some(seed_variant("anonymous"))
    );
    let Decision::Matched {
        target: Some(target),
        ..
    } = t.decide(
        &HeaderList::request("GET", "a", "/").with("x-user-id", "bob"),
        &mut SplitMix64::new(1),
    )
    else {
        panic!()
    };
    assert_eq!(
        target.response_ops,
        vec![HeaderOp::Set("x-ab-test-variant".into(), "B".into())]
    );
}

#[test]
fn empty_rewrite_strings_are_unset() {
    // proto3: `rewrite: {uri: "", authority: b}` rewrites only the authority.
    let t = compile(vec![vs(json!({"hosts": ["a"], "http": [{
        "match": [{"uri": {"prefix": "/p"}}],
        "rewrite": {"uri": "", "authority": "b"},
        "route": [{"destination": {"host": "a"}}]}]}))])
    .unwrap();
    let out = applied(&t, &HeaderList::request("GET", "a", "/p/x")).unwrap();
    assert_eq!(get(&out, ":path").as_deref(), Some("/p/x"));
    assert_eq!(get(&out, ":authority").as_deref(), Some("b"));
}

#[test]
fn header_values_expand_envoys_command_operators() {
    let t = compile(vec![vs(json!({"hosts": ["a"], "http": [{
        "headers": {"request": {"set": {"x-from": "%REQ(x-user)%@%DOWNSTREAM_REMOTE_ADDRESS%",
                                        "x-pct": "100%%", "x-empty": "%REQ(x-none)%"}}},
        "route": [{"destination": {"host": "a"}}]}]}))])
    .unwrap();
    let mut req = HeaderList::request("GET", "a", "/").with("x-user", "bob");
    req.properties = vec![("source.address".into(), b"10.1.2.3:555".to_vec())];
    let out = applied(&t, &req).unwrap();
    assert_eq!(get(&out, "x-from").as_deref(), Some("bob@10.1.2.3:555"));
    assert_eq!(get(&out, "x-pct").as_deref(), Some("100%"));
    assert_eq!(
        get(&out, "x-empty"),
        None,
        "an empty value is dropped, as Envoy does"
    );
}

#[test]
fn operators_a_filter_cannot_evaluate_are_refused_with_the_path() {
    let e = |headers: serde_json::Value| {
        compile(vec![vs(
            json!({"hosts": ["a"], "http": [{"headers": headers,
            "route": [{"destination": {"host": "a"}}]}]}),
        )])
        .unwrap_err()
        .to_string()
    };
    let err = e(json!({"request": {"set": {"x": "%START_TIME%"}}}));
    assert!(
        err.starts_with("resources[0].spec.http[0].headers.request.set.x: "),
        "{err}"
    );
    assert!(
        err.contains("%START_TIME% is not supported by meshwasm"),
        "{err}"
    );
    let err = e(json!({"response": {"add": {"x": "%REQ(y)%"}}}));
    assert!(
        err.starts_with("resources[0].spec.http[0].headers.response.add.x: "),
        "{err}"
    );
}
