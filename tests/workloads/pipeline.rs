//! A shell pipeline `producer | filter | consumer` with data sitting in both pipes at the
//! checkpoint. The root, a session leader like an interactive shell, makes the pipes and the three
//! children as a shell does (each child holds only its own ends; the three form one process group,
//! led by the producer, a job). Before READY: the producer has written lines 0..200 into pipe 1;
//! the filter has read lines 0..50 from it and written them, upper-cased, into pipe 2; the consumer
//! has read nothing. So pipe 1 holds lines 50..200 and pipe 2 lines 0..50. After the wake the
//! producer writes lines 200..400 and exits, the filter upper-cases everything up to its EOF, and
//! the consumer checks that it got exactly lines 0..400, upper-cased, in order.

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail, TreeChild, TreeParent, WAKE};
use std::io::{BufRead, BufReader, PipeReader, PipeWriter, Write};

const BEFORE: usize = 200;
const FILTERED_BEFORE: usize = 50;
const ALL: usize = 400;

fn line(i: usize) -> String {
    format!("line {i:05} of the pipeline, with some text to fill the pipe\n")
}

fn producer(link: TreeParent, mut out: PipeWriter) -> i32 {
    let mut s = workload::start();
    let text: String = (0..BEFORE).map(line).collect();
    out.write_all(text.as_bytes()).or_fail("producer: write");
    link.send("ready\n").or_fail("ready");
    s.wait_for_wake();
    let rest: String = (BEFORE..ALL).map(line).collect();
    s.checker.ok("producer: write after the wake", out.write_all(rest.as_bytes()));
    drop(out);
    link.report(s.into_checker())
}

fn filter(link: TreeParent, input: PipeReader, mut out: PipeWriter) -> i32 {
    let mut s = workload::start();
    let mut input = BufReader::new(input);
    let mut buf = String::new();
    for _ in 0..FILTERED_BEFORE {
        buf.clear();
        input.read_line(&mut buf).or_fail("filter: read");
        out.write_all(buf.to_uppercase().as_bytes()).or_fail("filter: write");
    }
    link.send("ready\n").or_fail("ready");
    s.wait_for_wake();
    loop {
        buf.clear();
        match input.read_line(&mut buf) {
            Ok(0) => break,
            Ok(_) => {
                if let Err(e) = out.write_all(buf.to_uppercase().as_bytes()) {
                    s.checker.check(false, || format!("filter: write after the wake: {e}"));
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                s.checker.check(false, || format!("filter: read after the wake: {e}"));
                break;
            }
        }
    }
    drop(out);
    link.report(s.into_checker())
}

fn consumer(link: TreeParent, input: PipeReader) -> i32 {
    let mut s = workload::start();
    link.send("ready\n").or_fail("ready");
    s.wait_for_wake();
    let mut got = Vec::new();
    for l in BufReader::new(input).lines() {
        match l {
            Ok(l) => got.push(l),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                s.checker.check(false, || format!("consumer: read: {e}"));
                break;
            }
        }
    }
    let want: Vec<String> = (0..ALL).map(|i| line(i).trim_end().to_uppercase()).collect();
    let first_bad = want.iter().zip(&got).position(|(w, g)| w != g);
    s.checker.same("consumer: lines received", &ALL, &got.len());
    s.checker.check(first_bad.is_none(), || {
        let i = first_bad.unwrap_or(0);
        format!("consumer: line {i}: want {:?}, got {:?}", want[i], got[i])
    });
    link.report(s.into_checker())
}

fn main() {
    let mut s = workload::start();
    if raw::getsid(0).or_fail("getsid") != s.pid() {
        raw::setsid().or_fail("setsid");
    }
    let (p1_r, p1_w) = std::io::pipe().or_fail("pipe 1");
    let producer = workload::fork_child("producer", move |link| producer(link, p1_w));
    raw::setpgid(producer.pid, producer.pid).or_fail("setpgid producer");
    let (p2_r, p2_w) = std::io::pipe().or_fail("pipe 2");
    let filter = workload::fork_child("filter", move |link| filter(link, p1_r, p2_w));
    raw::setpgid(filter.pid, producer.pid).or_fail("setpgid filter");
    let consumer = workload::fork_child("consumer", move |link| consumer(link, p2_r));
    raw::setpgid(consumer.pid, producer.pid).or_fail("setpgid consumer");
    let kids: Vec<TreeChild> = vec![producer, filter, consumer];
    for k in &kids {
        k.expect_line(&mut s.checker, "ready line", "ready");
    }
    s.ready();
    s.wait_for_wake();
    for k in &kids {
        s.checker.ok(&format!("wake {}", k.name), raw::kill(k.pid, WAKE));
    }
    for k in kids {
        k.collect(&mut s.checker);
    }
    s.finish()
}
