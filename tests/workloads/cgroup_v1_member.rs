//! A process in a cgroup v1 hierarchy's cgroup of the test's (arguments: the hierarchy's mount,
//! the cgroup's path in it, the hierarchy's controllers as /proc/self/cgroup names them, then a
//! settings file of the cgroup and the value it holds), with a thread in the cgroup's child `t`
//! (v1 places threads one by one, through `tasks`). Both join themselves before READY; after the
//! restore each checks its own line for the hierarchy, and the cgroup, made again by the restore,
//! holds the setting.

use stasis_tests::workload::{self, OrFail};
use std::sync::mpsc;

/// The hierarchy's line of `/proc/self/task/TID/cgroup` of thread `task`.
fn line_of(task: &str, controllers: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{task}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let (_, rest) = l.split_once(':')?;
        let (c, path) = rest.split_once(':')?;
        (c == controllers).then(|| path.to_string())
    })
}

fn main() {
    let mut s = workload::start();
    let args: Vec<String> = std::env::args().collect();
    let (mount, path, controllers, file, value) = (&args[1], &args[2], &args[3], &args[4], &args[5]);
    let dir = format!("{mount}{path}");
    std::fs::write(format!("{dir}/cgroup.procs"), std::process::id().to_string()).or_fail("joining the cgroup");
    let (to_thread, from_main) = mpsc::channel::<()>();
    let (to_main, from_thread) = mpsc::channel::<i32>();
    let thread_dir = format!("{dir}/t");
    let thread = std::thread::spawn(move || {
        let tid = stasis_tests::raw::raw_gettid();
        std::fs::write(format!("{thread_dir}/tasks"), tid.to_string()).or_fail("the thread joining t");
        to_main.send(tid).or_fail("telling the main thread");
        from_main.recv().or_fail("waiting for the end");
    });
    let tid = from_thread.recv().or_fail("the thread's tid").to_string();
    let want = (Some(path.clone()), Some(format!("{path}/t")));
    let main = std::process::id().to_string();
    let before = (line_of(&main, controllers), line_of(&tid, controllers));
    s.checker.same("the process's and the thread's cgroups before the dump", &want, &before);
    s.ready();
    s.wait_for_wake();
    let after = (line_of(&main, controllers), line_of(&tid, controllers));
    s.checker.same("the process's and the thread's cgroups after the restore", &want, &after);
    let setting = std::fs::read_to_string(format!("{dir}/{file}")).ok().map(|v| v.trim().to_string());
    s.checker.same(&format!("{file} of the cgroup"), &Some(value.clone()), &setting);
    to_thread.send(()).or_fail("ending the thread");
    thread.join().map_err(|_| "it panicked").or_fail("joining the thread");
    s.finish()
}
