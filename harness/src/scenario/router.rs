//! Envoy's router as the harness backend needs it: the timeout and retry
//! semantics of the `x-envoy-*` request headers the route filter sets
//! (SPEC.md §timeouts and retries 5–7; Envoy `source/common/router/router.cc`
//! `FilterUtility::finalTimeout`, `onPerTryTimeoutCommon`,
//! `onUpstreamTimeoutAbort`; `retry_state_impl.cc` `wouldRetryFromHeaders`,
//! `wouldRetryFromReset`), over simulated time: an attempt reports how long
//! the upstream took, nothing sleeps.
//!
//! Modelled:
//! - attempts = 1 + `x-envoy-max-retries` when `x-envoy-retry-on` or
//!   `x-envoy-retry-grpc-on` is present (default 1 retry without a count);
//!   neither present ⇒ no retry state, one attempt (envoy.yaml's routes have
//!   no retry policy);
//! - a response is retried when it matches `5xx` (any 5xx), `gateway-error`
//!   (502/503/504), `retriable-4xx` (409), `retriable-status-codes` with the
//!   codes of `x-envoy-retriable-status-codes`, or a gRPC condition on its
//!   `grpc-status`; retries exhausted ⇒ the last upstream response as is;
//! - per-try timeout (`x-envoy-upstream-rq-per-try-timeout-ms`, ignored when
//!   ≥ the global timeout): the attempt is reset, which is retried under
//!   `reset`, `5xx` or `gateway-error`; not retried ⇒ 504;
//! - global timeout (`x-envoy-upstream-rq-timeout-ms`, all attempts; `0` =
//!   none; absent ⇒ Envoy's route default 15 s, as envoy.yaml sets none):
//!   504 `upstream request timeout`, never retried.
//!
//! Not modelled: retry back-off (full jitter, 25 ms base: it only adds up to
//! 24 + 74 + 174 ms over three retries, which scenario bounds absorb),
//! connection failures and resets (the emulated upstreams are always up),
//! `x-envoy-upstream-rq-timeout-alt-response`, hedging.

use crate::host::{UpstreamRequest, UpstreamResponse};

/// Envoy's route timeout when the route sets none (envoy.yaml's do not).
pub const ROUTE_DEFAULT_TIMEOUT_MS: u64 = 15_000;
/// Body of Envoy's timeout reply (`onUpstreamTimeoutAbort`).
pub const TIMEOUT_BODY: &str = "upstream request timeout";

/// Request headers the router consumes (removes before forwarding):
/// `createRetryState` and `finalTimeout`.
pub const CONSUMED_HEADERS: &[&str] = &[
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-ms",
];

/// The timeout and retry policy of one request, from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterPolicy {
    /// Global timeout over all attempts; `None` = disabled.
    pub timeout_ms: Option<u64>,
    /// Timeout of one attempt, if any.
    pub per_try_timeout_ms: Option<u64>,
    /// Retries after the first attempt.
    pub retries: u32,
    retry_on: Vec<String>,
    retriable_codes: Vec<u16>,
}

impl RouterPolicy {
    /// The policy Envoy's router derives from the request headers on a
    /// route without timeout or retry policy of its own.
    pub fn from_request(req: &UpstreamRequest) -> RouterPolicy {
        let number = |name: &str| req.header(name).and_then(|v| v.trim().parse::<u64>().ok());
        let list = |name: &str| -> Vec<String> {
            req.header(name)
                .map(|v| {
                    v.split(',')
                        .map(|t| t.trim().to_owned())
                        .filter(|t| !t.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let timeout_ms = match number("x-envoy-upstream-rq-timeout-ms") {
            Some(0) => None,
            Some(ms) => Some(ms),
            None => Some(ROUTE_DEFAULT_TIMEOUT_MS),
        };
        let per_try_timeout_ms = number("x-envoy-upstream-rq-per-try-timeout-ms")
            .filter(|&p| p > 0 && timeout_ms.is_none_or(|g| p < g));
        let mut retry_on = list("x-envoy-retry-on");
        retry_on.extend(list("x-envoy-retry-grpc-on"));
        let retries = if retry_on.is_empty() {
            0
        } else {
            number("x-envoy-max-retries")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1)
        };
        let retriable_codes = list("x-envoy-retriable-status-codes")
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        RouterPolicy {
            timeout_ms,
            per_try_timeout_ms,
            retries,
            retry_on,
            retriable_codes,
        }
    }

    fn on(&self, token: &str) -> bool {
        self.retry_on.iter().any(|t| t == token)
    }

    /// `wouldRetryFromHeaders`.
    fn retries_response(&self, resp: &UpstreamResponse) -> bool {
        let s = resp.status;
        let grpc = resp
            .headers
            .iter()
            .find(|(k, _)| k == "grpc-status")
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<u32>().ok());
        let grpc_retried = grpc.is_some_and(|g| {
            (g == 1 && self.on("cancelled"))
                || (g == 4 && self.on("deadline-exceeded"))
                || (g == 8 && self.on("resource-exhausted"))
                || (g == 13 && self.on("internal"))
                || (g == 14 && self.on("unavailable"))
        });
        (self.on("5xx") && (500..600).contains(&s))
            || (self.on("gateway-error") && (502..=504).contains(&s))
            || (self.on("retriable-4xx") && s == 409)
            || (self.on("retriable-status-codes")
                && self.retriable_codes.iter().any(|&c| u32::from(c) == s))
            || grpc_retried
    }

    /// `wouldRetryFromReset` for the local reset of a per-try timeout.
    fn retries_per_try_timeout(&self) -> bool {
        self.on("reset") || self.on("5xx") || self.on("gateway-error")
    }
}

/// What the router answered, and after how long (simulated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The response the client gets.
    pub response: UpstreamResponse,
    /// Simulated milliseconds from the first attempt to the answer.
    pub elapsed_ms: u64,
    /// Attempts sent to the upstream.
    pub attempts: u32,
}

/// Runs the attempts of one request. `attempt` sends one to the upstream
/// and returns how long it takes to answer (ms) and the answer.
pub fn forward(
    policy: &RouterPolicy,
    mut attempt: impl FnMut() -> (u64, UpstreamResponse),
) -> Forwarded {
    let max_attempts = policy.retries.saturating_add(1);
    let mut now = 0u64;
    let mut n = 0u32;
    loop {
        n += 1;
        let (delay, response) = attempt();
        let done_at = now.saturating_add(delay);
        let try_deadline = policy.per_try_timeout_ms.map(|p| now.saturating_add(p));
        let retries_left = n < max_attempts;
        // The global timer fires first (or together: back-off, unmodelled,
        // would only delay the per-try timer).
        if let Some(g) = policy.timeout_ms
            && g <= done_at
            && try_deadline.is_none_or(|t| g <= t)
        {
            return timeout(g, n);
        }
        if let Some(t) = try_deadline
            && t <= done_at
        {
            now = t;
            if retries_left && policy.retries_per_try_timeout() {
                continue;
            }
            return timeout(now, n);
        }
        now = done_at;
        if retries_left && policy.retries_response(&response) {
            continue;
        }
        return Forwarded {
            response,
            elapsed_ms: now,
            attempts: n,
        };
    }
}

/// Envoy's 504 local reply of a global or per-try timeout.
fn timeout(at: u64, attempts: u32) -> Forwarded {
    Forwarded {
        response: UpstreamResponse::new(504)
            .header("content-type", "text/plain")
            .body(TIMEOUT_BODY),
        elapsed_ms: at,
        attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> UpstreamRequest {
        UpstreamRequest {
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
            ..UpstreamRequest::default()
        }
    }

    /// The headers the route filter writes for SPEC.md §timeouts and
    /// retries 9 shortened: timeout 600 ms, 3 retries, per-try 200 ms.
    fn short_policy() -> RouterPolicy {
        RouterPolicy::from_request(&request(&[
            ("x-envoy-upstream-rq-timeout-ms", "600"),
            ("x-envoy-max-retries", "3"),
            (
                "x-envoy-retry-on",
                "5xx,reset,connect-failure,refused-stream",
            ),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "200"),
        ]))
    }

    /// An upstream answering `statuses` in turn, each after `delay` ms.
    fn upstream(delay: u64, statuses: &[u32]) -> impl FnMut() -> (u64, UpstreamResponse) {
        let mut left = statuses.iter().copied();
        move || (delay, UpstreamResponse::new(left.next().unwrap_or(200)))
    }

    #[test]
    fn without_router_headers_there_is_one_attempt_and_the_15_s_default() {
        let p = RouterPolicy::from_request(&request(&[]));
        assert_eq!(p.timeout_ms, Some(15_000));
        let out = forward(&p, upstream(5, &[503]));
        assert_eq!((out.response.status, out.attempts), (503, 1));
    }

    #[test]
    fn max_retries_without_retry_on_retries_nothing() {
        let p = RouterPolicy::from_request(&request(&[("x-envoy-max-retries", "5")]));
        assert_eq!(p.retries, 0);
    }

    #[test]
    fn retry_on_without_a_count_retries_once() {
        let p = RouterPolicy::from_request(&request(&[("x-envoy-retry-on", "5xx")]));
        let out = forward(&p, upstream(0, &[503, 503, 503]));
        assert_eq!((out.response.status, out.attempts), (503, 2));
    }

    #[test]
    fn two_503s_then_200_take_three_attempts() {
        let out = forward(&short_policy(), upstream(1, &[503, 503]));
        assert_eq!((out.response.status, out.attempts), (200, 3));
    }

    #[test]
    fn exhausted_retries_return_the_last_upstream_response() {
        let out = forward(&short_policy(), upstream(1, &[503, 503, 503, 502, 500]));
        assert_eq!((out.response.status, out.attempts), (502, 4));
    }

    #[test]
    fn a_slow_upstream_is_cut_by_the_global_timeout_after_three_tries() {
        let out = forward(&short_policy(), upstream(1000, &[]));
        assert_eq!(out.response.status, 504);
        assert_eq!(out.response.body, TIMEOUT_BODY.as_bytes());
        assert_eq!((out.elapsed_ms, out.attempts), (600, 3));
    }

    #[test]
    fn a_per_try_timeout_without_a_reset_condition_is_not_retried() {
        let p = RouterPolicy::from_request(&request(&[
            ("x-envoy-upstream-rq-timeout-ms", "0"),
            ("x-envoy-max-retries", "2"),
            ("x-envoy-retry-on", "retriable-status-codes"),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "100"),
        ]));
        let out = forward(&p, upstream(300, &[]));
        assert_eq!(
            (out.response.status, out.elapsed_ms, out.attempts),
            (504, 100, 1)
        );
    }

    #[test]
    fn a_per_try_timeout_not_below_the_global_one_is_ignored() {
        let p = RouterPolicy::from_request(&request(&[
            ("x-envoy-upstream-rq-timeout-ms", "100"),
            ("x-envoy-upstream-rq-per-try-timeout-ms", "100"),
        ]));
        assert_eq!(p.per_try_timeout_ms, None);
    }

    #[test]
    fn retriable_status_codes_retry_only_the_listed_codes() {
        let p = RouterPolicy::from_request(&request(&[
            ("x-envoy-max-retries", "2"),
            ("x-envoy-retry-on", "retriable-status-codes"),
            ("x-envoy-retriable-status-codes", "503"),
        ]));
        assert_eq!(forward(&p, upstream(0, &[503, 503])).attempts, 3);
        assert_eq!(forward(&p, upstream(0, &[500])).attempts, 1);
    }

    #[test]
    fn istio_default_retry_on_does_not_retry_a_503() {
        let p = RouterPolicy::from_request(&request(&[
            ("x-envoy-max-retries", "2"),
            (
                "x-envoy-retry-on",
                "connect-failure,refused-stream,retriable-status-codes",
            ),
            ("x-envoy-retry-grpc-on", "unavailable,cancelled"),
        ]));
        let out = forward(&p, upstream(0, &[503]));
        assert_eq!((out.response.status, out.attempts), (503, 1));
        let unavailable = || (0, UpstreamResponse::new(200).header("grpc-status", "14"));
        assert_eq!(forward(&p, unavailable).attempts, 3);
    }
}
