//! UDP and UDP-Lite on loopback: bound, connected, dual-stack and shut-down sockets with their
//! options, datagrams queued with their sources (one from a socket closed since, one that arrived
//! before its receiver connected), shown by `stasis show`; and the refusal of a socket holding
//! corked data. Ports are the kernel's picks; traffic stays on 127.0.0.1 and ::1.

use stasis_tests::harness::Case;
use stasis_tests::workload;

#[test]
fn udp_sockets_with_queued_datagrams() {
    let case = Case::new("udp_sockets", workload!("udp_sockets"));
    let Some(mut run) = case.start() else { return };
    let before = case.settled_snapshot(run.pid());
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let shown = case.stasis().command().arg("show").arg(&images).output().expect("stasis show");
    let text = String::from_utf8_lossy(&shown.stdout);
    for needle in
        ["udp6", "udplite", "connected", "receive queue 3 datagrams", "from [::ffff:127.0.0.1]", "shutdown wr"]
    {
        if !text.contains(needle) {
            case.fail(&format!("stasis show does not print {needle:?}:\n{text}"));
        }
    }
    let mut restored = case.restore_ok(&images, run.pid(), &[]);
    case.compare(&before, restored.pid());
    case.finish(&mut restored);
}

/// Bytes held by UDP_CORK cannot be read back: the dump fails naming the socket and the option,
/// and the workload runs on (it uncorks after the wake and its datagram arrives whole).
#[test]
fn a_corked_udp_socket_is_refused() {
    let case = Case::new("udp_cork", workload!("udp_sockets").arg("cork"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, "dump of a corked UDP socket", &[&["udp socket"], &["not sent"], &["UDP_CORK"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}
