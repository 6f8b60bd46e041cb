//! A TCP listener on 127.0.0.1 (the kernel's port) with a connection waiting to be accepted: the
//! workload prints `PORT <port>` and READY, and the test connects to it from outside the tree and
//! writes `queued`, so that the connection is in the listener's accept queue when the dump comes
//! (which refuses it: a restore cannot put a connection back in an accept queue).
//!
//! After the wake it accepts the connection, reads `queued` and answers `accepted <pid>`: the
//! connection the client believed established was kept through the failed dump.

use stasis_tests::workload::{self, OrFail};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

fn main() {
    let mut s = workload::start();
    let listener = TcpListener::bind("127.0.0.1:0").or_fail("listen");
    workload::say(&format!("PORT {}", listener.local_addr().or_fail("port").port()));
    s.ready();
    s.wait_for_wake();
    let pid = s.pid();
    let c = &mut s.checker;
    if let Some((conn, from)) = c.ok("accept", listener.accept()) {
        let _ = conn.set_read_timeout(Some(workload::TREE_TIMEOUT));
        let mut line = String::new();
        let read = BufReader::new(&conn).read_line(&mut line);
        c.check(read.is_ok() && line == "queued\n", || format!("from {from}: read {read:?} {line:?}"));
        c.ok("answer", (&conn).write_all(format!("accepted {pid}\n").as_bytes()));
    }
    s.finish()
}
