//! The WASI subset Envoy offers proxy-wasm modules (SPEC §I; proxy-wasm-cpp-host
//! `include/proxy-wasm/exports.h` `FOR_ALL_WASI_FUNCTIONS`, `src/exports.cc`), under
//! both `wasi_snapshot_preview1` and `wasi_unstable`. Written by hand on
//! `Linker::func_wrap`: stdout/stderr become info/error logs, clocks read the
//! virtual clock, `random_get` the seeded RNG, the environment comes from the
//! builder, files do not exist (`EBADF`).

use wasmtime::{Caller, Linker};

use super::abi::{read, read_u32, write, write_u32, write_u64};
use super::context::VmData;
use super::imports::log_line;
use super::outcome::LogLevel;

type C<'a> = Caller<'a, VmData>;

use super::context::count_call;

const ESUCCESS: u32 = 0;
const EBADF: u32 = 8;
const EFAULT: u32 = 21;
const EINVAL: u32 = 28;
const ENOSYS: u32 = 52;

/// Trap raised by `proc_exit`.
#[derive(Debug)]
pub struct ProcExit(pub u32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proc_exit({})", self.0)
    }
}

impl std::error::Error for ProcExit {}

fn fd_write(c: &mut C<'_>, fd: u32, iovs: u32, n: u32, nwritten: u32) -> u32 {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return EBADF,
    };
    let mut text = Vec::new();
    for i in 0..n {
        let at = iovs.wrapping_add(i.wrapping_mul(8));
        let (Ok(ptr), Ok(len)) = (read_u32(c, at), read_u32(c, at.wrapping_add(4))) else {
            return EFAULT;
        };
        match read(c, ptr, len) {
            Ok(b) => text.extend_from_slice(&b),
            Err(_) => return EFAULT,
        }
    }
    let written = u32::try_from(text.len()).unwrap_or(u32::MAX);
    if text.last() == Some(&b'\n') {
        text.pop();
    }
    if !text.is_empty() {
        let msg = String::from_utf8_lossy(&text).into_owned();
        let d = c.data_mut();
        // Rust's stderr panic message arrives in pieces: keep appending to it.
        if fd == 2
            && let Some(p) = d.panic.as_mut().filter(|_| !msg.contains("panicked at"))
        {
            p.push_str(&msg);
        }
        log_line(d, level, msg);
    }
    match write_u32(c, nwritten, written) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

fn strings_sizes(c: &mut C<'_>, items: &[String], count_ptr: u32, size_ptr: u32) -> u32 {
    let size: usize = items.iter().map(|s| s.len() + 1).sum();
    let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let size = u32::try_from(size).unwrap_or(u32::MAX);
    match write_u32(c, count_ptr, count).and_then(|()| write_u32(c, size_ptr, size)) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

fn strings_get(c: &mut C<'_>, items: &[String], mut array: u32, mut buf: u32) -> u32 {
    for s in items {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        if write_u32(c, array, buf).is_err() || write(c, buf, &bytes).is_err() {
            return EFAULT;
        }
        array = array.wrapping_add(4);
        buf = buf.wrapping_add(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    }
    ESUCCESS
}

fn env_strings(c: &C<'_>) -> Vec<String> {
    c.data()
        .shared
        .borrow()
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

fn clock_now(c: &C<'_>, id: u32) -> Option<u64> {
    let shared = c.data().shared.borrow();
    match id {
        0 => Some(shared.now_nanos()),
        1..=3 => Some(shared.monotonic_nanos()),
        _ => None,
    }
}

/// Minimal `poll_oneoff`: every subscription fires at once (clock subscriptions do
/// not advance the virtual clock).
fn poll_oneoff(c: &mut C<'_>, input: u32, out: u32, n: u32, nevents: u32) -> u32 {
    for i in 0..n {
        let sub = input.wrapping_add(i.wrapping_mul(48));
        let Ok(head) = read(c, sub, 9) else {
            return EFAULT;
        };
        let mut event = [0u8; 32];
        if let (Some(ud), Some(tag)) = (head.get(..8), head.get(8)) {
            if let Some(slot) = event.get_mut(..8) {
                slot.copy_from_slice(ud);
            }
            if let Some(slot) = event.get_mut(10) {
                *slot = *tag;
            }
        }
        if write(c, out.wrapping_add(i.wrapping_mul(32)), &event).is_err() {
            return EFAULT;
        }
    }
    match write_u32(c, nevents, n) {
        Ok(()) => ESUCCESS,
        Err(_) => EFAULT,
    }
}

fn add_module(linker: &mut Linker<VmData>, m: &str) -> wasmtime::Result<()> {
    linker.func_wrap(
        m,
        "fd_write",
        |mut c: C<'_>, fd: u32, iovs: u32, n: u32, nw: u32| -> u32 {
            count_call(&c, "wasi.fd_write");
            fd_write(&mut c, fd, iovs, n, nw)
        },
    )?;
    linker.func_wrap(
        m,
        "fd_read",
        |_c: C<'_>, _fd: u32, _i: u32, _n: u32, _r: u32| -> u32 { ENOSYS },
    )?;
    linker.func_wrap(
        m,
        "fd_pread",
        |_c: C<'_>, _fd: u32, _i: u32, _n: u32, _o: u64, _r: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "fd_pwrite",
        |_c: C<'_>, _fd: u32, _i: u32, _n: u32, _o: u64, _r: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "fd_seek",
        |_c: C<'_>, _fd: u32, _o: i64, _w: u32, _r: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(m, "fd_tell", |c: C<'_>, _fd: u32, _r: u32| -> u32 {
        count_call(&c, "wasi.fd_tell");
        EBADF
    })?;
    linker.func_wrap(m, "fd_close", |_c: C<'_>, _fd: u32| -> u32 { EBADF })?;
    linker.func_wrap(m, "fd_sync", |_c: C<'_>, _fd: u32| -> u32 { EBADF })?;
    linker.func_wrap(m, "fd_datasync", |_c: C<'_>, _fd: u32| -> u32 { EBADF })?;
    linker.func_wrap(
        m,
        "fd_advise",
        |_c: C<'_>, _fd: u32, _o: u64, _l: u64, _a: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "fd_allocate",
        |_c: C<'_>, _fd: u32, _o: u64, _l: u64| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "fd_filestat_get",
        |_c: C<'_>, _fd: u32, _p: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "fd_filestat_set_size",
        |_c: C<'_>, _fd: u32, _s: u64| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "fd_fdstat_set_flags",
        |_c: C<'_>, _fd: u32, _f: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "fd_readdir",
        |_c: C<'_>, _fd: u32, _b: u32, _l: u32, _k: u64, _r: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(m, "fd_renumber", |c: C<'_>, _a: u32, _b: u32| -> u32 {
        count_call(&c, "wasi.fd_renumber");
        EBADF
    })?;
    linker.func_wrap(m, "fd_prestat_get", |c: C<'_>, _fd: u32, _p: u32| -> u32 {
        count_call(&c, "wasi.fd_prestat_get");
        EBADF
    })?;
    linker.func_wrap(
        m,
        "fd_prestat_dir_name",
        |_c: C<'_>, _fd: u32, _p: u32, _l: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "fd_fdstat_get",
        |mut c: C<'_>, fd: u32, out: u32| -> u32 {
            count_call(&c, "wasi.fd_fdstat_get");
            if fd != 1 && fd != 2 {
                return EBADF;
            }
            // filetype 0, flags 0, rights_base = FD_WRITE (64), inheriting 0
            // (proxy-wasm-cpp-host `wasi_unstable_fd_fdstat_get`).
            let mut stat = [0u8; 24];
            if let Some(slot) = stat.get_mut(8..16) {
                slot.copy_from_slice(&64u64.to_le_bytes());
            }
            match write(&mut c, out, &stat) {
                Ok(()) => ESUCCESS,
                Err(_) => EFAULT,
            }
        },
    )?;
    linker.func_wrap(
        m,
        "path_open",
        |_c: C<'_>,
         _fd: u32,
         _d: u32,
         _p: u32,
         _l: u32,
         _o: u32,
         _rb: u64,
         _ri: u64,
         _f: u32,
         _r: u32|
         -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "path_filestat_get",
        |_c: C<'_>, _fd: u32, _f: u32, _p: u32, _l: u32, _b: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "path_unlink_file",
        |_c: C<'_>, _fd: u32, _p: u32, _l: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "path_remove_directory",
        |_c: C<'_>, _fd: u32, _p: u32, _l: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "path_create_directory",
        |_c: C<'_>, _fd: u32, _p: u32, _l: u32| -> u32 { EBADF },
    )?;
    linker.func_wrap(
        m,
        "environ_sizes_get",
        |mut c: C<'_>, cp: u32, sp: u32| -> u32 {
            count_call(&c, "wasi.environ_sizes_get");
            let env = env_strings(&c);
            strings_sizes(&mut c, &env, cp, sp)
        },
    )?;
    linker.func_wrap(m, "environ_get", |mut c: C<'_>, ap: u32, bp: u32| -> u32 {
        count_call(&c, "wasi.environ_get");
        let env = env_strings(&c);
        strings_get(&mut c, &env, ap, bp)
    })?;
    linker.func_wrap(
        m,
        "args_sizes_get",
        |mut c: C<'_>, cp: u32, sp: u32| -> u32 { strings_sizes(&mut c, &[], cp, sp) },
    )?;
    linker.func_wrap(m, "args_get", |c: C<'_>, _a: u32, _b: u32| -> u32 {
        count_call(&c, "wasi.args_get");
        ESUCCESS
    })?;
    linker.func_wrap(
        m,
        "clock_time_get",
        |mut c: C<'_>, id: u32, _precision: u64, out: u32| -> u32 {
            count_call(&c, "wasi.clock_time_get");
            let Some(now) = clock_now(&c, id) else {
                return EINVAL;
            };
            match write_u64(&mut c, out, now) {
                Ok(()) => ESUCCESS,
                Err(_) => EFAULT,
            }
        },
    )?;
    linker.func_wrap(
        m,
        "clock_res_get",
        |mut c: C<'_>, id: u32, out: u32| -> u32 {
            count_call(&c, "wasi.clock_res_get");
            if clock_now(&c, id).is_none() {
                return EINVAL;
            }
            match write_u64(&mut c, out, 1) {
                Ok(()) => ESUCCESS,
                Err(_) => EFAULT,
            }
        },
    )?;
    linker.func_wrap(m, "random_get", |mut c: C<'_>, buf: u32, len: u32| -> u32 {
        count_call(&c, "wasi.random_get");
        let n = usize::try_from(len).unwrap_or(0);
        let bytes = c.data().shared.borrow_mut().random_bytes(n);
        match write(&mut c, buf, &bytes) {
            Ok(()) => ESUCCESS,
            Err(_) => EFAULT,
        }
    })?;
    linker.func_wrap(
        m,
        "proc_exit",
        |_c: C<'_>, code: u32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(ProcExit(code)))
        },
    )?;
    linker.func_wrap(m, "sched_yield", |_c: C<'_>| -> u32 { ESUCCESS })?;
    linker.func_wrap(
        m,
        "poll_oneoff",
        |mut c: C<'_>, i: u32, o: u32, n: u32, ne: u32| -> u32 { poll_oneoff(&mut c, i, o, n, ne) },
    )?;
    Ok(())
}

/// Registers the WASI functions under both module names.
pub(crate) fn add(linker: &mut Linker<VmData>) -> wasmtime::Result<()> {
    add_module(linker, "wasi_snapshot_preview1")?;
    add_module(linker, "wasi_unstable")
}
