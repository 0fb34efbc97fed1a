//! The size of a VM's linear memory, for tests that look for heap growth:
//! a filter that leaks grows its memory (`memory.grow`, 64 KiB pages) and
//! never gives it back, so a size that stays put over many requests after a
//! warm-up means the filter's heap stopped growing.

use super::Chain;

impl Chain {
    /// Bytes of linear memory (the module's exported `memory`) of the VM
    /// that runs filter `filter` (chain position) on worker `worker`;
    /// `None` when there is no such VM, it exports no memory, or the host
    /// is busy (called from inside an upstream closure).
    pub fn memory_size(&self, filter: usize, worker: usize) -> Option<usize> {
        let mut st = self.inner.try_borrow_mut().ok()?;
        let index = *st.chains.get(self.id)?.vms.get(worker)?.get(filter)?;
        let vm = st.vms.get_mut(index)?;
        let instance = vm.instance;
        let memory = instance.get_memory(&mut vm.store, "memory")?;
        Some(memory.data_size(&vm.store))
    }
}
