//! Every operation field and its `not*` form (SPEC.md
//! §AuthorizationPolicy 4, 6, Verified 2, 3 and 8), path templates
//! included.

use serde_json::{Value, json};

use super::tests::{ALLOW, Out, ap, check, get, none, req};
use crate::http::HeaderList;

fn to(operation: Value) -> Value {
    ap("p", json!({"rules": [{"to": [{"operation": operation}]}]}))
}

#[test]
fn hosts_ignore_case_keep_the_port_and_star_means_present() {
    let host = |h: &str| HeaderList::request("GET", h, "/");
    check(
        vec![to(
            json!({"hosts": ["exact.example.com", "*.suffix.example", "prefix.*"]}),
        )],
        vec![
            (host("exact.example.com"), ALLOW),
            (host("EXACT.Example.COM"), ALLOW),
            (host("exact.example.com:28080"), none()),
            (host("exact.example.com."), none()),
            (host("A.SUFFIX.EXAMPLE"), ALLOW),
            (host("suffix.example"), none()),
            (host("PREFIX.x"), ALLOW),
            (host("other.example"), none()),
        ],
    );
    check(
        vec![to(json!({"hosts": ["*"]}))],
        vec![(host(""), ALLOW), (host("x"), ALLOW)],
    );
    check(
        vec![to(json!({"notHosts": ["deny.example.com"]}))],
        vec![
            (host("allow.example.com"), ALLOW),
            (host("DENY.example.com"), none()),
            (host("deny.example.com:28080"), ALLOW),
        ],
    );
}

#[test]
fn ports_are_the_destination_port() {
    let mut alt = get("/");
    alt.port = Some(28081);
    check(
        vec![to(json!({"ports": ["28081"]}))],
        vec![(alt.clone(), ALLOW), (get("/"), none())],
    );
    check(
        vec![to(json!({"notPorts": ["28081"]}))],
        vec![(alt, none()), (get("/"), ALLOW)],
    );
}

#[test]
fn methods_match_case_sensitively_with_wildcards() {
    check(
        vec![to(json!({"methods": ["GET", "PO*", "*TCH"]}))],
        vec![
            (req("GET", "/"), ALLOW),
            (req("POST", "/"), ALLOW),
            (req("PATCH", "/"), ALLOW),
            (req("PUT", "/"), none()),
            (req("get", "/"), none()),
            (req("HEAD", "/"), none()),
        ],
    );
    check(
        vec![to(json!({"notMethods": ["PUT"]}))],
        vec![(req("GET", "/"), ALLOW), (req("PUT", "/"), none())],
    );
}

#[test]
fn paths_are_matched_without_the_query_exactly_by_prefix_or_suffix() {
    check(
        vec![to(json!({"paths": ["/exact", "/prefix/*", "*/suffix"]}))],
        vec![
            (get("/exact"), ALLOW),
            (get("/exact?a=b"), ALLOW),
            (get("/exact/"), none()),
            (get("/EXACT"), none()),
            (get("/prefix/"), ALLOW),
            (get("/prefix"), none()),
            (get("/prefix/a/b"), ALLOW),
            (get("/a/b/suffix"), ALLOW),
            (get("/suffix"), ALLOW),
            (get("/x.suffix"), none()),
            (get("/a/suffix?q=/suffix"), ALLOW),
            (get("/other?/exact"), none()),
        ],
    );
    check(
        vec![to(json!({"paths": ["*"]}))],
        vec![(get("/"), ALLOW), (get("/a/b?c"), ALLOW)],
    );
    check(
        vec![to(json!({"notPaths": ["/admin", "/admin/*"]}))],
        vec![
            (get("/x"), ALLOW),
            (get("/admin"), none()),
            (get("/admin/a"), none()),
            (get("/ADMIN"), ALLOW),
            (get("/x/../admin"), none()),
        ],
    );
}

#[test]
fn path_templates_follow_istios_integration_matrix() {
    let p = to(json!({"paths": ["/allow/admin/{**}", "/foo/{*}/bar/{**}", "/store/{**}/cart"]}));
    let allowed = [
        "/allow/admin/",
        "/allow/admin/temp",
        "/allow/admin/temp.txt",
        "/allow/admin/foo/temp.txt",
        "/foo/buzz/bar/bat.txt",
        "/foo/buzz/bar/bat.temp.txt",
        "/foo/buzz/bar/bat/fuzz.txt",
        "/foo/buzz/bar/bat",
        "/store//cart",
        "/store/foo/cart",
        "/store/foo/bar/cart",
        "/allow/admin/x?y=1",
        "/foo/a%2Fb/bar/x",
        "/foo/*/bar/x",
        "/foo/a/bar/",
    ];
    let denied_paths = [
        "/allow/admin",
        "/allow/user/",
        "/allow/admin?param=value",
        "/allow",
        "/foo/bar/bat.txt",
        "/foo//bar/bat.txt",
        "/store/cart",
    ];
    let cases = allowed
        .iter()
        .map(|p| (get(p), ALLOW))
        .chain(denied_paths.iter().map(|p| (get(p), none())))
        .collect();
    check(vec![p], cases);
    check(
        vec![to(
            json!({"paths": ["/{**}/path/template", "/api/{*}/items"]}),
        )],
        vec![
            (get("/a/b/path/template"), ALLOW),
            (get("//path/template"), ALLOW),
            (get("/api/x/items"), ALLOW),
            (
                get("/api/%41/items"),
                Out::Allowed(Some("/api/A/items".into())),
            ),
            (get("/api//items"), none()),
            (get("/api/x/y/items"), none()),
        ],
    );
}
