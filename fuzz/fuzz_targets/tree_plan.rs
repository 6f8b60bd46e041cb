//! Fuzz the restore plan (`stasis_engine::tree::plan`) with process trees decoded from arbitrary
//! protobuf bytes, and check what it promises for the trees it accepts: every process is created
//! exactly once, by a process planned before it, and the root by nobody.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use stasis_engine::tree::{plan, Creation};
use stasis_image::model::PsTree;

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = PsTree::decode(data) else {
        return;
    };
    let Ok(plan) = plan(&tree) else {
        return;
    };
    let mut made = vec![0usize; plan.procs.len()];
    for (parent, p) in plan.procs.iter().enumerate() {
        for c in &p.creates {
            let kids: Vec<usize> = match c {
                Creation::Child { idx, .. } => vec![*idx],
                Creation::Session { members, .. } => members.iter().map(|m| m.0).collect(),
                Creation::GroupHelper { .. } | Creation::Zombie { .. } => Vec::new(),
            };
            for k in kids {
                assert!(k > parent, "process {k} created by {parent}, planned after it");
                made[k] += 1;
            }
        }
        let built: Vec<usize> = p.builds.iter().map(|b| b.0).collect();
        assert!(built.iter().all(|&k| plan.procs[k].pid == p.builds.iter().find(|b| b.0 == k).unwrap().1));
    }
    assert_eq!(made[0], 0, "the root is created by a process of the image");
    assert!(made[1..].iter().all(|&n| n == 1), "a process not created exactly once: {made:?}");
    let zombies: usize = plan.procs.iter().flat_map(|p| &p.creates).filter(|c| matches!(c, Creation::Zombie { .. })).count();
    assert_eq!(zombies, plan.zombies.len());
});
