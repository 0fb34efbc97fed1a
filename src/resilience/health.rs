//! The health of one subset, as every VM of the proxy shares it (a value
//! in shared data, changed by compare-and-swap): consecutive failures,
//! ejection with a growing ejection time, and readmission through a
//! bounded number of probe requests — Envoy's outlier detection per subset
//! (SPEC.md §DestinationRule 6–7) with the seed breaker's half-open step
//! (§seed behaviours, resilient client 1–3). Pure data and transitions on
//! an explicit clock, so the rules are tested without a host.

use super::Outlier;

/// Where a subset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Takes its share of the traffic.
    #[default]
    Healthy,
    /// Ejected until `until_ms`: its share goes to the route's other subsets.
    Ejected {
        /// When the ejection time is over (ms since the epoch).
        until_ms: u64,
    },
    /// The ejection time is over: at most [`super::PROBES`] requests are
    /// let through as probes; that many successes readmit the subset, one
    /// failure ejects it again, for longer.
    Probing {
        /// Probes let through so far.
        admitted: u32,
        /// Probes that succeeded.
        succeeded: u32,
    },
}

/// One subset's shared health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    /// Where the subset is.
    pub phase: Phase,
    /// Consecutive 5xx responses (gateway errors included).
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors (502, 503, 504).
    pub consecutive_gateway: u32,
    /// How many times the subset was ejected (the ejection time grows with
    /// it; it decays by one per `interval` spent healthy).
    pub ejections: u32,
    /// When the phase last changed (ms since the epoch).
    pub since_ms: u64,
}

/// What a response means for the subset that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not a server error.
    Success,
    /// A 5xx other than a gateway error.
    ServerError,
    /// 502, 503 or 504 (counted as 5xx too).
    GatewayError,
}

impl Outcome {
    /// The outcome of a response status.
    pub fn of(status: u16) -> Outcome {
        match status {
            502..=504 => Outcome::GatewayError,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Success,
        }
    }
}

/// Whether a request may go to the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Healthy: a normal request.
    Go,
    /// A probe of a subset whose ejection time is over.
    Probe,
    /// Ejected, or every probe is already out.
    Refuse,
}

/// What a recorded outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Nothing visible.
    None,
    /// The subset was ejected (from healthy).
    Ejected,
    /// A failing probe ejected the subset again.
    Reejected,
    /// Enough probes succeeded: the subset is healthy again.
    Readmitted,
}

/// Bytes of the encoded form.
const ENCODED: usize = 38;
/// Version of the encoding: a value of another version reads as healthy.
const VERSION: u8 = 1;

impl Health {
    /// Whether the subset takes normal traffic (no write needed to tell).
    pub fn is_healthy(&self) -> bool {
        self.phase == Phase::Healthy
    }

    /// Whether a request may go there now, and the new state if it changes
    /// (an ejection time that is over starts probing).
    pub fn admit(&self, now_ms: u64, probes: u32) -> (Admission, Option<Health>) {
        match self.phase {
            Phase::Healthy => (Admission::Go, None),
            Phase::Ejected { until_ms } if now_ms < until_ms => (Admission::Refuse, None),
            Phase::Ejected { .. } => {
                let next = Health {
                    phase: Phase::Probing {
                        admitted: 1,
                        succeeded: 0,
                    },
                    since_ms: now_ms,
                    ..*self
                };
                (Admission::Probe, Some(next))
            }
            Phase::Probing {
                admitted,
                succeeded,
            } if admitted < probes => {
                let next = Health {
                    phase: Phase::Probing {
                        admitted: admitted + 1,
                        succeeded,
                    },
                    ..*self
                };
                (Admission::Probe, Some(next))
            }
            Phase::Probing { .. } => (Admission::Refuse, None),
        }
    }

    /// A probe ended without a response (a client reset): its place is
    /// given back so probing cannot stall.
    pub fn probe_abandoned(&self) -> Option<Health> {
        match self.phase {
            Phase::Probing {
                admitted,
                succeeded,
            } if admitted > succeeded => Some(Health {
                phase: Phase::Probing {
                    admitted: admitted - 1,
                    succeeded,
                },
                ..*self
            }),
            _ => None,
        }
    }

    /// Records the outcome of a request that went to the subset (`probe`
    /// when it was let through as one). `may_eject` is false when
    /// `maxEjectionPercent` forbids another ejection of the host's subsets.
    /// Returns the new state (`None`: unchanged, no write) and the event.
    pub fn record(
        &self,
        outcome: Outcome,
        probe: bool,
        now_ms: u64,
        policy: &Outlier,
        may_eject: bool,
    ) -> (Option<Health>, Event) {
        match (self.phase, probe) {
            (Phase::Healthy, _) => self.record_healthy(outcome, now_ms, policy, may_eject),
            (
                Phase::Probing {
                    admitted,
                    succeeded,
                },
                true,
            ) => match outcome {
                Outcome::Success if succeeded + 1 >= super::PROBES => {
                    let next = Health {
                        phase: Phase::Healthy,
                        consecutive_5xx: 0,
                        consecutive_gateway: 0,
                        since_ms: now_ms,
                        ..*self
                    };
                    (Some(next), Event::Readmitted)
                }
                Outcome::Success => {
                    let next = Health {
                        phase: Phase::Probing {
                            admitted,
                            succeeded: succeeded + 1,
                        },
                        ..*self
                    };
                    (Some(next), Event::None)
                }
                Outcome::ServerError | Outcome::GatewayError => {
                    (Some(self.ejected(now_ms, policy)), Event::Reejected)
                }
            },
            // Answers to requests let through before the ejection, or
            // outside the probes, say nothing about the probation.
            _ => (None, Event::None),
        }
    }

    fn record_healthy(
        &self,
        outcome: Outcome,
        now_ms: u64,
        policy: &Outlier,
        may_eject: bool,
    ) -> (Option<Health>, Event) {
        let (c5xx, cgw) = match outcome {
            Outcome::Success if self.consecutive_5xx == 0 && self.consecutive_gateway == 0 => {
                return (None, Event::None);
            }
            Outcome::Success => (0, 0),
            Outcome::ServerError => (self.consecutive_5xx.saturating_add(1), 0),
            Outcome::GatewayError => (
                self.consecutive_5xx.saturating_add(1),
                self.consecutive_gateway.saturating_add(1),
            ),
        };
        let trips = (policy.consecutive_5xx > 0 && c5xx >= policy.consecutive_5xx)
            || (policy.consecutive_gateway > 0 && cgw >= policy.consecutive_gateway);
        if trips && may_eject {
            return (Some(self.ejected(now_ms, policy)), Event::Ejected);
        }
        let next = Health {
            consecutive_5xx: c5xx,
            consecutive_gateway: cgw,
            ..*self
        };
        (Some(next), Event::None)
    }

    /// Ejected now: the ejection count (less one per `interval` spent
    /// healthy since the last change) grows by one, and the ejection lasts
    /// `baseEjectionTime × count`, at most `max(300 s, baseEjectionTime)`
    /// (Envoy's `max_ejection_time`; SPEC.md §DestinationRule 7).
    fn ejected(&self, now_ms: u64, policy: &Outlier) -> Health {
        let decayed = match self.phase {
            Phase::Healthy if policy.interval_ms > 0 => {
                let healthy_for = now_ms.saturating_sub(self.since_ms);
                let intervals = u32::try_from(healthy_for / policy.interval_ms).unwrap_or(u32::MAX);
                self.ejections.saturating_sub(intervals)
            }
            _ => self.ejections,
        };
        let ejections = decayed.saturating_add(1);
        let cap = policy.base_ejection_ms.max(policy.max_ejection_ms);
        let time = policy
            .base_ejection_ms
            .saturating_mul(u64::from(ejections))
            .min(cap);
        Health {
            phase: Phase::Ejected {
                until_ms: now_ms.saturating_add(time),
            },
            consecutive_5xx: 0,
            consecutive_gateway: 0,
            ejections,
            since_ms: now_ms,
        }
    }

    /// The encoded form kept in shared data.
    pub fn encode(&self) -> [u8; ENCODED] {
        let (tag, until, admitted, succeeded) = match self.phase {
            Phase::Healthy => (0u8, 0u64, 0u32, 0u32),
            Phase::Ejected { until_ms } => (1, until_ms, 0, 0),
            Phase::Probing {
                admitted,
                succeeded,
            } => (2, 0, admitted, succeeded),
        };
        let mut out = [0u8; ENCODED];
        let parts: [&[u8]; 9] = [
            &[VERSION],
            &[tag],
            &self.consecutive_5xx.to_le_bytes(),
            &self.consecutive_gateway.to_le_bytes(),
            &self.ejections.to_le_bytes(),
            &self.since_ms.to_le_bytes(),
            &until.to_le_bytes(),
            &admitted.to_le_bytes(),
            &succeeded.to_le_bytes(),
        ];
        let mut at = 0;
        for part in parts {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
        out
    }

    /// Reads the encoded form; anything else (missing, another version,
    /// truncated) reads as healthy.
    pub fn decode(bytes: &[u8]) -> Health {
        Self::try_decode(bytes).unwrap_or_default()
    }

    fn try_decode(bytes: &[u8]) -> Option<Health> {
        if bytes.len() != ENCODED || bytes.first() != Some(&VERSION) {
            return None;
        }
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let phase = match bytes.get(1)? {
            0 => Phase::Healthy,
            1 => Phase::Ejected {
                until_ms: u64_at(22)?,
            },
            2 => Phase::Probing {
                admitted: u32_at(30)?,
                succeeded: u32_at(34)?,
            },
            _ => return None,
        };
        Some(Health {
            phase,
            consecutive_5xx: u32_at(2)?,
            consecutive_gateway: u32_at(6)?,
            ejections: u32_at(10)?,
            since_ms: u64_at(14)?,
        })
    }
}
