//! Whether the stage asks for the connection's mTLS: always when the
//! identity goes to filter state (it names the peer) or a PeerAuthentication
//! can refuse plaintext; otherwise never (the mesh filter by default).

use std::rc::Rc;

use serde_json::json;

use super::tests::{bearer, inline, policy, rs256, run_with};
use super::*;
use crate::http::HeaderList;
use crate::pipeline::{Metrics, NoKeys, Stage};
use crate::verdict::Verdict;

/// A request with a token over mTLS from `frontend`.
fn over_mtls() -> HeaderList {
    let mut req = bearer(&rs256(json!({})));
    req.properties.push(("connection.mtls".into(), vec![1]));
    req.properties.push((
        "connection.uri_san_peer_certificate".into(),
        b"spiffe://cluster.local/ns/default/sa/frontend".to_vec(),
    ));
    req
}

fn stage(resources: Vec<serde_json::Value>, hands_on: bool) -> AuthnStage {
    AuthnStage::new(Rc::new(policy(resources).unwrap()), &mut Metrics::default())
        .handing_on(hands_on)
}

#[test]
fn the_peer_is_asked_for_only_when_the_identity_is_handed_on_or_mtls_can_refuse() {
    let peer = |s: &AuthnStage| {
        let (v, id, _) = run_with(s, over_mtls(), &NoKeys, None);
        assert!(matches!(v, Verdict::Continue(_)));
        id.and_then(|i| i.peer_principal)
    };
    let handed_on = stage(vec![inline(json!({}))], true);
    assert!(handed_on.hands_on_identity());
    assert_eq!(
        peer(&handed_on).as_deref(),
        Some("cluster.local/ns/default/sa/frontend")
    );

    let kept = stage(vec![inline(json!({}))], false);
    assert!(!kept.hands_on_identity());
    assert_eq!(peer(&kept), None, "permissive and not handed on: not read");

    let strict = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {"mtls": {"mode": "STRICT"}}});
    let kept_strict = stage(vec![inline(json!({})), strict], false);
    assert!(peer(&kept_strict).is_some(), "STRICT: read");
    let (v, _, _) = run_with(&kept_strict, bearer(&rs256(json!({}))), &NoKeys, None);
    assert!(
        matches!(v, Verdict::Reply(r) if r.status == 403),
        "plaintext refused"
    );
}
