//! Running commands and parsing flags.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

/// The repository root.
pub fn root() -> PathBuf {
    meshwasm_harness::envoy::workspace_root()
}

/// `cargo` (the one running us) in the repository root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    cmd.current_dir(root());
    cmd
}

/// Runs `cmd`, inheriting stdio; fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; fails on a non-zero exit.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("running {}", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cmd` as a shell-like line.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A step banner.
pub fn banner(text: &str) {
    eprintln!("\n==> {text}");
}

/// Command-line flags: `--name value`, `--name=value`, `--switch`, and
/// positional arguments.
pub struct Flags {
    args: Vec<String>,
}

impl Flags {
    /// Wraps `args`.
    pub fn new(args: &[String]) -> Flags {
        Flags {
            args: args.to_vec(),
        }
    }

    /// Every value of `--name` (removed from the arguments).
    pub fn values(&mut self, name: &str) -> anyhow::Result<Vec<String>> {
        let mut found = Vec::new();
        let mut i = 0;
        while let Some(arg) = self.args.get(i) {
            if arg == name {
                let Some(v) = self.args.get(i + 1).cloned() else {
                    bail!("{name} needs a value");
                };
                found.push(v);
                self.args.drain(i..i + 2);
            } else if let Some(v) = arg.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                found.push(v.to_owned());
                self.args.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(found)
    }

    /// The last value of `--name`, if given.
    pub fn value(&mut self, name: &str) -> anyhow::Result<Option<String>> {
        Ok(self.values(name)?.pop())
    }

    /// The last value of `--name` parsed, if given.
    pub fn parsed<T: std::str::FromStr>(&mut self, name: &str) -> anyhow::Result<Option<T>> {
        match self.value(name)? {
            Some(v) => match v.parse() {
                Ok(t) => Ok(Some(t)),
                Err(_) => bail!("{name}: `{v}` is not valid"),
            },
            None => Ok(None),
        }
    }

    /// Whether `--name` was given (removed from the arguments).
    pub fn switch(&mut self, name: &str) -> bool {
        let before = self.args.len();
        self.args.retain(|a| a != name);
        self.args.len() != before
    }

    /// The remaining arguments; an unknown `--flag` is an error.
    pub fn positional(self) -> anyhow::Result<Vec<String>> {
        if let Some(flag) = self.args.iter().find(|a| a.starts_with("--")) {
            bail!("unknown option {flag}");
        }
        Ok(self.args)
    }
}
