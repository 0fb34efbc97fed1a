//! `meshwasm-host`: run one request through a chain of proxy-wasm filters on the
//! wasmtime host and print the outcome.
//!
//! ```text
//! meshwasm-host --wasm F.wasm [--wasm G.wasm] [--config cfg.json] [-H 'k: v']...
//!               [--authority A] [--body TEXT] [--cluster NAME] METHOD PATH
//! ```
//! Exit status 1 on a refused configuration or a trap, 2 on bad usage.

use std::process::ExitCode;

use meshwasm_harness::host::{FilterSpec, HarnessError, Host, LogLevel, Outcome};

struct Args {
    wasm: Vec<String>,
    config: Vec<u8>,
    headers: Vec<(String, String)>,
    authority: Option<String>,
    body: Option<String>,
    clusters: Vec<String>,
    method: String,
    path: String,
}

const USAGE: &str = "usage: meshwasm-host --wasm F.wasm [--wasm G.wasm] [--config cfg.json] \
[-H 'k: v']... [--authority A] [--body TEXT] [--cluster NAME] METHOD PATH";

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        wasm: Vec::new(),
        config: Vec::new(),
        headers: Vec::new(),
        authority: None,
        body: None,
        clusters: Vec::new(),
        method: String::new(),
        path: String::new(),
    };
    let mut positional = Vec::new();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--wasm" => args.wasm.push(value("--wasm")?),
            "--config" => {
                let file = value("--config")?;
                args.config = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
            }
            "-H" | "--header" => {
                let h = value("-H")?;
                let (k, v) = h.split_once(':').ok_or(format!("bad header {h:?}"))?;
                args.headers
                    .push((k.trim().to_owned(), v.trim().to_owned()));
            }
            "--authority" => args.authority = Some(value("--authority")?),
            "--body" => args.body = Some(value("--body")?),
            "--cluster" => args.clusters.push(value("--cluster")?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            _ => positional.push(a),
        }
    }
    let [method, path] = <[String; 2]>::try_from(positional).map_err(|_| USAGE.to_owned())?;
    if args.wasm.is_empty() {
        return Err(USAGE.to_owned());
    }
    args.method = method;
    args.path = path;
    Ok(args)
}

fn run(args: &Args) -> Result<Outcome, HarnessError> {
    let mut builder = Host::builder().log_level(LogLevel::Debug);
    for c in &args.clusters {
        builder = builder.cluster(c);
    }
    let mut host = builder.build()?;
    let specs: Vec<FilterSpec> = args
        .wasm
        .iter()
        .enumerate()
        .map(|(i, w)| FilterSpec::new(&format!("filter{i}"), w).config(&args.config))
        .collect();
    let chain = host.load(&specs)?;
    let mut req = chain.request(&args.method, &args.path);
    if let Some(a) = &args.authority {
        req = req.authority(a);
    }
    for (k, v) in &args.headers {
        req = req.header(k, v);
    }
    if let Some(b) = &args.body {
        req = req.body(b);
    }
    req.send()
}

fn print(out: &Outcome) {
    match (out.local_reply(), out.upstream_request()) {
        (Some(r), _) => {
            println!(
                "local reply {} (details {:?}, by {})",
                r.status, r.details, r.filter
            );
            for (k, v) in &r.headers {
                println!("  {k}: {v}");
            }
            println!("  body: {}", String::from_utf8_lossy(&r.body));
        }
        (None, Some(up)) => {
            println!("upstream request:");
            for (k, v) in &up.headers {
                println!("  {k}: {}", String::from_utf8_lossy(v));
            }
            println!("response status {}", out.status());
        }
        (None, None) => println!("stream reset"),
    }
    println!("logs:");
    for l in out.logs() {
        println!("  [{:?}] {}: {}", l.level, l.filter, l.message);
    }
    println!("fuel: {}", out.fuel());
    for (name, fuel) in out.fuel_by_filter() {
        println!("  {name}: {fuel}");
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(out) => {
            print(&out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
