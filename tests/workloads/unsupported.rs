//! Holds something stasis does not support, so that the dump must fail cleanly and leave the
//! process untouched. Argument: `udp` (a bound UDP socket at fd 42 holding
//! bytes under UDP_CORK, sent to itself once uncorked after the wake), `cwd_removed` (a working
//! directory removed after the chdir; it must still be the cwd after the wake), `userfaultfd` (a
//! userfaultfd at fd 43, whose one-time `UFFDIO_API` handshake is done after the wake-up), `thread` (a second thread; supported now, so used as a checkpoint and
//! restore test) or `child` (a child process; supported too, likewise). After the
//! wake-up the held thing must still work.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

enum Held {
    Udp(UdpSocket),
    Userfault(std::os::fd::OwnedFd),
    Thread(std::thread::JoinHandle<u64>, Arc<AtomicBool>),
    Child(std::process::Child),
    Cwd(u64),
}

fn hold(mode: &str) -> Held {
    match mode {
        "udp" => {
            // Bytes held by UDP_CORK (to itself): what stasis cannot save of a UDP socket.
            let u = UdpSocket::bind("127.0.0.1:0").or_fail("bind");
            raw::set_opt_at(u.as_fd(), libc::SOL_UDP, libc::UDP_CORK, 1).or_fail("UDP_CORK");
            let me = u.local_addr().or_fail("address");
            u.send_to(b"pi", me).and_then(|_| u.send_to(b"ng", me)).or_fail("send");
            let at42 = raw::dup_to(u.as_fd(), 42).or_fail("dup to 42");
            Held::Udp(UdpSocket::from(at42))
        }
        "cwd_removed" => {
            let gone = workload::work_dir().join(format!("gone-{}", std::process::id()));
            std::fs::create_dir(&gone).or_fail("mkdir");
            std::env::set_current_dir(&gone).or_fail("chdir");
            std::fs::remove_dir(&gone).or_fail("rmdir");
            Held::Cwd(std::fs::metadata(".").or_fail("stat the cwd").ino())
        }
        "userfaultfd" => {
            let u = raw::userfaultfd().or_fail("userfaultfd");
            Held::Userfault(raw::dup_to(u.as_fd(), 43).or_fail("dup to 43"))
        }
        "thread" => {
            let stop = Arc::new(AtomicBool::new(false));
            let (tx, rx) = std::sync::mpsc::channel();
            let flag = stop.clone();
            let handle = std::thread::spawn(move || {
                let _ = tx.send(raw::raw_gettid());
                let mut ticks = 0u64;
                while !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                    ticks += 1;
                }
                ticks
            });
            workload::say(&format!("THREAD {}", rx.recv().or_fail("thread tid")));
            Held::Thread(handle, stop)
        }
        "child" => {
            let child = std::process::Command::new("sleep").arg("1000").spawn().or_fail("spawn sleep");
            workload::say(&format!("CHILD {}", child.id()));
            Held::Child(child)
        }
        other => Err::<Held, _>(other.to_string()).or_fail("unknown mode (udp|cwd_removed|userfaultfd|thread|child)"),
    }
}

fn verify(c: &mut Checker, held: Held) {
    match held {
        Held::Udp(u) => {
            let mut buf = [0u8; 8];
            u.set_read_timeout(Some(Duration::from_secs(30))).or_fail("timeout");
            let uncorked = raw::set_opt_at(u.as_fd(), libc::SOL_UDP, libc::UDP_CORK, 0);
            let echoed = uncorked.and_then(|()| u.recv(&mut buf));
            c.check(matches!(echoed, Ok(4)), || format!("udp socket at fd 42 no longer works: {echoed:?}"));
        }
        Held::Userfault(u) => {
            c.ok("UFFDIO_API on the userfaultfd at fd 43", raw::uffdio_api(u.as_fd()));
        }
        Held::Thread(handle, stop) => {
            c.check(!handle.is_finished(), || "the second thread is gone".into());
            stop.store(true, Ordering::SeqCst);
            let ticks = handle.join();
            c.check(matches!(ticks, Ok(t) if t > 0), || format!("thread result {ticks:?}"));
        }
        Held::Cwd(ino) => {
            let now = std::fs::metadata(".").map(|m| (m.ino(), m.nlink()));
            c.check(matches!(now, Ok((i, 0)) if i == ino), || format!("cwd (inode, links) {now:?}, want ({ino}, 0)"));
        }
        Held::Child(mut child) => {
            let state = child.try_wait();
            c.check(matches!(state, Ok(None)), || format!("child is no longer running: {state:?}"));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn main() {
    let mut s = workload::start();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let held = hold(&mode);
    s.ready();
    s.wait_for_wake();
    verify(&mut s.checker, held);
    s.finish()
}
