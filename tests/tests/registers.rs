//! Register state: general purpose, x87, MXCSR, vector registers; segment bases, TLS and rseq.

use stasis_tests::harness::checkpoint_restore;
use stasis_tests::workload;

#[test]
fn gp_fpu_and_vector_registers() {
    checkpoint_restore("regs", workload!("regs"));
}

#[test]
fn thread_locals_segment_bases_and_rseq() {
    checkpoint_restore("tls_rseq", workload!("tls_rseq"));
}
