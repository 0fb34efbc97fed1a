//! meshwasm core: Istio's traffic-management and security resources,
//! validated and compiled once, and per-request decisions over a narrow
//! [`http::RequestView`]. No proxy-wasm types: the same code runs natively
//! (tests, tools) and inside the wasm filters.
#![cfg_attr(not(test), forbid(unsafe_code))]

pub mod authn;
pub mod config;
pub mod fault;
pub mod http;
pub mod matching;
pub mod pipeline;
pub mod rbac;
pub mod resilience;
pub mod rng;
pub mod route;
pub mod verdict;

#[cfg(test)]
mod testutil;
