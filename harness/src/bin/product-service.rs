//! The seed's product service (`canary-deployment.go`) as a binary.
//!
//! Env `SERVICE_VERSION` (default `v1`) and `PORT` (default `8080`; `0` =
//! a free port). Prints `Service <v> starting on port <p>` and serves until
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context as _;
use meshwasm_harness::envoy::wait_for_ctrl_c;
use meshwasm_harness::upstream::ProductService;

fn main() -> anyhow::Result<()> {
    let version = std::env::var("SERVICE_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "v1".to_owned());
    let port: u16 = match std::env::var("PORT") {
        Ok(p) if !p.is_empty() => p
            .parse()
            .with_context(|| format!("PORT={p} is not a port"))?,
        _ => 8080,
    };
    // The seed listens on all interfaces (`":"+port`).
    let service = ProductService::start_on(&version, SocketAddr::from(([0, 0, 0, 0], port)))?;
    println!(
        "Service {version} starting on port {}",
        service.addr().port()
    );
    wait_for_ctrl_c()?;
    drop(service);
    Ok(())
}
