//! Rewriting the `envoy.yaml` template into a runnable config.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::{EnvoyError, EnvoyRig, WasmFilter, workspace_root};

const HCM: &str = "envoy.filters.network.http_connection_manager";
const ROUTER: &str = "envoy.filters.http.router";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// The configuration JSON of the first wasm filter of `<workspace>/envoy.yaml`
/// (the seed's VirtualService and DestinationRule).
pub fn seed_filter_config() -> Result<String, EnvoyError> {
    let path = workspace_root().join("envoy.yaml");
    let mut cfg = load_template(&path)?;
    let filters = http_filters(&mut cfg, &path)?;
    filters
        .iter()
        .filter(|f| is_wasm(f))
        .find_map(|f| {
            f.pointer("/typed_config/config/configuration/value")?
                .as_str()
        })
        .map(str::to_owned)
        .ok_or_else(|| template_error(&path, "no wasm filter with a configuration value"))
}

/// Reads a YAML (or JSON) template, resolving anchors and aliases.
pub(super) fn load_template(path: &Path) -> Result<Value, EnvoyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EnvoyError::io(format!("reading {}", path.display()), e))?;
    serde_norway::from_str(&text).map_err(|e| template_error(path, &e.to_string()))
}

/// Ports and paths chosen for one start.
pub(super) struct Placement<'a> {
    pub listener_port: u16,
    pub admin_port: u16,
    pub dir: &'a Path,
}

/// Applies the rig's settings to the template.
pub(super) fn rewrite(rig: &EnvoyRig, at: &Placement<'_>) -> Result<Value, EnvoyError> {
    let path = rig.template.as_path();
    let mut cfg = load_template(path)?;
    set_socket(
        &mut cfg,
        "/admin/address/socket_address",
        at.admin_port,
        path,
    )?;
    set_socket(
        &mut cfg,
        "/static_resources/listeners/0/address/socket_address",
        at.listener_port,
        path,
    )?;
    if rig.access_log {
        add_access_log(&mut cfg, &at.dir.join("access.log"), path)?;
    }
    let root = workspace_root();
    let filters = http_filters(&mut cfg, path)?;
    match &rig.filters {
        Some(wanted) => {
            let pos = filters.iter().position(is_wasm).unwrap_or_else(|| {
                filters
                    .iter()
                    .position(|f| f.get("name").and_then(Value::as_str) == Some(ROUTER))
                    .unwrap_or(filters.len())
            });
            filters.retain(|f| !is_wasm(f));
            let pos = pos.min(filters.len());
            for (i, f) in wanted.iter().enumerate() {
                filters.insert(pos + i, wasm_filter_json(f, &root));
            }
        }
        None => {
            for f in filters.iter_mut().filter(|f| is_wasm(f)) {
                if let Some(Value::String(file)) =
                    f.pointer_mut("/typed_config/config/vm_config/code/local/filename")
                {
                    *file = absolute(&root, Path::new(file.as_str()));
                }
            }
        }
    }
    for native in &rig.native_filters {
        let name = native.get("name").and_then(Value::as_str);
        if name.is_some() {
            filters.retain(|f| f.get("name").and_then(Value::as_str) != name);
        }
        let pos = filters
            .iter()
            .position(|f| f.get("name").and_then(Value::as_str) == Some(ROUTER))
            .unwrap_or(filters.len());
        filters.insert(pos, native.clone());
    }
    if let Some(routes) = &rig.routes {
        let slot = hcm(&mut cfg, path)?
            .get_mut("route_config")
            .and_then(|rc| rc.pointer_mut("/virtual_hosts/0/routes"))
            .ok_or_else(|| {
                template_error(path, "no route_config.virtual_hosts[0].routes in the HCM")
            })?;
        *slot = Value::Array(routes.clone());
    }
    if let Some(route_config) = &rig.route_config {
        hcm(&mut cfg, path)?.insert("route_config".to_owned(), route_config.clone());
    }
    let clusters = cfg
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| template_error(path, "no static_resources.clusters list"))?;
    for (name, addr) in &rig.clusters {
        match clusters
            .iter_mut()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
        {
            Some(c) => {
                if let Some(obj) = c.as_object_mut() {
                    obj.insert("load_assignment".to_owned(), load_assignment(name, *addr));
                }
            }
            None => clusters.push(static_cluster(name, *addr)),
        }
    }
    for raw in &rig.raw_clusters {
        let name = raw.get("name").and_then(Value::as_str);
        clusters.retain(|c| c.get("name").and_then(Value::as_str) != name);
        clusters.push(raw.clone());
    }
    if let Some(tls) = &rig.tls {
        tls.apply(&mut cfg, path)?;
    }
    if let Some(limit) = rig.buffer_limit
        && let Some(listener) = cfg
            .pointer_mut("/static_resources/listeners/0")
            .and_then(Value::as_object_mut)
    {
        listener.insert("per_connection_buffer_limit_bytes".to_owned(), json!(limit));
    }
    if let Some(tcp) = &rig.tcp {
        super::tcp::apply(tcp, &mut cfg, &root, path)?;
    }
    Ok(cfg)
}

fn is_wasm(filter: &Value) -> bool {
    filter
        .pointer("/typed_config/@type")
        .and_then(Value::as_str)
        == Some(WASM_TYPE)
}

fn absolute(root: &Path, file: &Path) -> String {
    if file.is_absolute() {
        file.display().to_string()
    } else {
        root.join(file).display().to_string()
    }
}

pub(super) fn wasm_filter_json(f: &WasmFilter, root: &Path) -> Value {
    let mut plugin = Map::new();
    plugin.insert("name".to_owned(), json!(f.name));
    plugin.insert("root_id".to_owned(), json!(f.root_id));
    plugin.insert(
        "vm_config".to_owned(),
        json!({
            "vm_id": f.vm_id,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": absolute(root, &f.wasm)}},
        }),
    );
    plugin.insert(
        "configuration".to_owned(),
        json!({"@type": STRING_VALUE, "value": f.config}),
    );
    for (k, v) in &f.plugin_fields {
        plugin.insert(k.clone(), v.clone());
    }
    json!({"name": f.name, "typed_config": {"@type": WASM_TYPE, "config": plugin}})
}

fn load_assignment(name: &str, addr: SocketAddr) -> Value {
    json!({
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": addr.ip().to_string(),
            "port_value": addr.port(),
        }}}}]}],
    })
}

/// A STATIC cluster `name` at `addr` (HTTP/1.1 upstream, Envoy's default
/// limits), as [`super::EnvoyRig::cluster`] adds one; a base for
/// [`super::EnvoyRig::raw_cluster`].
pub fn static_cluster(name: &str, addr: SocketAddr) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": load_assignment(name, addr),
    })
}

fn set_socket(cfg: &mut Value, pointer: &str, port: u16, path: &Path) -> Result<(), EnvoyError> {
    let sock = cfg
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| template_error(path, &format!("no {pointer}")))?;
    sock.insert("address".to_owned(), json!("127.0.0.1"));
    sock.insert("port_value".to_owned(), json!(port));
    Ok(())
}

fn hcm<'a>(cfg: &'a mut Value, path: &Path) -> Result<&'a mut Map<String, Value>, EnvoyError> {
    http_connection_manager(cfg)
        .ok_or_else(|| template_error(path, "no http_connection_manager in the first listener"))
}

/// The `typed_config` of the HTTP connection manager in the first filter
/// chain of the first listener of an Envoy bootstrap (as `envoy.yaml` has
/// it), if there is one.
pub fn http_connection_manager(cfg: &mut Value) -> Option<&mut Map<String, Value>> {
    cfg.pointer_mut("/static_resources/listeners/0/filter_chains/0/filters")
        .and_then(Value::as_array_mut)
        .and_then(|fs| {
            fs.iter_mut()
                .find(|f| f.get("name").and_then(Value::as_str) == Some(HCM))
        })
        .and_then(|f| f.get_mut("typed_config"))
        .and_then(Value::as_object_mut)
}

fn http_filters<'a>(cfg: &'a mut Value, path: &Path) -> Result<&'a mut Vec<Value>, EnvoyError> {
    hcm(cfg, path)?
        .get_mut("http_filters")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| template_error(path, "the http_connection_manager has no http_filters"))
}

fn add_access_log(cfg: &mut Value, file: &Path, path: &Path) -> Result<(), EnvoyError> {
    let hcm = hcm(cfg, path)?;
    if hcm.contains_key("access_log") {
        return Ok(());
    }
    let format = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" \
                  %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %UPSTREAM_CLUSTER% \
                  authority=%REQ(:AUTHORITY)% duration=%DURATION%\n";
    hcm.insert(
        "access_log".to_owned(),
        json!([{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": file.display().to_string(),
                "log_format": {"text_format_source": {"inline_string": format}},
            },
        }]),
    );
    Ok(())
}

pub(super) fn template_error(path: &Path, message: &str) -> EnvoyError {
    EnvoyError::Template {
        path: path.to_path_buf(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn rewritten(rig: &EnvoyRig) -> Value {
        let dir = std::env::temp_dir();
        let at = Placement {
            listener_port: 1,
            admin_port: 2,
            dir: &dir,
        };
        rewrite(rig, &at).unwrap()
    }

    fn names(cfg: &mut Value) -> Vec<String> {
        http_filters(cfg, Path::new("t"))
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn native_filters_go_before_the_router_after_the_wasm_filters() {
        let wasm = WasmFilter::new("meshwasm.route", "r.wasm", "{}");
        let rig = EnvoyRig::builder()
            .access_log(false)
            .filters(vec![wasm])
            .native_filter(json!({"name": "a", "typed_config": {}}))
            .native_filter(json!({"name": "b", "typed_config": {}}));

        let mut cfg = rewritten(&rig);

        assert_eq!(
            names(&mut cfg),
            ["meshwasm.route", "a", "b", "envoy.filters.http.router"]
        );
    }

    #[test]
    fn a_native_filter_replaces_the_template_filter_of_its_name() {
        let router = json!({"name": ROUTER, "typed_config": {"x": 1}});
        let rig = EnvoyRig::builder()
            .access_log(false)
            .filters(vec![])
            .native_filter(router.clone());

        let mut cfg = rewritten(&rig);

        assert_eq!(names(&mut cfg), [ROUTER]);
        assert_eq!(http_filters(&mut cfg, Path::new("t")).unwrap()[0], router);
    }

    #[test]
    fn routes_replace_those_of_the_first_virtual_host() {
        let routes = vec![json!({"match": {"prefix": "/x"}, "route": {"cluster": "c"}})];
        let rig = EnvoyRig::builder().access_log(false).routes(routes.clone());

        let mut cfg = rewritten(&rig);

        let hcm = hcm(&mut cfg, Path::new("t")).unwrap();
        assert_eq!(
            hcm["route_config"]["virtual_hosts"][0]["routes"],
            Value::Array(routes)
        );
    }
}
