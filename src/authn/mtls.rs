//! `PeerAuthentication` → the mTLS mode of this workload (SPEC.md
//! §PeerAuthentication 1–3; istio/istio
//! `pilot/pkg/security/authn/policy_applier.go` `ComposePeerAuthentication`):
//! the narrowest scope with a mode wins — workload (selector) > namespace >
//! mesh (root namespace, no selector) > PERMISSIVE; the oldest policy wins
//! within a scope; `UNSET` inherits; `portLevelMtls` overrides per port.
//! An HTTP filter cannot close a plaintext connection as Istio's STRICT
//! listener does: it refuses the request instead (403 `RBAC: access
//! denied`), documented in docs/authn.md.

use super::compile::selects;
use crate::config::security::{MutualTls, PeerAuthentication};
use crate::config::{ConfigError, Document, Resource};

/// A PeerAuthentication mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Inherit.
    #[default]
    Unset,
    /// Plaintext only (nothing to enforce at the HTTP layer).
    Disable,
    /// Both.
    Permissive,
    /// Mutual TLS required.
    Strict,
}

fn mode(m: &MutualTls, path: &str) -> Result<Mode, ConfigError> {
    Ok(match m.mode.as_deref() {
        None | Some("UNSET") => Mode::Unset,
        Some("DISABLE") => Mode::Disable,
        Some("PERMISSIVE") => Mode::Permissive,
        Some("STRICT") => Mode::Strict,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{path}.mode"),
                format!("unknown mode {other:?}: UNSET, DISABLE, PERMISSIVE or STRICT"),
            ));
        }
    })
}

/// The effective modes of the workload.
#[derive(Debug, Clone, Default)]
pub struct MtlsPolicy {
    /// Mode of the workload (after inheritance; never `Unset`).
    pub workload: Mode,
    /// Per-port overrides (after inheritance).
    pub ports: Vec<(u32, Mode)>,
}

impl MtlsPolicy {
    /// The mode for a request that arrived on `port`.
    pub fn mode(&self, port: Option<u32>) -> Mode {
        port.and_then(|p| self.ports.iter().find(|(q, _)| *q == p))
            .map_or(self.workload, |(_, m)| *m)
    }

    /// Whether a request without mTLS is refused; asks for the request's
    /// port (a host property read) only when a port-level mode could
    /// change the answer.
    pub fn refuses_plaintext(&self, port: impl FnOnce() -> Option<u32>) -> bool {
        if self.is_permissive() {
            return false;
        }
        match self.ports.is_empty() {
            true => self.workload == Mode::Strict,
            false => self.mode(port()) == Mode::Strict,
        }
    }

    /// Whether nothing is ever refused for want of mTLS.
    pub fn is_permissive(&self) -> bool {
        self.workload != Mode::Strict && self.ports.iter().all(|(_, m)| *m != Mode::Strict)
    }

    /// Validates every PeerAuthentication and composes those that apply.
    pub fn compile(doc: &Document) -> Result<MtlsPolicy, ConfigError> {
        let root = doc.envoy.root_namespace.as_str();
        let mut scopes: [Vec<&Resource<PeerAuthentication>>; 3] = Default::default();
        for pa in &doc.peer_authentications {
            validate(pa)?;
            let ns = doc.namespace_of(pa);
            let scope = match (&pa.spec.selector, ns == root) {
                (Some(_), true) => continue, // ignored in the root namespace
                (None, true) => 2,
                (None, false) if ns == doc.workload.namespace => 1,
                (Some(sel), false)
                    if ns == doc.workload.namespace && selects(Some(sel), &doc.workload.labels) =>
                {
                    0
                }
                _ => continue,
            };
            if let Some(list) = scopes.get_mut(scope) {
                list.push(pa);
            }
        }
        let [workload, namespace, mesh] = scopes;
        let mut effective = Mode::Permissive;
        let mut chosen = None;
        for pa in [oldest(&mesh), oldest(&namespace), oldest(&workload)]
            .into_iter()
            .flatten()
        {
            let m = match &pa.spec.mtls {
                Some(m) => mode(m, &format!("{}.mtls", pa.spec_path()))?,
                None => Mode::Unset,
            };
            if m != Mode::Unset {
                effective = m;
            }
            chosen = Some(pa);
        }
        let mut ports = Vec::new();
        if let Some(pa) = chosen.filter(|pa| pa.spec.selector.is_some()) {
            for (port, m) in &pa.spec.port_level_mtls {
                let path = format!("{}.portLevelMtls.{port}", pa.spec_path());
                let p = port.parse::<u32>().unwrap_or(0);
                let m = match mode(m, &path)? {
                    Mode::Unset => effective,
                    m => m,
                };
                ports.push((p, m));
            }
        }
        Ok(MtlsPolicy {
            workload: effective,
            ports,
        })
    }
}

/// The oldest policy of a scope (creationTimestamp, then document order).
fn oldest<'a>(
    list: &[&'a Resource<PeerAuthentication>],
) -> Option<&'a Resource<PeerAuthentication>> {
    let time = |r: &Resource<PeerAuthentication>| {
        r.metadata.creation_timestamp.clone().unwrap_or_default()
    };
    list.iter()
        .min_by(|a, b| time(a).cmp(&time(b)).then(a.index.cmp(&b.index)))
        .copied()
}

fn validate(pa: &Resource<PeerAuthentication>) -> Result<(), ConfigError> {
    let at = pa.spec_path();
    if let Some(m) = &pa.spec.mtls {
        mode(m, &format!("{at}.mtls"))?;
    }
    if !pa.spec.port_level_mtls.is_empty() {
        let labels = pa
            .spec
            .selector
            .as_ref()
            .map_or(0, |s| s.match_labels.len());
        if labels == 0 {
            return Err(ConfigError::new(
                format!("{at}.portLevelMtls"),
                "portLevelMtls requires a workload selector with labels",
            ));
        }
    }
    for (port, m) in &pa.spec.port_level_mtls {
        let path = format!("{at}.portLevelMtls.{port}");
        if port
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=65535).contains(p))
            .is_none()
        {
            return Err(ConfigError::new(path, "port must be in range 1..65535"));
        }
        mode(m, &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_read_only_when_a_port_level_mode_could_change_the_answer() {
        let unread = || -> Option<u32> { panic!("the port was read") };
        let strict = MtlsPolicy {
            workload: Mode::Strict,
            ports: Vec::new(),
        };
        let permissive = MtlsPolicy {
            workload: Mode::Permissive,
            ports: Vec::new(),
        };
        assert!(strict.refuses_plaintext(unread));
        assert!(!permissive.refuses_plaintext(unread));

        let by_port = MtlsPolicy {
            workload: Mode::Permissive,
            ports: vec![(8443, Mode::Strict)],
        };
        let mut reads = 0;
        assert!(by_port.refuses_plaintext(|| {
            reads += 1;
            Some(8443)
        }));
        assert!(!by_port.refuses_plaintext(|| Some(8080)));
        assert!(!by_port.refuses_plaintext(|| None));
        assert_eq!(reads, 1);
    }
}
