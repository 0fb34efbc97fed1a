//! `cargo xtask demo`: product-service v1 and v2 plus Envoy on `envoy.yaml`
//! with the meshwasm filters, until Ctrl-C.

use std::net::{SocketAddr, TcpListener};

use anyhow::Context as _;
use meshwasm_harness::envoy::{
    EnvoyRig, envoy_binary, free_port, product_cluster, wait_for_ctrl_c,
};
use meshwasm_harness::jwt::{self, Alg, Claims, Key};
use meshwasm_harness::upstream::{JwksServer, ProductService};

use crate::util::{Flags, banner};
use crate::wasm;

/// Runs the demo.
pub fn demo(args: &[String]) -> anyhow::Result<()> {
    let mut flags = Flags::new(args);
    let port = flags.parsed::<u16>("--port")?.unwrap_or(10000);
    let admin_port = flags.parsed::<u16>("--admin-port")?.unwrap_or(9901);
    let v1_port = flags.parsed::<u16>("--v1-port")?.unwrap_or(8081);
    let v2_port = flags.parsed::<u16>("--v2-port")?.unwrap_or(8082);
    flags.positional()?;

    wasm::build()?;
    banner("Envoy");
    let bin = envoy_binary()?;
    eprintln!("envoy: {}", bin.display());

    banner("product-service v1 and v2");
    let v1 = start_service("v1", v1_port)?;
    let v2 = start_service("v2", v2_port)?;
    println!("Service v1 starting on port {}", v1.addr().port());
    println!("Service v2 starting on port {}", v2.addr().port());

    banner("JWKS server (a key made now) and demo tokens");
    let key = Key::generate(Alg::RS256)?.with_kid("demo");
    let jwks = JwksServer::start(&jwt::jwks(&[&key]))?;
    let claims = Claims::new("https://jwks.demo", "alice")
        .audience("product-service")
        .expires_in(24 * 3600);
    let token = jwt::mint(Alg::RS256, &key, &serde_json::json!({}), &claims.to_value())?;
    let wrong_aud = jwt::mint(
        Alg::RS256,
        &key,
        &serde_json::json!({}),
        &claims.clone().audience("billing").to_value(),
    )?;
    println!("JWKS on {} (cluster jwks)", jwks.jwks_uri());

    banner("Envoy on envoy.yaml");
    let envoy = EnvoyRig::builder()
        .cluster(&product_cluster("v1"), v1.addr())
        .cluster(&product_cluster("v2"), v2.addr())
        .cluster("jwks", jwks.addr())
        .listener_port(available(port, "listener")?)
        .admin_port(available(admin_port, "admin")?)
        .start()
        .context("starting Envoy on envoy.yaml")?;
    let url = envoy.url();
    println!(
        "\nmeshwasm demo is up:
  Envoy     {url}   (admin {admin})
  config    {dir}/envoy.json (from envoy.yaml)
  logs      {dir}/envoy.log, {dir}/access.log

Try:
  # a host without a VirtualService passes through to v1
  curl -i {url}/api/products

  # VirtualService rule 1: user-type: premium ⇒ subset v2
  curl -H 'Host: product-service' -H 'user-type: premium' {url}/api/products

  # VirtualService rule 2: 90% v1 / 10% v2
  for i in $(seq 1 100); do curl -s -H 'Host: product-service' {url}/api/products \\
    | grep -o '\"version\":\"v[12]\"'; done | sort | uniq -c

  # sticky A/B (host checkout): alice always lands on v1, bob on v2 (FNV-1a of id + test)
  curl -si -H 'Host: checkout' -H 'x-user-id: alice' {url}/api/products | grep -i -e x-ab-test-variant -e '\"version\"'
  curl -si -H 'Host: checkout' -H 'x-user-id: bob' {url}/api/products | grep -i -e x-ab-test-variant -e '\"version\"'

  # timeout 1s (host product-api): a 2 s upstream ⇒ 504 upstream request timeout
  curl -si -H 'Host: product-api' -H 'x-test-delay-ms: 2000' {url}/api/products
  # retries on 5xx: two failures are retried away (three upstream attempts, then 200)
  curl -s -XPOST 'http://{v1}/__test/fail?status=503&count=2'; curl -si -H 'Host: product-api' {url}/api/products | head -1

  # fault injection (host chaos, the seed's fault rules): a 2 s delay, then v1
  curl -s -o /dev/null -w '%{{http_code}} after %{{time_total}}s\\n' -H 'Host: chaos' -H 'test-scenario: delay' {url}/api/products
  # abort: half of these are 500 `fault filter abort`
  for i in $(seq 1 10); do curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'Host: chaos' -H 'test-scenario: error' {url}/api/products; done | sort | uniq -c

  # JWT (RequestAuthentication demo-jwt): a valid token passes (its sub reaches
  # the service as x-jwt-sub), a wrong audience is 403, a bad token 401
  curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'Authorization: Bearer {token}' {url}/api/products
  curl -si -H 'Authorization: Bearer {wrong_aud}' {url}/api/products | head -1
  curl -si -H 'Authorization: Bearer not.a.token' {url}/api/products | grep -i -e '^HTTP' -e www-authenticate

  # per-route, fault and authn counters
  curl -s {admin}/stats | grep wasmcustom.meshwasm

Ctrl-C stops Envoy and both services.",
        admin = envoy.admin_url(),
        dir = envoy.dir().display(),
        v1 = v1.addr(),
    );
    wait_for_ctrl_c()?;
    eprintln!("\nstopping Envoy and the product services");
    drop(envoy);
    drop(v1);
    drop(v2);
    drop(jwks);
    Ok(())
}

/// `port` if it is free on 127.0.0.1, else a free one (with a note).
fn available(port: u16, what: &str) -> anyhow::Result<u16> {
    if TcpListener::bind(("127.0.0.1", port)).is_ok() {
        return Ok(port);
    }
    let other = free_port()?;
    eprintln!("note: {what} port {port} is taken, using {other}");
    Ok(other)
}

fn start_service(version: &str, port: u16) -> anyhow::Result<ProductService> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match ProductService::start_on(version, addr) {
        Ok(s) => Ok(s),
        Err(e) => {
            eprintln!("note: port {port} for {version} unavailable ({e:#}), using a free one");
            ProductService::start(version)
        }
    }
}
