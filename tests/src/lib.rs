//! Shared helpers for the workload programs.
