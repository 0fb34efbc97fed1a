//! `proxy_get_property` / `proxy_set_property` (SPEC §D).
//!
//! Lookup order as envoy `source/extensions/common/wasm/context.cc` `findValue`:
//! test overrides (per request, then per host), CEL attributes computed from the
//! live request, `plugin_name|plugin_root_id|plugin_vm_id|connection_id`, then
//! filter state `wasm.<first segment>`. Strings are raw bytes, ints 8-byte LE,
//! bools 1 byte (`serializeValue`). `set_property(["k"])` stores filter state
//! `wasm.k` (the raw path bytes after `wasm.`); in a root context it is `NotFound`.

use super::abi::Status;
use super::context::VmData;

/// Default `source.address` (overridable per request with `.property(..)`).
pub const DEFAULT_SOURCE_ADDRESS: &str = "127.0.0.1:40000";
/// Default `destination.address`.
pub const DEFAULT_DESTINATION_ADDRESS: &str = "127.0.0.1:10000";

fn port_of(addr: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(addr).ok()?;
    s.rsplit_once(':')?.1.parse().ok()
}

/// Reads a property for the current context.
pub(crate) fn get_property(data: &VmData, path: &[u8]) -> Result<Vec<u8>, Status> {
    let segs: Vec<&[u8]> = path.split(|b| *b == 0).collect();
    let joined = segs
        .iter()
        .map(|s| String::from_utf8_lossy(s))
        .collect::<Vec<_>>()
        .join(".");
    let ctx = data.stream_state();
    if let Some(v) = ctx.and_then(|c| c.borrow().properties.get(&joined).cloned()) {
        return Ok(v);
    }
    if let Some(v) = data.shared.borrow().properties.get(&joined) {
        return Ok(v.clone());
    }
    let plugin = &data.plugin;
    match segs.as_slice() {
        [b"plugin_name"] => return Ok(plugin.name.as_bytes().to_vec()),
        [b"plugin_root_id"] => return Ok(plugin.root_id.as_bytes().to_vec()),
        [b"plugin_vm_id"] => return Ok(plugin.vm_id.as_bytes().to_vec()),
        _ => {}
    }
    let Some(ctx) = ctx else {
        return Err(Status::NotFound);
    };
    let st = ctx.borrow();
    let req = &st.req_headers;
    let header = |name: &str| req.get(name.as_bytes()).map(<[u8]>::to_vec);
    let address = |key: &str, default: &str| {
        st.properties
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.as_bytes().to_vec())
    };
    let found = match segs.as_slice() {
        [b"request", b"path"] => header(":path"),
        [b"request", b"url_path"] => header(":path").map(|p| {
            let end = p.iter().position(|b| *b == b'?').unwrap_or(p.len());
            p.get(..end).unwrap_or_default().to_vec()
        }),
        [b"request", b"query"] => {
            header(":path").map(|p| match p.iter().position(|b| *b == b'?') {
                Some(i) => p.get(i + 1..).unwrap_or_default().to_vec(),
                None => Vec::new(),
            })
        }
        [b"request", b"host"] => header(":authority"),
        [b"request", b"method"] => header(":method"),
        [b"request", b"scheme"] => header(":scheme"),
        [b"request", b"protocol"] => Some(b"HTTP/1.1".to_vec()),
        [b"request", b"id"] => header("x-request-id"),
        [b"request", b"referer"] => header("referer"),
        [b"request", b"useragent"] => header("user-agent"),
        [b"request", b"headers", name] => req.get_joined(name),
        [b"response", b"code"] if st.response_started => st
            .resp_headers
            .get(b":status")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse::<i64>().ok())
            .map(|c| c.to_le_bytes().to_vec()),
        [b"response", b"headers", name] if st.response_started => st.resp_headers.get_joined(name),
        [b"source", b"address"] => Some(address("source.address", DEFAULT_SOURCE_ADDRESS)),
        [b"source", b"port"] => port_of(&address("source.address", DEFAULT_SOURCE_ADDRESS))
            .map(|p| p.to_le_bytes().to_vec()),
        [b"destination", b"address"] => {
            Some(address("destination.address", DEFAULT_DESTINATION_ADDRESS))
        }
        [b"destination", b"port"] => {
            port_of(&address("destination.address", DEFAULT_DESTINATION_ADDRESS))
                .map(|p| p.to_le_bytes().to_vec())
        }
        [b"connection", b"mtls"] => Some(vec![0]),
        [b"connection_id"] => Some(st.connection_id.to_le_bytes().to_vec()),
        [b"filter_state", key] => st
            .filter_state
            .get(String::from_utf8_lossy(key).as_ref())
            .cloned(),
        [first] => st
            .filter_state
            .get(&format!("wasm.{}", String::from_utf8_lossy(first)))
            .cloned(),
        _ => None,
    };
    found.ok_or(Status::NotFound)
}

/// Stores filter state `wasm.<path>` for the current HTTP context.
pub(crate) fn set_property(data: &VmData, path: &[u8], value: &[u8]) -> Result<(), Status> {
    let ctx = data.stream_state().ok_or(Status::NotFound)?;
    let key = format!("wasm.{}", String::from_utf8_lossy(path));
    ctx.borrow_mut().filter_state.insert(key, value.to_vec());
    Ok(())
}
