//! A terminal emulator and a shell session on a pty, with job control. Argument: how many free pty
//! indices to leave below its own (see `raw::high_pty`), 0 by default.
//!
//! The root (the "terminal") opens a pty master with custom settings (no echo, erase ^H, 9600
//! baud), a window size, and packet mode. Its child C (the "shell") leads a new session whose
//! controlling terminal is the slave; C forks J, a job in the foreground group, and B, a job in a
//! background group. Before the dump J writes a line to the terminal (queued on the master) and the
//! root writes a line and a half to the master (queued on the slave); J also has `/dev/tty` open.
//!
//! Two more pairs: one locked, one whose slave was opened and closed.
//!
//! After the restore: the two other pairs are locked and reading EIO again; the slave has its index and name, the settings, window size and packet mode
//! are kept, J is the foreground group; J reads the line and, once the root completes it, the
//! half line; the root reads J's line and one J writes through `/dev/tty`; B's read and tcsetpgrp
//! from the background get SIGTTIN and SIGTTOU; the root types ^Z, J stops, C sees it, takes the
//! foreground back, gives it to J again and continues it; J reads one more line and ends.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail, TreeParent};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

const ROWS: u16 = 33;
const COLS: u16 = 111;
const ERASE: u8 = 0x08;
const SUSP: u8 = 0x1a;
const WAIT: Duration = Duration::from_secs(20);

/// The settings the checks compare: flags, control characters, speeds.
type Key = (u32, u32, u32, u32, Vec<u8>, u32, u32);

fn key(t: &libc::termios) -> Key {
    (t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_cc.to_vec(), t.c_ispeed, t.c_ospeed)
}

fn main() {
    let mut s = workload::start();
    let below = workload::arg(1, 0);
    let mut ptys = raw::high_ptys(below, 3).or_fail("open ptys");
    let (m, name) = ptys.remove(0);
    // Two more pairs: one locked again, one whose slave was opened and closed (its master reads EIO).
    let (locked, _) = ptys.remove(0);
    raw::set_pty_locked(locked.as_fd(), true).or_fail("lock a pty");
    let (hung_up, hung_name) = ptys.remove(0);
    drop(raw::open_terminal_noctty(&hung_name).or_fail("open a slave"));
    // The errno of a read, if one would not block.
    let eio = |m: &OwnedFd| {
        raw::poll_readable(m.as_fd(), 0).ok()?.then_some(())?;
        std::fs::File::from(m.try_clone().ok()?).read(&mut [0u8; 8]).err()?.raw_os_error()
    };
    ck_before(eio(&hung_up));
    let mut t = raw::tcgetattr(m.as_fd()).or_fail("tcgetattr");
    t.c_lflag &= !libc::ECHO;
    t.c_cc[libc::VERASE] = ERASE;
    raw::set_speed(&mut t, libc::B9600);
    raw::tcsetattr(m.as_fd(), &t).or_fail("tcsetattr");
    let want = key(&raw::tcgetattr(m.as_fd()).or_fail("tcgetattr"));
    raw::set_winsize(m.as_fd(), ROWS, COLS).or_fail("window size");
    let index = raw::pty_index(m.as_fd()).or_fail("TIOCGPTN");
    println!("pty {name}");
    let path = name.clone();
    let c = workload::fork_child("C", move |up| shell(up, &path));
    let line = c.line().or_fail("ready line of C");
    let pids: Vec<i32> = line.split_whitespace().skip(1).filter_map(|p| p.parse().ok()).collect();
    let j = match pids[..] {
        [j, _b] => j,
        _ => Err::<i32, _>(format!("C said {line:?}")).or_fail("ready line of C"),
    };
    raw::set_packet_mode(m.as_fd(), true).or_fail("packet mode");
    (&File(&m)).write_all(b"hello\npart").or_fail("write to the master");
    s.ready();
    s.wait_for_wake();

    let ck = &mut s.checker;
    ck.same("pty index", &index, &raw::pty_index(m.as_fd()).unwrap_or(-1));
    ck.same("a locked pty", &true, &raw::pty_locked(locked.as_fd()).unwrap_or(false));
    ck.same("a pty whose slave was closed reads", &Some(libc::EIO), &eio(&hung_up));
    ck.same("termios", &want, &raw::tcgetattr(m.as_fd()).map(|t| key(&t)).unwrap_or_default());
    ck.same("window size", &(ROWS, COLS), &raw::winsize(m.as_fd()).unwrap_or_default());
    ck.same("packet mode", &true, &raw::packet_mode(m.as_fd()).unwrap_or(false));
    ck.same("foreground group (on the master)", &j, &raw::foreground(m.as_fd()).unwrap_or(-1));
    ck.ok("go to C", c.send("go\n"));
    expect_output(ck, m.as_fd(), "J's line written before the dump", "from-child\r\n");
    ck.ok("write to the master", (&File(&m)).write_all(b"ial\n"));
    expect_output(ck, m.as_fd(), "J's line through /dev/tty", "via-tty\r\n");
    c.expect_line(ck, "J is reading again", "waiting");
    ck.ok("type ^Z", (&File(&m)).write_all(&[SUSP]));
    c.expect_line(ck, "C saw J stop", &format!("stopped {}", libc::SIGTSTP));
    ck.same("foreground group once C took it back", &c.pid, &raw::foreground(m.as_fd()).unwrap_or(-1));
    ck.ok("cont to C", c.send("cont\n"));
    c.expect_line(ck, "C continued J", "continued");
    ck.ok("write to the master", (&File(&m)).write_all(b"bye\n"));
    c.collect(ck);
    s.finish()
}

/// Before the dump, a closed slave makes its master read EIO.
fn ck_before(got: Option<i32>) {
    if got != Some(libc::EIO) {
        Err::<(), _>(format!("{got:?}")).or_fail("read a master whose slave was closed");
    }
}

/// `Read`/`Write` on a borrowed fd.
struct File<'a>(&'a OwnedFd);

impl Write for &File<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&std::fs::File::from(self.0.try_clone()?)).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads the master (packet mode: a leading 0 byte before data, a status byte alone otherwise)
/// until `want` has come.
fn expect_output(ck: &mut Checker, m: BorrowedFd<'_>, what: &str, want: &str) {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut file = std::fs::File::from(m.try_clone_to_owned().or_fail("dup the master"));
    while !String::from_utf8_lossy(&got).contains(want) {
        let left = deadline.saturating_duration_since(Instant::now()).as_millis() as i32;
        if left == 0 || !raw::poll_readable(m, left).unwrap_or(false) {
            break;
        }
        let mut buf = [0u8; 512];
        match file.read(&mut buf) {
            Ok(n) if n > 1 && buf[0] == 0 => got.extend_from_slice(&buf[1..n]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    ck.check(text.contains(want), || format!("{what}: want {want:?} from the master, got {text:?}"));
}

/// C: leads a session on the slave, runs J (foreground) and B (background), and does the job
/// control the root asks for.
fn shell(up: TreeParent, name: &str) -> i32 {
    let mut ck = Checker::default();
    raw::setsid().or_fail("setsid");
    let tty = raw::open_terminal(name).or_fail("open the slave");
    let n = name.to_owned();
    let j = workload::fork_child("J", move |up| job(up, &n));
    let n = name.to_owned();
    let b = workload::fork_child("B", move |up| background(up, &n));
    // As a shell does: its own tcsetpgrp calls from the background must not stop it.
    raw::sigprocmask(libc::SIG_BLOCK, raw::SigSet::of(&[libc::SIGTTOU])).or_fail("block SIGTTOU");
    for kid in [&j, &b] {
        let _ = raw::setpgid(kid.pid, kid.pid);
    }
    raw::set_foreground(tty.as_fd(), j.pid).or_fail("give J the foreground");
    j.line().or_fail("ready line of J");
    b.line().or_fail("ready line of B");
    up.send(&format!("ready {} {}\n", j.pid, b.pid)).or_fail("ready line");
    up.line().or_fail("go line");

    ck.same("foreground group", &j.pid, &raw::foreground(tty.as_fd()).unwrap_or(-1));
    ck.same("ttyname", &name.to_owned(), &raw::ttyname(tty.as_fd()).unwrap_or_default());
    ck.same("session", &Ok(raw::raw_getpid()), &raw::getsid(0).map_err(|e| e.to_string()));
    for kid in [&j, &b] {
        ck.ok("go to a job", kid.send("go\n"));
    }
    j.expect_line(&mut ck, "J reads again", "waiting");
    ck.ok("waiting to the root", up.send("waiting\n"));
    let sig = raw::wait_stopped(j.pid).unwrap_or(-1);
    ck.same("foreground group when J stopped", &j.pid, &raw::foreground(tty.as_fd()).unwrap_or(-1));
    ck.ok("take the foreground back", raw::set_foreground(tty.as_fd(), raw::raw_getpid()));
    ck.ok("stopped to the root", up.send(&format!("stopped {sig}\n")));
    ck.check(up.line().is_ok_and(|l| l == "cont"), || "no cont line from the root".into());
    ck.ok("give J the foreground again", raw::set_foreground(tty.as_fd(), j.pid));
    ck.ok("SIGCONT to J", raw::kill(-j.pid, libc::SIGCONT));
    ck.ok("continued to the root", up.send("continued\n"));
    j.collect(&mut ck);
    b.collect(&mut ck);
    up.report(ck)
}

/// J: the foreground job. Writes a line before the dump, reads the root's after it.
fn job(up: TreeParent, name: &str) -> i32 {
    let mut ck = Checker::default();
    let _ = raw::setpgid(0, 0);
    let tty = raw::open_terminal(name).or_fail("open the slave");
    let dev_tty = raw::open_terminal("/dev/tty").or_fail("open /dev/tty");
    let before = raw::ttyname(tty.as_fd()).or_fail("ttyname");
    let mut f = std::fs::File::from(tty.try_clone().or_fail("dup"));
    f.write_all(b"from-child\n").or_fail("write to the terminal");
    up.send("ready\n").or_fail("ready line");
    up.line().or_fail("go line");

    ck.same("ttyname", &before, &raw::ttyname(tty.as_fd()).unwrap_or_default());
    ck.same("ttyname is the slave", &name.to_owned(), &before);
    let t = raw::tcgetattr(tty.as_fd());
    ck.same(
        "settings seen on the slave (echo, erase, speed)",
        &(0, ERASE, libc::B9600),
        &t.map(|t| (t.c_lflag & libc::ECHO, t.c_cc[libc::VERASE], t.c_ospeed)).unwrap_or_default(),
    );
    ck.same("window size on the slave", &(ROWS, COLS), &raw::winsize(tty.as_fd()).unwrap_or_default());
    ck.same("foreground group", &raw::getpgid(0).unwrap_or(0), &raw::foreground(tty.as_fd()).unwrap_or(-1));
    for want in ["hello\n", "partial\n"] {
        let mut buf = [0u8; 64];
        let got = f.read(&mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
        ck.same("a line from the root", &want.to_owned(), &got.unwrap_or_else(|e| e.to_string()));
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dev_tty)));
    ck.same(
        "the /dev/tty fd's link",
        &"/dev/tty".to_owned(),
        &link.map(|l| l.display().to_string()).unwrap_or_default(),
    );
    let mut t = std::fs::File::from(dev_tty);
    ck.ok("write through /dev/tty", t.write_all(b"via-tty\n"));
    ck.ok("waiting line", up.send("waiting\n"));
    // Stopped by ^Z in this read, continued by C; then the root's last line comes.
    let mut buf = [0u8; 64];
    let got = f.read(&mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    ck.same("the line after ^Z and SIGCONT", &"bye\n".to_owned(), &got.unwrap_or_else(|e| e.to_string()));
    up.report(ck)
}

/// B: a background job; reading the terminal and taking its foreground get SIGTTIN and SIGTTOU.
fn background(up: TreeParent, name: &str) -> i32 {
    let mut ck = Checker::default();
    let _ = raw::setpgid(0, 0);
    let tty = raw::open_terminal(name).or_fail("open the slave");
    up.send("ready\n").or_fail("ready line");
    up.line().or_fail("go line");

    for sig in [libc::SIGTTIN, libc::SIGTTOU] {
        ck.ok("handler", raw::set_recording_handler(sig, 0, raw::SigSet::empty()));
    }
    let mut buf = [0u8; 8];
    let read = std::fs::File::from(tty.try_clone().or_fail("dup")).read(&mut buf);
    ck.same("read from the background", &Some(libc::EINTR), &read.err().and_then(|e| e.raw_os_error()));
    ck.same("SIGTTIN", &1, &raw::handler_record(libc::SIGTTIN).count);
    let set = raw::set_foreground(tty.as_fd(), raw::getpgid(0).unwrap_or(0));
    ck.same("tcsetpgrp from the background", &Some(libc::EINTR), &set.err().and_then(|e| e.raw_os_error()));
    ck.same("SIGTTOU", &1, &raw::handler_record(libc::SIGTTOU).count);
    up.report(ck)
}
