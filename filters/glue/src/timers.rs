//! Paused streams waiting for a timer, kept by the root context of one VM
//! and woken from its `on_tick` (SPEC.md §proxy-wasm ABI E.2–E.3). The tick
//! is armed for the earliest deadline only — Envoy restarts the tick timer
//! whenever the period is set (`Wasm::setTimerPeriod`) — and stopped when
//! nothing waits, so an idle filter never ticks.

use std::collections::BTreeMap;

/// Deadlines of the paused streams of one VM.
pub struct Timers<T> {
    /// `(deadline ms, context id)` → what to wake.
    entries: BTreeMap<(u64, u32), T>,
    /// The deadline the tick is armed for.
    armed: Option<u64>,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            armed: None,
        }
    }
}

/// What the tick must become after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    /// Leave it as it is.
    Keep,
    /// Tick this many milliseconds from now (≥ 1).
    In(u32),
    /// Stop ticking.
    Stop,
}

impl<T> Timers<T> {
    /// Adds a stream waking at `deadline`.
    pub fn add(&mut self, deadline: u64, context_id: u32, item: T) {
        self.entries.insert((deadline, context_id), item);
    }

    /// Forgets the stream `context_id` (it ended or was reset).
    pub fn remove(&mut self, context_id: u32) -> Option<T> {
        let key = *self.entries.keys().find(|(_, c)| *c == context_id)?;
        self.entries.remove(&key)
    }

    /// Takes the earliest stream due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u32, T)> {
        let (&(deadline, _), _) = self.entries.first_key_value()?;
        if deadline > now {
            return None;
        }
        self.entries.pop_first().map(|((_, c), item)| (c, item))
    }

    /// The tick needed at `now`: armed for the earliest deadline — or
    /// `poll`, when something must be looked at sooner — unless it already
    /// is (`force` re-arms anyway, as after a tick).
    pub fn arm(&mut self, now: u64, force: bool, poll: Option<u64>) -> Arm {
        let first = self.entries.first_key_value().map(|(&(d, _), _)| d);
        let next = match (first, poll) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match next {
            None if self.armed.take().is_some() || force => Arm::Stop,
            None => Arm::Keep,
            Some(d) if !force && self.armed == Some(d) => Arm::Keep,
            Some(d) => {
                self.armed = Some(d);
                let ms = d.saturating_sub(now).clamp(1, u64::from(u32::MAX));
                Arm::In(u32::try_from(ms).unwrap_or(u32::MAX))
            }
        }
    }
}
