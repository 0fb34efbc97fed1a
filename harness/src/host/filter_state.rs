//! The foreign function `set_envoy_filter_state` (SPEC §H; envoy
//! `source/extensions/common/wasm/foreign.cc`, `context.cc`
//! `setEnvoyFilterState`): the argument is a serialized
//! `SetEnvoyFilterStateArguments {1 path, 2 value, 3 span}`; `path` must name a
//! registered filter-state object factory, which builds the object from `value`.
//!
//! In Envoy's order: arguments that do not parse → `BadArgument`; an unknown
//! factory → `NotFound`; a value the factory refuses → `BadArgument`; no stream
//! or connection (a root context) → `NotFound`. The object is stored under
//! `path` in the stream's (or connection's) filter state, where
//! `get_property(["filter_state", path])` reads it back and, for
//! `envoy.tcp_proxy.cluster` set before `tcp_proxy` connects, it picks the
//! upstream cluster (`tcp.rs`).
//!
//! Factories modelled (Envoy 1.40 registers more): the string objects
//! `envoy.tcp_proxy.cluster`, `envoy.network.upstream_server_name`,
//! `envoy.network.application_protocols`,
//! `envoy.network.upstream_subject_alt_names`, `envoy.upstream.dynamic_host`,
//! `envoy.string`, `envoy.hashable_string`, and `envoy.upstream.dynamic_port`
//! (a `uint32`).

use super::abi::Status;
use super::context::VmData;
use super::grpc_call::fields;

const STRING_OBJECTS: &[&str] = &[
    "envoy.tcp_proxy.cluster",
    "envoy.network.upstream_server_name",
    "envoy.network.application_protocols",
    "envoy.network.upstream_subject_alt_names",
    "envoy.upstream.dynamic_host",
    "envoy.string",
    "envoy.hashable_string",
];
const UINT32_OBJECTS: &[&str] = &["envoy.upstream.dynamic_port"];

/// `(path, value)` of serialized `SetEnvoyFilterStateArguments`.
fn parse(args: &[u8]) -> Option<(String, String)> {
    let (mut path, mut value) = (String::new(), String::new());
    for (field, bytes) in fields(args)? {
        match (field, bytes) {
            (1, Some(b)) => path = String::from_utf8(b.to_vec()).ok()?,
            (2, Some(b)) => value = String::from_utf8(b.to_vec()).ok()?,
            (1 | 2, None) | (3, Some(_)) => return None,
            _ => {}
        }
    }
    Some((path, value))
}

/// The foreign function, run in the context whose callback called it; the
/// status code to return (its result is empty).
pub(crate) fn set_envoy_filter_state(data: &VmData, args: &[u8]) -> u32 {
    let Some((path, value)) = parse(args) else {
        return Status::BadArgument.code();
    };
    let valid = if STRING_OBJECTS.contains(&path.as_str()) {
        true
    } else if UINT32_OBJECTS.contains(&path.as_str()) {
        value.parse::<u32>().is_ok()
    } else {
        return Status::NotFound.code();
    };
    if !valid {
        return Status::BadArgument.code();
    }
    let Some(state) = data.current_state() else {
        return Status::NotFound.code();
    };
    state
        .borrow_mut()
        .filter_state
        .insert(path, value.into_bytes());
    Status::Ok.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse_path_and_value_and_refuse_wrong_wire_types() {
        let mut args = vec![0x0a, 3];
        args.extend_from_slice(b"a.b");
        args.extend_from_slice(&[0x12, 1, b'x', 0x18, 1]);
        assert_eq!(parse(&args), Some(("a.b".to_owned(), "x".to_owned())));
        assert_eq!(parse(&[0x08, 1]), None);
        assert_eq!(parse(b""), Some((String::new(), String::new())));
    }
}
