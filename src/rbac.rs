//! Authorization (SPEC.md §AuthorizationPolicy, §PeerAuthentication 5):
//! the `AuthorizationPolicy`s that select the workload, compiled into one
//! [`RbacStage`] that decides as Envoy's RBAC filter does when Istio
//! configures it — CUSTOM (refused: not implemented), then DENY, then
//! ALLOW; AUDIT and `istio.io/dry-run` policies only record — with Envoy's
//! denial (403 `RBAC: access denied`, details naming the rule).
//!
//! - Sources: the peer certificate's identities under mTLS (principals,
//!   namespaces, service accounts, trust domains), the connection's and the
//!   client's addresses, and the request principal of the [`Identity`] the
//!   authn filter handed on — never a header.
//! - Operations: `:authority` (case-insensitive, port kept), the
//!   destination port, `:method`, the path without its query after Envoy's
//!   path normalisation (`envoy.pathNormalization`, default `BASE`), with
//!   `;` parameters stripped; path templates `{*}` / `{**}`.
//! - Conditions: every key of SPEC.md §AuthorizationPolicy 7; each value of
//!   a repeated header matched on its own.
//!
//! Compiled once; a request reads headers and host properties and
//! allocates nothing else unless the path must be rewritten or a denial
//! logged.
//!
//! [`Identity`]: crate::authn::Identity

mod cert;
mod compile;
mod facts;
mod generator;
mod matchers;
pub mod path;
mod stage;

pub use compile::{Action, CompiledPolicy, RbacPolicy};
pub use stage::{DENIED_BODY, DENIED_NONE, PATH_REJECTED, RbacPhase, RbacStage, RbacState};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_config;
#[cfg(test)]
mod tests_operation;
#[cfg(test)]
mod tests_path;
#[cfg(test)]
mod tests_source;
#[cfg(test)]
mod tests_when;
