//! Every source field and its `not*` form (SPEC.md §AuthorizationPolicy
//! 5, §PeerAuthentication 5, Verified 4 and 10), against the requests that
//! tell its semantics apart.

use base64::Engine as _;
use serde_json::{Value, json};

use super::tests::{ALLOW, ap, check, check_with, denied, get, jwt, mtls, none, prop};
use crate::http::HeaderList;

fn from(source: Value) -> Value {
    ap("p", json!({"rules": [{"from": [{"source": source}]}]}))
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A PEM certificate whose only extensions are basicConstraints and a
/// critical subjectAltName with these URI and DNS names (the DER walk reads
/// nothing else).
pub(super) fn cert(uris: &[&str], dns: &[&str]) -> Vec<u8> {
    let names: Vec<u8> = uris
        .iter()
        .map(|u| der(0x86, u.as_bytes()))
        .chain(dns.iter().map(|d| der(0x82, d.as_bytes())))
        .chain([der(0xa0, &der(0x06, &[0x2b, 0x06]))])
        .collect::<Vec<_>>()
        .concat();
    let basic = der(
        0x30,
        &[der(0x06, &[0x55, 0x1d, 0x13]), der(0x04, &der(0x30, &[]))].concat(),
    );
    let san = der(
        0x30,
        &[
            der(0x06, &[0x55, 0x1d, 0x11]),
            der(0x01, &[0xff]),
            der(0x04, &der(0x30, &names)),
        ]
        .concat(),
    );
    let exts = der(0xa3, &der(0x30, &[basic, san].concat()));
    let empty = der(0x30, &[]);
    let tbs = der(
        0x30,
        &[
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &[1]),
            empty.clone(),
            empty.clone(),
            empty.clone(),
            empty.clone(),
            empty.clone(),
            exts,
        ]
        .concat(),
    );
    let c = der(0x30, &[tbs, empty, der(0x03, &[0])].concat());
    let b64 = base64::engine::general_purpose::STANDARD.encode(c);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
    .into_bytes()
}

/// The request over mTLS as Envoy 1.40 describes the client certificate.
pub(super) fn mtls_cert(r: HeaderList, uris: &[&str], dns: &[&str], subject: &str) -> HeaderList {
    let r = prop(r, "connection.mtls", &[1]);
    let r = prop(r, "connection.peer_certificate", &cert(uris, dns));
    let r = match uris.first() {
        Some(u) => prop(r, "connection.uri_san_peer_certificate", u.as_bytes()),
        None => r,
    };
    prop(r, "connection.subject_peer_certificate", subject.as_bytes())
}

pub(super) const FRONTEND: &str = "spiffe://cluster.local/ns/default/sa/frontend";
pub(super) const ADMIN: &str = "spiffe://cluster.local/ns/default/sa/admin";

fn tls_no_cert(r: HeaderList) -> HeaderList {
    prop(r, "connection.mtls", &[0])
}

pub(super) fn t1() -> Option<crate::authn::Identity> {
    Some(jwt(
        json!({"iss": "test-issuer-1@istio.io", "sub": "sub-1", "groups": ["group-1"]}),
    ))
}

pub(super) fn t2() -> Option<crate::authn::Identity> {
    Some(jwt(
        json!({"iss": "test-issuer-2@istio.io", "sub": "sub-2", "groups": ["group-2"]}),
    ))
}

#[test]
fn principals_match_exactly_by_prefix_by_suffix_and_case_sensitively() {
    check(
        vec![from(
            json!({"principals": ["cluster.local/ns/default/sa/frontend", "cluster.local/ns/foo/*", "*/sa/admin"]}),
        )],
        vec![
            (mtls(get("/"), FRONTEND), ALLOW),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/foo/sa/sleep"),
                ALLOW,
            ),
            (mtls(get("/"), ADMIN), ALLOW),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/default/sa/Frontend"),
                none(),
            ),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/bar/sa/sleep"),
                none(),
            ),
            (get("/"), none()),
            (tls_no_cert(get("/")), none()),
        ],
    );
}

#[test]
fn principals_are_matched_against_every_san_then_the_subject() {
    check(
        vec![from(
            json!({"principals": ["cluster.local/ns/default/sa/admin"]}),
        )],
        vec![
            (
                mtls_cert(
                    get("/"),
                    &["https://example.com/not-spiffe", ADMIN],
                    &[],
                    "CN=two-uris",
                ),
                ALLOW,
            ),
            (
                mtls_cert(get("/"), &["https://example.com/x"], &[ADMIN], "CN=x"),
                ALLOW,
            ),
            (
                mtls_cert(get("/"), &[], &[], &format!("CN={ADMIN}")),
                none(),
            ),
            (mtls_cert(get("/"), &[FRONTEND], &[], "CN=x"), none()),
        ],
    );
    check(
        vec![from(json!({"principals": ["*"]}))],
        vec![
            (
                mtls_cert(
                    get("/"),
                    &[],
                    &["frontend.default.svc.cluster.local"],
                    "CN=frontend",
                ),
                ALLOW,
            ),
            (
                mtls_cert(
                    get("/"),
                    &[],
                    &[],
                    "CN=spiffe://cluster.local/ns/default/sa/admin",
                ),
                ALLOW,
            ),
            (get("/"), none()),
            (tls_no_cert(get("/")), none()),
        ],
    );
}

#[test]
fn not_principals_match_plaintext_and_refuse_any_matching_san() {
    check(
        vec![from(
            json!({"notPrincipals": ["cluster.local/ns/default/sa/admin"]}),
        )],
        vec![
            (mtls(get("/"), FRONTEND), ALLOW),
            (mtls(get("/"), ADMIN), none()),
            (
                mtls_cert(
                    get("/"),
                    &["spiffe://cluster.local/ns/default/sa/other", ADMIN],
                    &[],
                    "CN=x",
                ),
                none(),
            ),
            (get("/"), ALLOW),
            (tls_no_cert(get("/")), ALLOW),
        ],
    );
}

#[test]
fn a_deny_on_not_principals_star_requires_mtls() {
    let p = ap(
        "require-mtls",
        json!({"action": "DENY", "rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]}),
    );
    let id = "ns[foo]-policy[require-mtls]-rule[0]";
    check(
        vec![p],
        vec![
            (mtls(get("/"), FRONTEND), ALLOW),
            (get("/"), denied(id)),
            (tls_no_cert(get("/")), denied(id)),
            (
                mtls_cert(
                    get("/"),
                    &[],
                    &["frontend.default.svc.cluster.local"],
                    "CN=f",
                ),
                ALLOW,
            ),
        ],
    );
}

#[test]
fn namespaces_are_a_regex_over_every_peer_identity() {
    check(
        vec![from(json!({"namespaces": ["foo", "ba*"]}))],
        vec![
            (
                mtls(get("/"), "spiffe://cluster.local/ns/foo/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/bar/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://td2.example/ns/foo/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/evil/sa/x/ns/foo/y"),
                ALLOW,
            ),
            (mtls(get("/"), FRONTEND), none()),
            (get("/"), none()),
        ],
    );
    check(
        vec![from(json!({"namespaces": ["default"]}))],
        vec![(mtls_cert(get("/"), &[], &[], &format!("CN={ADMIN}")), ALLOW)],
    );
    check(
        vec![from(json!({"notNamespaces": ["default"]}))],
        vec![
            (
                mtls(get("/"), "spiffe://cluster.local/ns/foo/sa/sleep"),
                ALLOW,
            ),
            (mtls(get("/"), FRONTEND), none()),
            (get("/"), ALLOW),
        ],
    );
}

#[test]
fn service_accounts_default_to_the_policys_namespace() {
    check(
        vec![from(json!({"serviceAccounts": ["sleep", "bar/sleep"]}))],
        vec![
            (
                mtls(get("/"), "spiffe://cluster.local/ns/foo/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/bar/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/foo/sa/sleep/extra"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/foo/team/a/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://td2.example/ns/foo/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/foo/sa/sleep-v2"),
                none(),
            ),
            (mtls(get("/"), FRONTEND), none()),
            (get("/"), none()),
        ],
    );
    check(
        vec![from(json!({"notServiceAccounts": ["sleep"]}))],
        vec![
            (
                mtls(get("/"), "spiffe://cluster.local/ns/foo/sa/sleep"),
                none(),
            ),
            (
                mtls(get("/"), "spiffe://cluster.local/ns/bar/sa/sleep"),
                ALLOW,
            ),
            (get("/"), ALLOW),
        ],
    );
}

#[test]
fn trust_domains_match_the_spiffe_authority_with_wildcards() {
    check(
        vec![from(json!({"trustDomains": ["cluster.local", "td2*"]}))],
        vec![
            (mtls(get("/"), FRONTEND), ALLOW),
            (
                mtls(get("/"), "spiffe://td2.example/ns/foo/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://bad.example/ns/foo/sa/sleep"),
                none(),
            ),
            (
                mtls(get("/"), "spiffe://cluster.local.evil/ns/foo/sa/x"),
                none(),
            ),
            (get("/"), none()),
        ],
    );
    check(
        vec![ap(
            "p",
            json!({"rules": [{"from": [
            {"source": {"trustDomains": ["cluster.local", "another.local"]}},
            {"source": {"notTrustDomains": ["bad*", "untrusted"]}}]}]}),
        )],
        vec![
            (
                mtls(get("/"), "spiffe://td2.example/ns/foo/sa/sleep"),
                ALLOW,
            ),
            (
                mtls(get("/"), "spiffe://bad.example/ns/foo/sa/sleep"),
                none(),
            ),
            (mtls(get("/"), "spiffe://untrusted/ns/foo/sa/sleep"), none()),
            (get("/"), ALLOW),
        ],
    );
}

#[test]
fn ip_blocks_match_the_peer_address_by_cidr() {
    let from_ip = |ip: &str| prop(get("/"), "source.address", format!("{ip}:4000").as_bytes());
    check(
        vec![from(
            json!({"ipBlocks": ["127.0.0.2", "127.0.1.0/24", "fd00::/8"]}),
        )],
        vec![
            (from_ip("127.0.0.2"), ALLOW),
            (from_ip("127.0.1.7"), ALLOW),
            (prop(get("/"), "source.address", b"[fd12::1]:4000"), ALLOW),
            (from_ip("127.0.0.1"), none()),
        ],
    );
    check(
        vec![from(json!({"notIpBlocks": ["127.0.0.3"]}))],
        vec![
            (from_ip("127.0.0.3"), none()),
            (from_ip("127.0.0.1"), ALLOW),
        ],
    );
}

#[test]
fn behind_x_forwarded_for_the_peer_address_is_unknown_and_grants_nothing() {
    // Envoy reports the last XFF entry as `source.address`: a client could
    // claim any address. ALLOW policies do not match, DENY policies do.
    let spoof = |ip: &str| get("/").with("x-forwarded-for", ip);
    check(
        vec![from(json!({"ipBlocks": ["127.0.0.2"]}))],
        vec![(
            prop(spoof("127.0.0.2"), "source.address", b"127.0.0.2:4000"),
            none(),
        )],
    );
    check(
        vec![from(json!({"notIpBlocks": ["127.0.0.3"]}))],
        vec![(spoof("10.0.0.1"), none())],
    );
    let deny = |source: Value| {
        ap(
            "d",
            json!({"action": "DENY", "rules": [{"from": [{"source": source}]}]}),
        )
    };
    let id = "ns[foo]-policy[d]-rule[0]";
    check(
        vec![deny(json!({"ipBlocks": ["127.0.0.3"]}))],
        vec![(spoof("10.0.0.1"), denied(id))],
    );
    check(
        vec![deny(json!({"notIpBlocks": ["127.0.0.3"]}))],
        vec![(spoof("127.0.0.3"), denied(id))],
    );
    // An XFF that is not an address leaves the peer in place.
    check(
        vec![from(json!({"ipBlocks": ["127.0.0.1"]}))],
        vec![(spoof("not-an-ip"), ALLOW)],
    );
}

#[test]
fn remote_ip_blocks_use_the_last_x_forwarded_for_entry() {
    let xff = |v: &str| get("/").with("x-forwarded-for", v);
    check(
        vec![from(
            json!({"remoteIpBlocks": ["10.1.0.0/16", "127.0.0.4"]}),
        )],
        vec![
            (xff("10.1.2.3"), ALLOW),
            (xff("10.1.2.3, 192.168.1.1"), none()),
            (xff("192.168.1.1, 10.1.2.3"), ALLOW),
            (
                get("/")
                    .with("x-forwarded-for", "192.168.1.1")
                    .with("x-forwarded-for", "10.1.2.3"),
                ALLOW,
            ),
            (xff("not-an-ip"), none()),
            (get("/"), none()),
            (prop(get("/"), "source.address", b"127.0.0.4:1"), ALLOW),
            (
                prop(xff("192.168.1.1"), "source.address", b"127.0.0.4:1"),
                none(),
            ),
        ],
    );
    check(
        vec![from(json!({"notRemoteIpBlocks": ["10.1.0.0/16"]}))],
        vec![
            (xff("10.1.2.3"), none()),
            (xff("192.168.1.1"), ALLOW),
            (get("/"), ALLOW),
        ],
    );
}

#[test]
fn request_principals_split_at_the_last_slash_and_come_only_from_the_identity() {
    let rule = |path: &str, source: Value| json!({"to": [{"operation": {"paths": [path]}}], "from": [{"source": source}]});
    let p = ap(
        "rp",
        json!({"rules": [
            rule("/exact", json!({"requestPrincipals": ["test-issuer-1@istio.io/sub-1"]})),
            rule("/any", json!({"requestPrincipals": ["*"]})),
            rule("/iss2", json!({"requestPrincipals": ["test-issuer-2@istio.io/*"]})),
            rule("/sub1", json!({"requestPrincipals": ["*/sub-1"]})),
            rule("/noslash", json!({"requestPrincipals": ["test-issuer-1@istio.io"]})),
            rule("/not1", json!({"notRequestPrincipals": ["test-issuer-1@istio.io/sub-1"]})),
            rule("/team", json!({"requestPrincipals": ["https://auth.example.com/team/*"]})),
        ]}),
    );
    let no_sub = Some(jwt(json!({"iss": "test-issuer-1@istio.io"})));
    let team = Some(jwt(
        json!({"iss": "https://auth.example.com", "sub": "team/alice"}),
    ));
    let forged = get("/exact")
        .with(
            "x-jwt-payload",
            "eyJpc3MiOiJ0ZXN0LWlzc3Vlci0xQGlzdGlvLmlvIiwic3ViIjoic3ViLTEifQ",
        )
        .with("x-request-principal", "test-issuer-1@istio.io/sub-1");
    check_with(
        vec![p],
        json!({}),
        vec![
            (get("/exact"), t1(), ALLOW),
            (get("/exact"), t2(), none()),
            (get("/exact"), None, none()),
            (forged, None, none()),
            (get("/any"), t2(), ALLOW),
            (get("/any"), None, none()),
            (get("/any"), no_sub.clone(), none()),
            (get("/iss2"), t2(), ALLOW),
            (get("/iss2"), t1(), none()),
            (get("/sub1"), t1(), ALLOW),
            (get("/sub1"), t2(), none()),
            (get("/noslash"), t1(), none()),
            (get("/noslash"), no_sub, none()),
            (get("/not1"), t1(), none()),
            (get("/not1"), t2(), ALLOW),
            (get("/not1"), None, ALLOW),
            (get("/team"), team, none()),
        ],
    );
}

/// The request over mTLS as Envoy before 1.38 describes the client
/// certificate: its first URI SAN, no `connection.peer_certificate`.
fn mtls_first_san_only(r: HeaderList, uri: &str) -> HeaderList {
    let r = prop(r, "connection.mtls", &[1]);
    let r = prop(r, "connection.uri_san_peer_certificate", uri.as_bytes());
    prop(r, "connection.subject_peer_certificate", b"CN=client")
}

#[test]
fn without_the_certificate_a_principal_the_first_san_does_not_decide_fails_closed() {
    // A later SAN might be admin: neither allowed by it nor spared a DENY.
    let allow_admin = from(json!({"principals": ["cluster.local/ns/default/sa/admin"]}));
    check(
        vec![allow_admin],
        vec![
            (mtls_first_san_only(get("/"), ADMIN), ALLOW),
            (mtls_first_san_only(get("/"), FRONTEND), none()),
        ],
    );
    let not_admin = from(json!({"notPrincipals": ["cluster.local/ns/default/sa/admin"]}));
    check(
        vec![not_admin],
        vec![
            (mtls_first_san_only(get("/"), FRONTEND), none()),
            (mtls_first_san_only(get("/"), ADMIN), none()),
            (mtls(get("/"), FRONTEND), ALLOW),
        ],
    );
    let deny_admin = ap(
        "d",
        json!({"action": "DENY", "rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/default/sa/admin"]}}]}]}),
    );
    check(
        vec![deny_admin],
        vec![
            (
                mtls_first_san_only(get("/"), FRONTEND),
                denied("ns[foo]-policy[d]-rule[0]"),
            ),
            (
                mtls_first_san_only(get("/"), ADMIN),
                denied("ns[foo]-policy[d]-rule[0]"),
            ),
            (mtls(get("/"), FRONTEND), ALLOW),
            (tls_no_cert(get("/")), ALLOW),
        ],
    );
}
