//! The `stasis-tests` package: workload programs (the `[[bin]]`s under `workloads/`), the small
//! library they share (`workload`), the end-to-end harness the tests under `tests/` use
//! (`harness`), and `raw`, the one module holding unsafe code.

pub mod harness;
pub mod raw;
pub mod workload;
