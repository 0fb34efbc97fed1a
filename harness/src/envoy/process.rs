//! Running Envoy: spawn, wait for `LIVE`, query, stop.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::config::{Placement, rewrite};
use super::{EnvoyError, EnvoyRig, envoy_binary, target_dir};
use crate::client::{Client, Response};

/// A running Envoy; dropping it stops the process (SIGTERM, then SIGKILL)
/// and removes its directory (kept when the thread is panicking).
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    port: u16,
    admin_port: u16,
    client: Client,
}

/// Attempts when a chosen free port was taken meanwhile.
const BIND_ATTEMPTS: usize = 3;

pub(super) fn start(rig: EnvoyRig) -> Result<Envoy, EnvoyError> {
    let bin = envoy_binary().map_err(|e| EnvoyError::Install(format!("{e:#}")))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start_once(&rig, &bin) {
            Err(EnvoyError::Refused { log })
                if attempt < BIND_ATTEMPTS
                    && log.contains("Address already in use")
                    && (rig.listener_port.is_none() || rig.admin_port.is_none()) =>
            {
                continue;
            }
            other => return other,
        }
    }
}

fn start_once(rig: &EnvoyRig, bin: &Path) -> Result<Envoy, EnvoyError> {
    let dir = fresh_dir()?;
    let port = match rig.listener_port {
        Some(p) => p,
        None => free_port()?,
    };
    let admin_port = match rig.admin_port {
        Some(p) => p,
        None => free_port()?,
    };
    let cfg = rewrite(
        rig,
        &Placement {
            listener_port: port,
            admin_port,
            dir: &dir,
        },
    )?;
    let cfg_path = dir.join("envoy.json");
    let text = serde_json::to_string_pretty(&cfg).unwrap_or_default();
    std::fs::write(&cfg_path, text)
        .map_err(|e| EnvoyError::io(format!("writing {}", cfg_path.display()), e))?;
    let open = |name: &str| {
        File::create(dir.join(name)).map_err(|e| EnvoyError::io(format!("creating {name}"), e))
    };
    let child = Command::new(bin)
        .arg("-c")
        .arg(&cfg_path)
        .arg("--concurrency")
        .arg(rig.concurrency.to_string())
        .arg("--disable-hot-restart")
        .arg("-l")
        .arg(&rig.log_level)
        .arg("--log-path")
        .arg(dir.join("envoy.log"))
        .args(["--file-flush-interval-msec", "50"])
        .args(&rig.args)
        .stdin(Stdio::null())
        .stdout(open("stdout.log")?)
        .stderr(open("stderr.log")?)
        .spawn()
        .map_err(|e| EnvoyError::io(format!("starting {}", bin.display()), e))?;
    let client = Client::new()
        .map_err(|e| EnvoyError::io("building the HTTP client", std::io::Error::other(e)))?
        .with_timeout(Duration::from_secs(10));
    let mut envoy = Envoy {
        child,
        dir,
        port,
        admin_port,
        client,
    };
    envoy.wait_live(rig.startup_timeout)?;
    Ok(envoy)
}

impl Envoy {
    fn wait_live(&mut self, timeout: Duration) -> Result<(), EnvoyError> {
        #[allow(clippy::disallowed_methods)] // reason: a real Envoy process starts in real time
        let deadline = Instant::now() + timeout;
        let probe = Client::new()
            .map_err(|e| EnvoyError::io("building the HTTP client", std::io::Error::other(e)))?
            .with_timeout(Duration::from_secs(1));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Envoy may still be flushing its log file.
                std::thread::sleep(Duration::from_millis(100));
                return Err(EnvoyError::Refused {
                    log: format!("{}\n(envoy exited: {status})", self.log()),
                });
            }
            if let Ok(r) = probe.get(&format!("{}/ready", self.admin_url()), &[])
                && r.status == 200
                && r.text().trim() == "LIVE"
            {
                return Ok(());
            }
            #[allow(clippy::disallowed_methods)] // reason: see above
            let now = Instant::now();
            if now >= deadline {
                return Err(EnvoyError::Timeout {
                    timeout,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<listener port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `https://127.0.0.1:<listener port>`: the listener over TLS, when the
    /// rig had [`super::EnvoyRig::tls`] (use a [`crate::tls::HttpsClient`]).
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<admin port>`.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// The listener port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Process id of Envoy.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Directory holding `envoy.json`, `envoy.log` and `access.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Envoy's log so far: the `--log-path` file, then stderr and stdout.
    pub fn log(&self) -> String {
        ["envoy.log", "stderr.log", "stdout.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The access log (one line per request: method, path, protocol,
    /// status, flags, details, upstream cluster, authority). Waits up to 2 s
    /// for the lines of every completed request (`--file-flush-interval-msec`).
    pub fn access_log(&self) -> String {
        let read = || std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let completed = self
            .counter("http.main.downstream_rq_completed")
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        for _ in 0..40 {
            let log = read();
            if log.lines().count() >= completed {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        read()
    }

    /// `GET <url><path>` through the listener, over HTTP/1.1 keep-alive.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Response> {
        self.client.get(&format!("{}{path}", self.url()), headers)
    }

    /// `method <url><path>` through the listener with `body`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<bytes::Bytes>,
    ) -> anyhow::Result<Response> {
        self.client
            .request(method, &format!("{}{path}", self.url()), headers, body)
    }

    /// Admin `GET /stats` (text).
    pub fn stats(&self) -> String {
        self.client
            .get(&format!("{}/stats", self.admin_url()), &[])
            .map(|r| r.text())
            .unwrap_or_default()
    }

    /// Value of counter or gauge `name` from `/stats` (e.g.
    /// `http.main.downstream_rq_2xx`, `wasmcustom.meshwasm_probe_total`).
    pub fn counter(&self, name: &str) -> Option<u64> {
        let stats = self.stats();
        stats.lines().find_map(|line| {
            let (k, v) = line.rsplit_once(": ")?;
            (k == name).then(|| v.trim().parse().ok())?
        })
    }

    /// Stops Envoy now (the same as dropping it, keeping the value).
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for _ in 0..60 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || std::env::var_os("MESHWASM_KEEP_ENVOY").is_some() {
            eprintln!("meshwasm: Envoy files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound to `:0`, then released).
pub fn free_port() -> Result<u16, EnvoyError> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| EnvoyError::io("finding a free port", e))
}

fn fresh_dir() -> Result<PathBuf, EnvoyError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = target_dir()
        .join("envoy-rig")
        .join(format!("{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| EnvoyError::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}
