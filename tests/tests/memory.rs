//! Memory round trips: every private mapping kind, a 256 MiB heap, a statically linked C program;
//! the state of areas beyond their bytes (madvise, locks, mapping flags, the most access of shared
//! file mappings, guard regions, wipe-on-fork and droppable areas across a fork), the mm-wide
//! state (mlockall, membarrier, KSM merge-any). Huge pages: tests/hugetlb.rs.

use stasis_tests::harness::{checkpoint_restore, skip, standalone, static_c_workload, Case};
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

#[test]
fn madvise_locks_and_mapping_flags() {
    checkpoint_restore("mem_flags_advice", workload!("mem_flags").arg("advice"));
}

#[test]
fn shared_file_mappings_keep_their_maximum_access() {
    checkpoint_restore("mem_flags_shared_prot", workload!("mem_flags").arg("shared-prot"));
}

#[test]
fn wipeonfork_and_droppable_areas_in_a_parent_and_its_child() {
    checkpoint_restore("mem_flags_tree", workload!("mem_flags").arg("tree"));
}

#[test]
fn guard_regions_in_a_parent_and_its_child() {
    checkpoint_restore("mem_flags_guard", workload!("mem_flags").arg("guard"));
}

#[test]
fn mlockall_membarrier_and_ksm_merge_any() {
    checkpoint_restore("mem_flags_mm_wide", workload!("mem_flags").arg("mm-wide"));
}

#[test]
fn a_process_that_unmapped_its_vdso() {
    checkpoint_restore("mem_flags_no_vdso", workload!("mem_flags").arg("no-vdso"));
}

#[test]
fn sealed_areas_in_a_parent_and_its_child() {
    checkpoint_restore("mem_flags_sealed", workload!("mem_flags").arg("sealed"));
}

/// The mem_flags cases without stasis: an end-to-end failure then points at stasis.
#[test]
fn standalone_mem_flags() {
    for case in ["advice", "shared-prot", "tree", "guard", "mm-wide", "no-vdso", "sealed"] {
        standalone(&format!("standalone_mem_flags_{case}"), workload!("mem_flags").arg(case));
    }
}
