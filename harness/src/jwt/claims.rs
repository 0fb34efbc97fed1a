//! Claim sets relative to the OS clock (Envoy checks `exp`/`nbf` against
//! its own wall clock, with 60 s of skew: SPEC.md §RequestAuthentication
//! Behaviour 2).

use serde_json::{Map, Value};

/// Seconds since the Unix epoch, by the OS clock.
pub fn now() -> i64 {
    #[allow(clippy::disallowed_methods)]
    // reason: tokens are checked by a real Envoy against the OS clock
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(0)
}

/// A JWT claim set under construction; members keep insertion order.
///
/// [`Claims::new`] sets `iss`, `sub`, `iat` = now and `exp` = now + 1 h.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    members: Map<String, Value>,
}

impl Claims {
    /// `{"iss": iss, "sub": sub, "iat": now, "exp": now + 3600}`.
    pub fn new(iss: &str, sub: &str) -> Claims {
        Claims::empty()
            .claim("iss", iss)
            .claim("sub", sub)
            .claim("iat", now())
            .expires_in(3600)
    }

    /// No claims at all.
    pub fn empty() -> Claims {
        Claims {
            members: Map::new(),
        }
    }

    /// Sets claim `name` (any JSON: `true`, numbers, lists, objects).
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Claims {
        self.members.insert(name.to_owned(), value.into());
        self
    }

    /// Removes claim `name`.
    pub fn without(mut self, name: &str) -> Claims {
        self.members.shift_remove(name);
        self
    }

    /// Sets `iss`.
    pub fn issuer(self, iss: &str) -> Claims {
        self.claim("iss", iss)
    }

    /// Sets `sub`.
    pub fn subject(self, sub: &str) -> Claims {
        self.claim("sub", sub)
    }

    /// Sets `aud` to one string.
    pub fn audience(self, aud: &str) -> Claims {
        self.claim("aud", aud)
    }

    /// Sets `aud` to a list of strings.
    pub fn audiences(self, auds: &[&str]) -> Claims {
        self.claim("aud", auds.to_vec())
    }

    /// Sets `exp` = now + `secs` (negative: in the past).
    pub fn expires_in(self, secs: i64) -> Claims {
        self.claim("exp", now().saturating_add(secs))
    }

    /// Sets `exp` = now − `secs`: expired `secs` seconds ago (Envoy allows
    /// 60 s of skew, so `> 60` is expired for it).
    pub fn expired_by(self, secs: i64) -> Claims {
        self.expires_in(secs.saturating_neg())
    }

    /// Sets `nbf` = now + `secs` (and `exp` one hour after that): not yet
    /// valid for `secs` seconds.
    pub fn not_yet_valid_by(self, secs: i64) -> Claims {
        let nbf = now().saturating_add(secs);
        self.claim("nbf", nbf)
            .claim("exp", nbf.saturating_add(3600))
    }

    /// The claim set as a JSON object.
    pub fn to_value(&self) -> Value {
        Value::Object(self.members.clone())
    }
}

impl From<Claims> for Value {
    fn from(claims: Claims) -> Value {
        Value::Object(claims.members)
    }
}
