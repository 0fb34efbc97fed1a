//! Test-only probe module.
