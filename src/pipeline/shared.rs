//! Shared data: what every VM of the proxy sees (proxy-wasm shared data,
//! SPEC.md §proxy-wasm ABI), behind a trait the glue implements over
//! hostcalls and tests implement in memory.

/// A value in the host's shared data failed to change because another VM
/// changed it since it was read (or the host has no shared data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

/// Data every VM of the proxy shares (proxy-wasm shared data): Envoy runs
/// more VMs than workers, so state that must hold for the whole proxy —
/// a subset's health — lives here, changed by compare-and-swap.
pub trait SharedData {
    /// The value of `key` and its CAS token, if set.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Sets `key` if its CAS token is still `cas` (`None`: unconditionally,
    /// which also creates it).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch>;
}

/// A host without shared data: nothing is held, nothing can be set.
pub struct NoShared;

impl SharedData for NoShared {
    fn get(&self, _key: &str) -> Option<(Vec<u8>, u32)> {
        None
    }
    fn set(&self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<(), CasMismatch> {
        Err(CasMismatch)
    }
}

/// Shared data in memory, with the host's CAS rules (each set gives the
/// key a new token): for tests, where several "VMs" share one value.
#[derive(Debug, Default)]
pub struct MemShared {
    data: std::cell::RefCell<std::collections::BTreeMap<String, (Vec<u8>, u32)>>,
    next_cas: std::cell::Cell<u32>,
}

impl MemShared {
    /// Every value held, by key.
    pub fn values(&self) -> Vec<(String, Vec<u8>)> {
        self.data
            .borrow()
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }
}

impl SharedData for MemShared {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.data.borrow().get(key).cloned()
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasMismatch> {
        let mut data = self.data.borrow_mut();
        if let (Some(want), Some((_, held))) = (cas, data.get(key))
            && want != *held
        {
            return Err(CasMismatch);
        }
        let token = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(token);
        data.insert(key.to_owned(), (value.to_vec(), token));
        Ok(())
    }
}
