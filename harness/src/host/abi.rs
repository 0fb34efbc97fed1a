//! Status codes and guest-memory helpers shared by all hostcalls.
//!
//! A bad guest pointer returns `InvalidMemoryAccess`, never panics the host
//! (proxy-wasm-cpp-host `src/exports.cc`). Data handed to the guest is written
//! into memory obtained from its `malloc` or `proxy_on_memory_allocate` export
//! (`src/wasm.cc` `getFunctions`); empty data is returned as a null pointer and
//! size 0 (`WasmBase::copyToPointerSize`).

use wasmtime::{Caller, Extern, Memory};

use super::context::VmData;

/// proxy-wasm `WasmResult` (proxy-wasm-cpp-host `include/proxy-wasm/wasm_api_impl.h`,
/// spec `abi-versions/v0.2.1/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// 0
    Ok = 0,
    /// 1
    NotFound = 1,
    /// 2
    BadArgument = 2,
    /// 3
    SerializationFailure = 3,
    /// 4
    ParseFailure = 4,
    /// 6
    InvalidMemoryAccess = 6,
    /// 7
    Empty = 7,
    /// 8
    CasMismatch = 8,
    /// 10
    InternalFailure = 10,
    /// 12
    Unimplemented = 12,
}

impl Status {
    /// The ABI number.
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// Result of a hostcall body: a status, or a trap (e.g. the guest allocator trapped).
pub(crate) type HostResult = wasmtime::Result<u32>;

/// Converts an inner `Result<(), Status>` into the ABI return code.
pub(crate) fn code(r: Result<(), Status>) -> u32 {
    match r {
        Ok(()) => 0,
        Err(s) => s.code(),
    }
}

fn memory(caller: &mut Caller<'_, VmData>) -> Result<Memory, Status> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(Status::InvalidMemoryAccess),
    }
}

/// Reads `len` bytes at `ptr`.
pub(crate) fn read(caller: &mut Caller<'_, VmData>, ptr: u32, len: u32) -> Result<Vec<u8>, Status> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let mem = memory(caller)?;
    let start = usize::try_from(ptr).map_err(|_| Status::InvalidMemoryAccess)?;
    let len = usize::try_from(len).map_err(|_| Status::InvalidMemoryAccess)?;
    let end = start.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
    mem.data(&*caller)
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess)
}

/// Writes `data` at `ptr`.
pub(crate) fn write(caller: &mut Caller<'_, VmData>, ptr: u32, data: &[u8]) -> Result<(), Status> {
    let mem = memory(caller)?;
    let start = usize::try_from(ptr).map_err(|_| Status::InvalidMemoryAccess)?;
    let end = start
        .checked_add(data.len())
        .ok_or(Status::InvalidMemoryAccess)?;
    let slot = mem
        .data_mut(&mut *caller)
        .get_mut(start..end)
        .ok_or(Status::InvalidMemoryAccess)?;
    slot.copy_from_slice(data);
    Ok(())
}

/// Writes a little-endian u32.
pub(crate) fn write_u32(caller: &mut Caller<'_, VmData>, ptr: u32, v: u32) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Writes a little-endian u64.
pub(crate) fn write_u64(caller: &mut Caller<'_, VmData>, ptr: u32, v: u64) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Reads a little-endian u32.
pub(crate) fn read_u32(caller: &mut Caller<'_, VmData>, ptr: u32) -> Result<u32, Status> {
    let b = read(caller, ptr, 4)?;
    let arr: [u8; 4] = b.try_into().map_err(|_| Status::InvalidMemoryAccess)?;
    Ok(u32::from_le_bytes(arr))
}

/// Allocates guest memory for `data` (calling the guest allocator), copies it and
/// stores pointer and size at `ptr_ptr` / `size_ptr`. The outer `Err` is a trap.
pub(crate) fn copy_out(
    caller: &mut Caller<'_, VmData>,
    data: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> wasmtime::Result<Result<(), Status>> {
    let Ok(size) = u32::try_from(data.len()) else {
        return Ok(Err(Status::InvalidMemoryAccess));
    };
    let mut addr = 0u32;
    if size > 0 {
        let alloc = caller
            .get_export("malloc")
            .or_else(|| caller.get_export("proxy_on_memory_allocate"))
            .and_then(Extern::into_func);
        let Some(alloc) = alloc else {
            return Ok(Err(Status::InvalidMemoryAccess));
        };
        let Ok(alloc) = alloc.typed::<u32, u32>(&*caller) else {
            return Ok(Err(Status::InvalidMemoryAccess));
        };
        addr = alloc.call(&mut *caller, size)?;
        if addr == 0 {
            return Ok(Err(Status::InvalidMemoryAccess));
        }
        if let Err(s) = write(caller, addr, data) {
            return Ok(Err(s));
        }
    }
    Ok(write_u32(caller, ptr_ptr, addr).and_then(|()| write_u32(caller, size_ptr, size)))
}

/// `copy_out` returning the ABI code.
pub(crate) fn copy_out_code(
    caller: &mut Caller<'_, VmData>,
    data: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> HostResult {
    Ok(code(copy_out(caller, data, ptr_ptr, size_ptr)?))
}

/// Returns the status code from a hostcall body when `$e` is `Err(Status)`.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(s) => return Ok($crate::host::abi::Status::code(s)),
        }
    };
}
pub(crate) use tri;
