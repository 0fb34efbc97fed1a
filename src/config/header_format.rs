//! Envoy's header-value syntax, as Istio validates it
//! (pkg/config/validation/header_value_validator.go `validateHeaderValue`,
//! a port of Envoy's `HeaderParser`): literal text, `%%` for a literal `%`,
//! and command operators `%NAME%` or `%NAME(args)%`, where `args` is plain
//! text up to `)` or a JSON array of strings — and the operators a filter
//! can evaluate from the request and its connection ([`Formatted`]):
//! Envoy's substitution formatter, as far as proxy-wasm properties reach.

use crate::http::RequestView;

/// One piece of a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text sent as is (`%%` already turned into `%`).
    Literal(String),
    /// A command operator: its name and, for `%NAME(args)%`, the raw text
    /// between the parentheses.
    Operator {
        /// `HOSTNAME`, `REQ`, …
        name: String,
        /// `x-foo` of `%REQ(x-foo)%`; `None` without parentheses.
        args: Option<String>,
    },
}

/// A parsed header value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderFormat {
    /// The pieces, in order.
    pub segments: Vec<Segment>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Literal,
    Name,
    ExpectArray,
    ExpectString,
    String,
    ExpectDelimiterOrEnd,
    ExpectArgsEnd,
    ExpectVariableEnd,
}

impl HeaderFormat {
    /// Parses `value`; the error says what Envoy would refuse.
    pub fn parse(value: &str) -> Result<HeaderFormat, String> {
        let mut out = HeaderFormat::default();
        let mut literal = String::new();
        let mut name = String::new();
        let mut args = String::new();
        let mut has_args = false;
        let mut state = State::Literal;
        let mut chars = value.chars().peekable();
        while let Some(ch) = chars.next() {
            let space = ch == ' ';
            match state {
                State::Literal => match (ch, chars.peek()) {
                    ('%', None) => return Err("invalid header configuration. Un-escaped %".into()),
                    ('%', Some('%')) => {
                        chars.next();
                        literal.push('%');
                    }
                    ('%', Some(_)) => {
                        if !literal.is_empty() {
                            out.segments
                                .push(Segment::Literal(std::mem::take(&mut literal)));
                        }
                        state = State::Name;
                    }
                    _ => literal.push(ch),
                },
                State::Name => match ch {
                    '%' => {
                        out.segments.push(Segment::Operator {
                            name: std::mem::take(&mut name),
                            args: None,
                        });
                        state = State::Literal;
                    }
                    '(' => {
                        has_args = true;
                        state = State::ExpectArray;
                    }
                    _ => name.push(ch),
                },
                State::ExpectArray => {
                    if ch == '[' {
                        args.push(ch);
                        state = State::ExpectString;
                    } else if !space {
                        // Even `)`: Istio (and Envoy's parser) take the first
                        // character as the start of a plain argument.
                        args.push(ch);
                        state = State::String;
                    }
                }
                State::ExpectDelimiterOrEnd => match ch {
                    ',' => {
                        args.push(ch);
                        state = State::ExpectString;
                    }
                    ']' => {
                        args.push(ch);
                        state = State::ExpectArgsEnd;
                    }
                    _ if space => {}
                    _ => {
                        return Err(
                            "invalid header configuration. Expecting ',', ']', or whitespace"
                                .into(),
                        );
                    }
                },
                State::ExpectString => match ch {
                    '"' => {
                        args.push(ch);
                        state = State::String;
                    }
                    _ if space => {}
                    _ => return Err("invalid header configuration. Expecting '\"'".into()),
                },
                State::String => match ch {
                    '\\' => {
                        let Some(next) = chars.next() else {
                            return Err("invalid header configuration. Un-terminated backslash \
                                        in JSON string"
                                .into());
                        };
                        args.push(ch);
                        args.push(next);
                    }
                    ')' => state = State::ExpectVariableEnd,
                    '"' => {
                        args.push(ch);
                        state = State::ExpectDelimiterOrEnd;
                    }
                    _ => args.push(ch),
                },
                State::ExpectArgsEnd => match ch {
                    ')' => state = State::ExpectVariableEnd,
                    _ if space => {}
                    _ => {
                        return Err(
                            "invalid header configuration. Expecting ')' or whitespace".into()
                        );
                    }
                },
                State::ExpectVariableEnd => match ch {
                    '%' => {
                        out.segments.push(Segment::Operator {
                            name: std::mem::take(&mut name),
                            args: has_args.then(|| std::mem::take(&mut args)),
                        });
                        has_args = false;
                        state = State::Literal;
                    }
                    _ if space => {}
                    _ => {
                        return Err(
                            "invalid header configuration. Expecting '%' or whitespace after ')'"
                                .into(),
                        );
                    }
                },
            }
        }
        if state != State::Literal {
            return Err(format!(
                "invalid header configuration. Un-terminated variable expression {value:?}"
            ));
        }
        if !literal.is_empty() {
            out.segments.push(Segment::Literal(literal));
        }
        Ok(out)
    }

    /// The value when it has no operator (`%%` already unescaped).
    pub fn as_literal(&self) -> Option<String> {
        let mut s = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => s.push_str(l),
                Segment::Operator { .. } => return None,
            }
        }
        Some(s)
    }
}

/// A header value ready to send: literal, or pieces evaluated per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formatted {
    /// No operator (`%%` already unescaped), or only ones known at
    /// configure time.
    Literal(String),
    /// Pieces, some evaluated per request.
    Dynamic(Vec<Piece>),
}

/// One piece of a [`Formatted::Dynamic`] value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text as is.
    Text(String),
    /// `%REQ(a?b)%`: the first present of the request headers (lower-case),
    /// a repeated header's values joined with `,`.
    Header(Vec<String>),
    /// A proxy-wasm property, dotted, as text.
    Property(&'static str),
    /// A port property (an 8-byte little-endian integer), in decimal.
    Port(&'static str),
    /// An `address:port` property without its port (and IPv6 brackets).
    AddressWithoutPort(&'static str),
}

/// `%HOSTNAME%` without `envoy.hostname`: the node metadata `NAME` Istio
/// gives every proxy (the pod's name, which is its hostname).
const NODE_NAME: &str = "node.metadata.NAME";

/// The operators a filter evaluates from proxy-wasm properties (Envoy's
/// attribute names, SPEC.md §proxy-wasm ABI D).
const PROPERTIES: &[(&str, Piece)] = &[
    (
        "DOWNSTREAM_REMOTE_ADDRESS",
        Piece::Property("source.address"),
    ),
    (
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
        Piece::AddressWithoutPort("source.address"),
    ),
    ("DOWNSTREAM_REMOTE_PORT", Piece::Port("source.port")),
    (
        "DOWNSTREAM_LOCAL_ADDRESS",
        Piece::Property("destination.address"),
    ),
    (
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
        Piece::AddressWithoutPort("destination.address"),
    ),
    ("DOWNSTREAM_LOCAL_PORT", Piece::Port("destination.port")),
    ("PROTOCOL", Piece::Property("request.protocol")),
    (
        "REQUESTED_SERVER_NAME",
        Piece::Property("connection.requested_server_name"),
    ),
    (
        "DOWNSTREAM_TLS_VERSION",
        Piece::Property("connection.tls_version"),
    ),
    (
        "DOWNSTREAM_PEER_URI_SAN",
        Piece::Property("connection.uri_san_peer_certificate"),
    ),
    (
        "DOWNSTREAM_LOCAL_URI_SAN",
        Piece::Property("connection.uri_san_local_certificate"),
    ),
    (
        "DOWNSTREAM_PEER_SUBJECT",
        Piece::Property("connection.subject_peer_certificate"),
    ),
    (
        "DOWNSTREAM_LOCAL_SUBJECT",
        Piece::Property("connection.subject_local_certificate"),
    ),
    (
        "DOWNSTREAM_PEER_FINGERPRINT_256",
        Piece::Property("connection.sha256_peer_certificate_digest"),
    ),
];

impl Formatted {
    /// Compiles `value`: `%%`, `%REQ(h)%` / `%REQ(h?alt)%`, `%HOSTNAME%`
    /// (`hostname`, else Istio's node name), the downstream address, port,
    /// protocol, SNI and certificate operators. Any other operator is an
    /// error naming it (Envoy would evaluate it; a filter cannot).
    pub fn compile(value: &str, hostname: Option<&str>) -> Result<Formatted, String> {
        let format = HeaderFormat::parse(value)?;
        let mut pieces: Vec<Piece> = Vec::new();
        for seg in format.segments {
            let piece = match seg {
                Segment::Literal(text) => Piece::Text(text),
                Segment::Operator { name, args } => operator(&name, args.as_deref(), hostname)?,
            };
            match (pieces.last_mut(), piece) {
                (Some(Piece::Text(prev)), Piece::Text(more)) => prev.push_str(&more),
                (_, piece) => pieces.push(piece),
            }
        }
        Ok(match pieces.as_slice() {
            [] => Formatted::Literal(String::new()),
            [Piece::Text(t)] => Formatted::Literal(t.clone()),
            _ => Formatted::Dynamic(pieces),
        })
    }

    /// The value for `req`.
    pub fn expand(&self, req: &(impl RequestView + ?Sized)) -> String {
        let pieces = match self {
            Formatted::Literal(t) => return t.clone(),
            Formatted::Dynamic(p) => p,
        };
        let mut out = String::new();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        for p in pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Header(names) => {
                    if let Some(v) = names.iter().find_map(|n| req.header(n)) {
                        out.push_str(&text(&v));
                    }
                }
                Piece::Property(path) => {
                    if let Some(v) = req.property(path) {
                        out.push_str(&text(&v));
                    }
                }
                Piece::Port(path) => {
                    let port = req.property(path).and_then(|v| {
                        let raw: [u8; 8] = v.as_ref().try_into().ok()?;
                        Some(i64::from_le_bytes(raw))
                    });
                    if let Some(port) = port {
                        out.push_str(&port.to_string());
                    }
                }
                Piece::AddressWithoutPort(path) => {
                    if let Some(v) = req.property(path) {
                        let addr = text(&v);
                        let host = match addr.rsplit_once(':') {
                            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
                            _ => addr.as_str(),
                        };
                        out.push_str(host.trim_start_matches('[').trim_end_matches(']'));
                    }
                }
            }
        }
        out
    }
}

fn operator(name: &str, args: Option<&str>, hostname: Option<&str>) -> Result<Piece, String> {
    let no_args = |piece: Piece| match args {
        None => Ok(piece),
        Some(_) => Err(format!("%{name}% takes no arguments")),
    };
    match name {
        "REQ" => {
            let names: Vec<String> = args
                .unwrap_or_default()
                .split('?')
                .map(|n| n.trim().to_ascii_lowercase())
                .collect();
            if names.iter().any(String::is_empty) || names.len() > 2 {
                return Err("%REQ(header)% or %REQ(header?alternative)% needs header names".into());
            }
            Ok(Piece::Header(names))
        }
        "HOSTNAME" => no_args(match hostname {
            Some(h) => Piece::Text(h.to_owned()),
            None => Piece::Property(NODE_NAME),
        }),
        _ => match PROPERTIES.iter().find(|(n, _)| *n == name) {
            Some((_, piece)) => no_args(piece.clone()),
            None => Err(format!(
                "%{name}% is not supported by meshwasm: a filter cannot evaluate it (supported: \
                 %%, %REQ(h)%, %HOSTNAME%, %PROTOCOL%, %REQUESTED_SERVER_NAME%, and the \
                 DOWNSTREAM_ address, port, TLS version, SAN, subject and fingerprint operators)"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, args: Option<&str>) -> Segment {
        Segment::Operator {
            name: name.into(),
            args: args.map(Into::into),
        }
    }

    #[test]
    fn istios_valid_values_parse() {
        // validation_test.go TestValidateHTTPHeaderValue's valid column.
        for v in [
            "",
            "foo",
            "%HOSTNAME%",
            "100%%",
            "prefix %HOSTNAME% suffix",
            "%DOWNSTREAM_PEER_CERT_V_END(%b %e %H:%M:%S %Y %Z)%",
            "%UPSTREAM_METADATA([\"a\", \"b\"])%",
        ] {
            assert!(HeaderFormat::parse(v).is_ok(), "{v:?}");
        }
    }

    #[test]
    fn a_lone_percent_is_refused() {
        for v in [
            "abc%123",
            "%START_TIME%%",
            "%",
            "50%",
            "%REQ(x",
            "%REQ(x)",
            "%A([1])%",
            "%REQ()%",
        ] {
            assert!(HeaderFormat::parse(v).is_err(), "{v:?}");
        }
    }

    #[test]
    fn segments_keep_literals_operators_and_arguments() {
        let f = HeaderFormat::parse("a %REQ(x-foo)% b %HOSTNAME%%%").unwrap();
        assert_eq!(
            f.segments,
            vec![
                Segment::Literal("a ".into()),
                op("REQ", Some("x-foo")),
                Segment::Literal(" b ".into()),
                op("HOSTNAME", None),
                Segment::Literal("%".into()),
            ]
        );
        assert_eq!(
            HeaderFormat::parse("100%%")
                .unwrap()
                .as_literal()
                .as_deref(),
            Some("100%")
        );
        assert_eq!(f.as_literal(), None);
    }

    #[test]
    fn operators_expand_from_headers_and_properties() {
        use crate::http::HeaderList;
        let mut req = HeaderList::request("GET", "a", "/").with("x-user", "bob");
        req.properties = vec![
            ("source.address".into(), b"10.0.0.7:4711".to_vec()),
            ("source.port".into(), 4711i64.to_le_bytes().to_vec()),
            ("node.metadata.NAME".into(), b"pod-1".to_vec()),
            ("destination.address".into(), b"[::1]:80".to_vec()),
        ];
        let f = |v: &str| Formatted::compile(v, None).unwrap().expand(&req);
        assert_eq!(f("u=%REQ(X-User)% 100%%"), "u=bob 100%");
        assert_eq!(f("%REQ(x-none?x-user)%"), "bob");
        assert_eq!(f("%REQ(x-none)%"), "");
        assert_eq!(f("%DOWNSTREAM_REMOTE_ADDRESS%"), "10.0.0.7:4711");
        assert_eq!(f("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"), "10.0.0.7");
        assert_eq!(f("%DOWNSTREAM_REMOTE_PORT%"), "4711");
        assert_eq!(f("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%"), "::1");
        assert_eq!(f("%HOSTNAME%"), "pod-1", "Istio's node name");
        assert_eq!(
            Formatted::compile("on %HOSTNAME%", Some("h1")).unwrap(),
            Formatted::Literal("on h1".into()),
            "a known hostname is resolved at configure time"
        );
        assert_eq!(
            Formatted::compile("100%%", None).unwrap(),
            Formatted::Literal("100%".into())
        );
    }

    #[test]
    fn operators_a_filter_cannot_evaluate_are_refused_by_name() {
        for v in [
            "%START_TIME%",
            "%UPSTREAM_HOST%",
            "%DYNAMIC_METADATA(a:b)%",
            "%HOSTNAME(x)%",
            "%REQ()%x%",
        ] {
            assert!(Formatted::compile(v, None).is_err(), "{v}");
        }
        let e = Formatted::compile("%DOWNSTREAM_PEER_CERT_V_END(%b)%", None).unwrap_err();
        assert!(
            e.contains("%DOWNSTREAM_PEER_CERT_V_END% is not supported by meshwasm"),
            "{e}"
        );
    }
}
