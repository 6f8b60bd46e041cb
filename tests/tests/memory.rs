//! Memory round trips: every private mapping kind, a 256 MiB heap, a statically linked C program.

use stasis_tests::harness::{checkpoint_restore, skip, static_c_workload, Case};
use stasis_tests::workload;

#[test]
fn private_memory_of_every_kind() {
    checkpoint_restore("mem_basic", workload!("mem_basic"));
}

#[test]
fn heap_of_256_mib() {
    checkpoint_restore("mem_big", workload!("mem_big").arg("256"));
}

#[test]
fn statically_linked_c_program() {
    let mut case = Case::new("static_mem", workload!("basic"));
    match static_c_workload(&case.dir, "static_mem") {
        Ok(w) => case.workload = w,
        Err(reason) => return skip(&reason),
    }
    case.checkpoint_restore(&[], &[]);
}
