//! Errors of the wasmtime proxy-wasm host.

/// What went wrong while loading a filter chain or running a request.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The `.wasm` file could not be read.
    #[error("cannot read wasm module {path}: {message}")]
    Io {
        /// File path.
        path: String,
        /// OS error text.
        message: String,
    },
    /// wasmtime refused the module.
    #[error("cannot compile wasm module {path}: {message}")]
    Compile {
        /// File path.
        path: String,
        /// Compiler error text.
        message: String,
    },
    /// The module imports functions the host does not define.
    #[error("filter {filter} imports what the host does not define: {}", missing.join(", "))]
    MissingImports {
        /// Filter name.
        filter: String,
        /// `module.name` of every missing import.
        missing: Vec<String>,
    },
    /// Instantiation or `_initialize`/`_start` failed.
    #[error("filter {filter} failed to start: {message}")]
    Start {
        /// Filter name.
        filter: String,
        /// Error text.
        message: String,
    },
    /// `proxy_on_vm_start` or `proxy_on_configure` returned false.
    #[error("filter {filter} refused its configuration; its logs:\n{}", logs.join("\n"))]
    ConfigureRefused {
        /// Filter name.
        filter: String,
        /// Everything the filter logged while starting.
        logs: Vec<String>,
    },
    /// A callback trapped (e.g. a Rust panic compiled to `unreachable`).
    #[error("filter {filter} trapped in {callback}: {message}{}", panic.as_ref().map(|p| format!(" (panic: {p})")).unwrap_or_default())]
    Trap {
        /// Filter name.
        filter: String,
        /// Exported function that trapped, e.g. `proxy_on_request_headers`.
        callback: String,
        /// wasmtime's trap text.
        message: String,
        /// The `panicked at ...` text the module logged just before the trap.
        panic: Option<String>,
    },
    /// `finish()` on a stream that is still paused.
    #[error("stream {0} is still paused (answer its http calls or advance the clock)")]
    StillPaused(u64),
    /// No pending http call has this token.
    #[error("no pending http call with token {0}")]
    UnknownToken(u32),
    /// No gRPC call or stream in flight has this id.
    #[error("no gRPC call or stream with id {0} in flight")]
    UnknownGrpc(u64),
    /// A bad argument from the test (unknown worker, unknown filter…).
    #[error("invalid harness argument: {0}")]
    InvalidArgument(String),
    /// The host was used from inside an upstream closure (re-entrant call).
    #[error("the host is busy: host methods cannot be called from an upstream closure")]
    Reentrant,
    /// Any other engine failure.
    #[error("wasm engine error: {0}")]
    Engine(String),
}
