//! An echo server for a client outside the tree: it listens on 127.0.0.1 (a port the kernel picks,
//! printed as `PORT N` before READY), accepts one connection and echoes every byte back while it
//! checks that the bytes are consecutive little-endian u64 sequence numbers from 0. When the client
//! shuts its side down it checks it got a whole number of them, closes, and prints the verdict. It
//! finishes by itself (no wake signal); it gives up after 300 s.
//!
//! A checkpoint and restore with `--tcp-established` in the middle of the stream must be invisible:
//! no reset, no byte lost, repeated or out of order, on either side.

use stasis_tests::workload::{self, OrFail};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(300);

fn main() {
    let mut s = workload::start();
    let l = TcpListener::bind("127.0.0.1:0").or_fail("bind");
    workload::say(&format!("PORT {}", l.local_addr().or_fail("addr").port()));
    s.ready();
    let (mut conn, _) = l.accept().or_fail("accept");
    conn.set_read_timeout(Some(LIMIT)).or_fail("timeout");
    let start = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    let mut partial: Vec<u8> = Vec::new();
    let mut next = 0u64;
    let mut total = 0u64;
    let c = &mut s.checker;
    loop {
        if start.elapsed() > LIMIT {
            c.check(false, || format!("still streaming after {LIMIT:?}"));
            break;
        }
        let n = match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            // A socket read with SO_RCVTIMEO set fails with EINTR when the process is stopped and
            // resumed (signal(7)); the freeze of a dump is such a stop.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                c.check(false, || format!("read after {total} bytes: {e}"));
                break;
            }
        };
        total += n as u64;
        if let Err(e) = conn.write_all(&buf[..n]) {
            c.check(false, || format!("echo after {total} bytes: {e}"));
            break;
        }
        partial.extend_from_slice(&buf[..n]);
        let whole = partial.len() / 8 * 8;
        for word in partial[..whole].chunks_exact(8) {
            let got = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            if got != next {
                c.check(false, || format!("sequence number {next} expected, got {got} (byte {})", next * 8));
                break;
            }
            next += 1;
        }
        if !c.passed() {
            break;
        }
        partial.drain(..whole);
    }
    c.same("bytes left over at the end", &0, &partial.len());
    c.note(format!("received and echoed {total} bytes ({next} sequence numbers)"));
    drop(conn);
    s.finish()
}
