//! TLS on the rig's listener: a `DownstreamTlsContext` with the test PKI's
//! server certificate, client certificates not requested, optional or
//! required, and optionally plaintext on the same port (Istio's PERMISSIVE
//! shape: a `tls_inspector` listener filter and one filter chain per
//! `transport_protocol`, SPEC.md §PeerAuthentication 4).

use std::path::Path;

use serde_json::{Value, json};

use super::EnvoyError;
use super::config::template_error;
use crate::tls::TestPki;

const TLS_CONTEXT: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
const TLS_INSPECTOR_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";

/// Whether Envoy asks TLS clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertificate {
    /// Not asked for (no validation context): TLS without peer identity.
    NotRequested,
    /// Asked for and verified against the CA when sent, but not required: a
    /// client without one still connects.
    Optional,
    /// Required (`require_client_certificate: true`): a client without one
    /// fails the handshake (STRICT).
    Required,
}

/// TLS settings of the rig's listener for [`super::EnvoyRig::tls`].
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    cert_chain_pem: String,
    private_key_pem: String,
    client_ca_pem: String,
    client_certificate: ClientCertificate,
    plaintext: bool,
}

impl ListenerTls {
    /// `pki`'s server certificate; client certificates [`Optional`]
    /// and verified against `pki`'s CA; plaintext accepted on the same port.
    ///
    /// [`Optional`]: ClientCertificate::Optional
    pub fn new(pki: &TestPki) -> ListenerTls {
        ListenerTls::from_pem(
            pki.server().cert_pem(),
            pki.server().key_pem(),
            pki.ca_pem(),
        )
    }

    /// The same defaults as [`ListenerTls::new`] from PEM text: the
    /// server's certificate chain and private key, the CA client
    /// certificates must chain to.
    pub fn from_pem(
        cert_chain_pem: &str,
        private_key_pem: &str,
        client_ca_pem: &str,
    ) -> ListenerTls {
        ListenerTls {
            cert_chain_pem: cert_chain_pem.to_owned(),
            private_key_pem: private_key_pem.to_owned(),
            client_ca_pem: client_ca_pem.to_owned(),
            client_certificate: ClientCertificate::Optional,
            plaintext: true,
        }
    }

    /// Sets whether client certificates are requested and required.
    pub fn client_certificate(mut self, mode: ClientCertificate) -> ListenerTls {
        self.client_certificate = mode;
        self
    }

    /// Sets whether plaintext connections are served on the same port
    /// (default `true`); `false` closes them (Istio STRICT).
    pub fn plaintext(mut self, accept: bool) -> ListenerTls {
        self.plaintext = accept;
        self
    }

    /// The `transport_socket` of the TLS filter chain.
    fn transport_socket(&self) -> Value {
        let mut common = json!({
            "tls_certificates": [{
                "certificate_chain": {"inline_string": self.cert_chain_pem},
                "private_key": {"inline_string": self.private_key_pem},
            }],
            "alpn_protocols": ["h2", "http/1.1"],
        });
        if self.client_certificate != ClientCertificate::NotRequested
            && let Value::Object(c) = &mut common
        {
            c.insert(
                "validation_context".to_owned(),
                json!({"trusted_ca": {"inline_string": self.client_ca_pem}}),
            );
        }
        json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": TLS_CONTEXT,
                "require_client_certificate": self.client_certificate == ClientCertificate::Required,
                "common_tls_context": common,
            },
        })
    }

    /// Makes the first filter chain of the first listener a TLS chain and,
    /// with plaintext on, adds a copy of it for `raw_buffer` connections
    /// behind a `tls_inspector`.
    pub(super) fn apply(&self, cfg: &mut Value, path: &Path) -> Result<(), EnvoyError> {
        let listener = cfg
            .pointer_mut("/static_resources/listeners/0")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| template_error(path, "no static_resources.listeners[0]"))?;
        let chains = listener
            .get_mut("filter_chains")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| template_error(path, "the first listener has no filter_chains"))?;
        let first = chains
            .first_mut()
            .and_then(Value::as_object_mut)
            .ok_or_else(|| template_error(path, "the first listener has no filter chain"))?;
        let plain = Value::Object(first.clone());
        first.insert("transport_socket".to_owned(), self.transport_socket());
        if !self.plaintext {
            return Ok(());
        }
        first.insert(
            "filter_chain_match".to_owned(),
            json!({"transport_protocol": "tls"}),
        );
        let mut plain = plain;
        if let Value::Object(p) = &mut plain {
            p.insert(
                "filter_chain_match".to_owned(),
                json!({"transport_protocol": "raw_buffer"}),
            );
        }
        chains.insert(1, plain);
        let filters = listener
            .entry("listener_filters")
            .or_insert_with(|| json!([]));
        if let Value::Array(filters) = filters
            && !filters
                .iter()
                .any(|f| f.get("name").and_then(Value::as_str) == Some(TLS_INSPECTOR))
        {
            filters.push(json!({
                "name": TLS_INSPECTOR,
                "typed_config": {"@type": TLS_INSPECTOR_TYPE},
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn template() -> Value {
        json!({"static_resources": {"listeners": [{
            "name": "main",
            "filter_chains": [{"filters": [{"name": "hcm"}]}],
        }]}})
    }

    fn tls() -> ListenerTls {
        ListenerTls::from_pem("CERT", "KEY", "CA")
    }

    #[test]
    fn with_plaintext_the_listener_gets_a_tls_chain_a_raw_chain_and_a_tls_inspector() {
        let mut cfg = template();

        tls().apply(&mut cfg, Path::new("t")).unwrap();

        let listener = &cfg["static_resources"]["listeners"][0];
        let chains = listener["filter_chains"].as_array().unwrap();
        assert_eq!(chains.len(), 2);
        assert_eq!(chains[0]["filter_chain_match"]["transport_protocol"], "tls");
        assert_eq!(
            chains[1]["filter_chain_match"]["transport_protocol"],
            "raw_buffer"
        );
        assert!(chains[1].get("transport_socket").is_none());
        assert_eq!(chains[0]["filters"], chains[1]["filters"]);
        assert_eq!(listener["listener_filters"][0]["name"], TLS_INSPECTOR);
    }

    #[test]
    fn without_plaintext_the_only_chain_is_tls() {
        let mut cfg = template();

        tls()
            .plaintext(false)
            .client_certificate(ClientCertificate::Required)
            .apply(&mut cfg, Path::new("t"))
            .unwrap();

        let listener = &cfg["static_resources"]["listeners"][0];
        assert_eq!(listener["filter_chains"].as_array().unwrap().len(), 1);
        let ctx = &listener["filter_chains"][0]["transport_socket"]["typed_config"];
        assert_eq!(ctx["require_client_certificate"], true);
        assert_eq!(
            ctx["common_tls_context"]["validation_context"]["trusted_ca"]["inline_string"],
            "CA"
        );
        assert!(listener.get("listener_filters").is_none());
    }

    #[test]
    fn an_unrequested_client_certificate_means_no_validation_context() {
        let mut cfg = template();

        tls()
            .client_certificate(ClientCertificate::NotRequested)
            .apply(&mut cfg, Path::new("t"))
            .unwrap();

        let ctx = &cfg["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]
            ["typed_config"];
        assert_eq!(ctx["require_client_certificate"], false);
        assert!(
            ctx["common_tls_context"]
                .get("validation_context")
                .is_none()
        );
        assert_eq!(
            ctx["common_tls_context"]["tls_certificates"][0]["private_key"]["inline_string"],
            "KEY"
        );
    }
}
