//! UNIX domain sockets: connected pairs and listeners with their queues and pending connections,
//! datagrams with their boundaries and senders, files and credentials in flight, a socket shared by
//! two processes, options and shutdown states, and a peer outside the tree (refused, or reconnected
//! with `--ext-unix-sk`). The `standalone_*` tests run the workloads without stasis.

use stasis_tests::harness::{checkpoint_restore, standalone, Case};
use stasis_tests::workload;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

#[test]
fn stream_seqpacket_and_listeners() {
    checkpoint_restore("unix_conn", workload!("unix_conn"));
}

/// A path name held by a live socket at restore fails the restore by name (the socket file is not
/// taken from it); once only a stale socket file is left there, the restore replaces it.
#[test]
fn a_path_held_by_a_live_socket_fails_the_restore() {
    let case = Case::new("unix_conn_live_path", workload!("unix_conn"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let path = case.dir.work().join("listener.sock");
    let _ = std::fs::remove_file(&path);
    let holder = UnixListener::bind(&path).expect("bind the listener's path");
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore onto a path a live socket holds", &[&["live socket"], &["listener.sock"]]);
    case.expect_no_process_left(run.pid());
    drop(holder);
    let mut restored = case.restore_ok(&images, run.pid(), &[]);
    case.finish(&mut restored);
}

/// Connections waiting on listeners whose clients closed before the dump are accepted after the
/// restore and read EOF, in their place in the queue.
#[test]
fn pending_connections_from_closed_clients() {
    checkpoint_restore("unix_closed_pending", workload!("unix_closed_pending"));
}

#[test]
fn datagrams() {
    checkpoint_restore("unix_dgram", workload!("unix_dgram"));
}

#[test]
fn files_and_credentials_in_flight_and_a_shared_socket() {
    checkpoint_restore("unix_scm", workload!("unix_scm"));
}

#[test]
fn server_and_clients_in_different_processes() {
    let case = Case::new("unix_tree", workload!("unix_tree"));
    case.checkpoint_restore(&[], &[]);
}

#[test]
fn options_shutdown_and_a_closed_peer() {
    checkpoint_restore("unix_opts", workload!("unix_opts"));
}

/// An echo server outside the tree, on a thread of the test, listening at a fresh path.
fn echo_server(label: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("stasis-{label}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind the echo server");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    path
}

#[test]
fn external_peer_is_refused() {
    let path = echo_server("ext-refused");
    let case = Case::new("unix_ext_refused", workload!("unix_ext").arg(&path));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    let pid = run.pid().to_string();
    case.expect_failed(
        &r,
        "dump of a socket connected outside the tree",
        &[&[&format!("pid {pid}")], &["fd 3"], &["socket:["], &["outside"], &["--ext-unix-sk"]],
    );
    case.expect_untouched(&run);
    case.finish(&mut run);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn external_peer_with_ext_unix_sk() {
    let path = echo_server("ext-allowed");
    let case = Case::new("unix_ext_allowed", workload!("unix_ext").arg(&path));
    case.checkpoint_restore(&["--ext-unix-sk"], &["--ext-unix-sk"]);
    let _ = std::fs::remove_file(&path);
}

/// `--ext-unix-sk=INODE` allows that socket only: another inode fails the dump, the socket's own
/// (read from `/proc/PID/fd/3`) lets it through and the restore connects it again.
#[test]
fn external_peer_named_by_inode() {
    let path = echo_server("ext-inode");
    let case = Case::new("unix_ext_inode", workload!("unix_ext").arg(&path));
    let Some(mut run) = case.start() else { return };
    let link = std::fs::read_link(format!("/proc/{}/fd/3", run.pid())).expect("fd 3 of the workload");
    let inode = link.to_string_lossy().trim_start_matches("socket:[").trim_end_matches(']').to_string();
    let images = case.images("images");
    let r = case.dump(&run, &images, &["--ext-unix-sk=1"], &[]);
    case.expect_failed(&r, "dump allowing another socket", &[&["fd 3"], &["outside"]]);
    case.expect_untouched(&run);
    case.dump_ok(&run, &images, &[&format!("--ext-unix-sk={inode}")]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, run.pid(), &["--ext-unix-sk"]);
    case.finish(&mut restored);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn external_peer_needs_ext_unix_sk_at_restore_too() {
    let path = echo_server("ext-restore");
    let case = Case::new("unix_ext_restore", workload!("unix_ext").arg(&path));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--ext-unix-sk"]);
    case.reap_dumped(&mut run);
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore without --ext-unix-sk", &[&["--ext-unix-sk"], &["socket:["]]);
    case.expect_no_process_left(run.pid());
    let _ = std::fs::remove_file(&path);
}

/// Starts `unix_refuse <mode>`, expects the dump to fail naming `needles`, the process untouched,
/// and its PASS when woken.
fn refused(test: &str, mode: &str, needles: &[&[&str]]) {
    let case = Case::new(test, workload!("unix_refuse").arg(mode));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, &format!("dump of {mode}"), needles);
    if images.join("inventory.img").exists() {
        case.fail("the failed dump left an inventory.img");
    }
    case.expect_untouched(&run);
    case.finish(&mut run);
}

#[test]
fn data_on_a_connection_not_yet_accepted_is_refused() {
    refused("unix_refuse_unaccepted", "unaccepted-data", &[&["fd 40"], &["not yet accepted"], &["socket:["]]);
}

#[test]
fn a_relative_path_name_outside_the_working_directory_is_refused() {
    refused("unix_refuse_relative", "relative", &[&["fd 42"], &["relative path"], &["rel.sock"]]);
}

#[test]
fn out_of_band_data_is_refused() {
    refused("unix_refuse_oob", "oob", &[&["fd 43"], &["MSG_OOB"], &["socket:["]]);
}

#[test]
fn an_unsupported_file_in_flight_is_refused() {
    refused("unix_refuse_inflight", "inflight-udp", &[&["fd 44"], &["in flight"], &["socket:["]]);
}

/// A dump with --leave-running peeks every queue without consuming it and puts SO_PEEK_OFF and
/// SO_PASSCRED back: the workloads still pass when woken afterwards.
fn leave_running(test: &str, w: stasis_tests::harness::Workload) {
    let case = Case::new(test, w);
    let Some(mut run) = case.start() else { return };
    case.dump_ok(&run, &case.images("images"), &["--leave-running"]);
    case.finish(&mut run);
}

#[test]
fn leave_running_keeps_queues_and_options() {
    leave_running("unix_opts_left", workload!("unix_opts"));
}

#[test]
fn leave_running_keeps_fds_and_credentials_in_flight() {
    leave_running("unix_scm_left", workload!("unix_scm"));
}

#[test]
fn leave_running_keeps_connections_and_datagrams() {
    leave_running("unix_conn_left", workload!("unix_conn"));
    leave_running("unix_dgram_left", workload!("unix_dgram"));
}

#[test]
fn standalone_unix_refuse() {
    standalone("sa-unix_refuse_unaccepted", workload!("unix_refuse").arg("unaccepted-data"));
    standalone("sa-unix_refuse_relative", workload!("unix_refuse").arg("relative"));
    standalone("sa-unix_refuse_oob", workload!("unix_refuse").arg("oob"));
    standalone("sa-unix_refuse_inflight", workload!("unix_refuse").arg("inflight-udp"));
}

/// The `sock_opts` workload alone in every mode: what it sets reads back the same without stasis.
#[test]
fn standalone_sock_opts() {
    let modes =
        ["packet", "netlink", "unix", "tcp", "tcp6", "tcp-conn", "tcp6-conn", "udp", "udp6", "udplite", "raw", "raw6"];
    for mode in modes.into_iter().chain(["tcp-md5"]) {
        standalone(&format!("sa-sock_opts_{mode}"), workload!("sock_opts").arg(mode));
    }
}

#[test]
fn standalone_unix_conn() {
    standalone("sa-unix_conn", workload!("unix_conn"));
}

#[test]
fn standalone_unix_tree() {
    standalone("sa-unix_tree", workload!("unix_tree"));
}

#[test]
fn standalone_unix_dgram() {
    standalone("sa-unix_dgram", workload!("unix_dgram"));
}

#[test]
fn standalone_unix_scm() {
    standalone("sa-unix_scm", workload!("unix_scm"));
}

#[test]
fn standalone_unix_opts() {
    standalone("sa-unix_opts", workload!("unix_opts"));
}

#[test]
fn standalone_unix_ext() {
    let path = echo_server("ext-standalone");
    standalone("sa-unix_ext", workload!("unix_ext").arg(&path));
    let _ = std::fs::remove_file(&path);
}

/// Netlink sockets (route with groups past 32, sock_diag unbound, uevent) keep their port ids,
/// groups and options.
#[test]
fn netlink_sockets() {
    let case = Case::new("netlink_sockets", workload!("netlink_sockets"));
    case.checkpoint_restore(&[], &[]);
}

/// A netlink socket holding a reply not read is refused by name (the kernel's messages cannot be
/// sent again) and the workload runs on.
#[test]
fn a_netlink_socket_with_messages_not_read_is_refused() {
    let case = Case::new("netlink_unread", workload!("netlink_sockets").arg("unread"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, "dump of a netlink socket with a reply queued", &[&["netlink route socket"], &["not read"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// Packet sockets (a fanout group of two, bound to lo, with options and a membership; one
/// receiving nothing) keep their interface, protocol, options and group.
#[test]
fn packet_sockets() {
    let case = Case::new("packet_sockets", workload!("packet_sockets"));
    case.checkpoint_restore(&[], &[]);
}

/// A packet socket with a TPACKET ring is refused by name and the workload runs on.
#[test]
fn a_packet_socket_with_a_ring_is_refused() {
    let case = Case::new("packet_ring", workload!("packet_sockets").arg("ring"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, "dump of a packet socket with a ring", &[&["packet socket"], &["TPACKET ring"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// Raw IP sockets (IPv4 bound, IPv6 connected with IPV6_CHECKSUM, ICMP with a type filter) keep
/// their addresses and options, and receive after the restore.
#[test]
fn raw_ip_sockets() {
    let case = Case::new("raw_sockets", workload!("raw_sockets"));
    case.checkpoint_restore(&[], &[]);
}

/// ICMP ping sockets (IPv4 bound and connected, IPv6 bound with its identifier, one never used)
/// keep their addresses, identifiers and options, and ping again after the restore.
#[test]
fn icmp_ping_sockets() {
    let case = Case::new("ping_sockets", workload!("ping_sockets"));
    case.checkpoint_restore(&[], &[]);
}

/// Every option of a socket of each family, set to a value a new socket does not have, reads back
/// the same after the restore, with the file flags, owner and signal of its description (see the
/// workload `sock_opts`).
fn socket_options(family: &str) {
    let case = Case::new(&format!("sock_opts_{family}"), workload!("sock_opts").arg(family));
    case.checkpoint_restore(&[], &[]);
}

#[test]
fn packet_socket_options() {
    socket_options("packet");
}

#[test]
fn netlink_socket_options() {
    socket_options("netlink");
}

#[test]
fn tcp_socket_options() {
    socket_options("tcp");
}

#[test]
fn tcp6_socket_options() {
    socket_options("tcp6");
}

/// The options of an established connection (`--tcp-established`).
fn connection_options(family: &str) {
    let case = Case::new(&format!("sock_opts_{family}"), workload!("sock_opts").arg(family));
    case.checkpoint_restore(&["--tcp-established"], &["--tcp-established"]);
}

#[test]
fn tcp_connection_options() {
    connection_options("tcp-conn");
}

#[test]
fn tcp6_connection_options() {
    connection_options("tcp6-conn");
}

/// A connection restored with `--tcp-close` is closed and keeps its options.
#[test]
fn a_connection_restored_closed_keeps_its_options() {
    let case = Case::new("sock_opts_tcp_close", workload!("sock_opts").arg("tcp-close"));
    case.checkpoint_restore(&["--tcp-established"], &["--tcp-close"]);
}

#[test]
fn udp_socket_options() {
    socket_options("udp");
}

#[test]
fn udp6_socket_options() {
    socket_options("udp6");
}

#[test]
fn udplite_socket_options() {
    socket_options("udplite");
}

#[test]
fn raw_socket_options() {
    socket_options("raw");
}

#[test]
fn raw6_socket_options() {
    socket_options("raw6");
}

#[test]
fn unix_socket_options() {
    socket_options("unix");
}

/// A listener holding a TCP-MD5 key is refused by name (the keys cannot be read back) and the
/// workload runs on with its key.
#[test]
fn a_tcp_socket_with_an_md5_key_is_refused() {
    let case = Case::new("sock_opts_md5", workload!("sock_opts").arg("tcp-md5"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, "dump of a TCP socket with an MD5 key", &[&["tcp socket"], &["TCP_MD5SIG"], &["fd "]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// Corner cases of names (see the workload `unix_corners`).
#[test]
fn self_connected_datagram_socket() {
    checkpoint_restore("unix_self_connected", workload!("unix_corners").arg("self_connected"));
}

#[test]
fn socket_bound_in_a_removed_directory() {
    checkpoint_restore("unix_removed_dir", workload!("unix_corners").arg("removed_dir"));
}

#[test]
fn two_sockets_bound_to_one_path_in_turn() {
    checkpoint_restore("unix_path_in_turn", workload!("unix_corners").arg("path_in_turn"));
}

#[test]
fn fifo_made_where_a_socket_file_was() {
    checkpoint_restore("unix_fifo_over", workload!("unix_corners").arg("fifo_over"));
}

#[test]
fn unconnected_and_unlistened_stream_sockets() {
    checkpoint_restore("unix_unconnected", workload!("unix_corners").arg("unconnected"));
}

#[test]
fn epoll_watching_a_socket_that_arrived_over_scm_rights() {
    checkpoint_restore("unix_epoll_scm", workload!("unix_corners").arg("epoll_scm"));
}
