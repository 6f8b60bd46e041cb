//! A small client of CRIU's RPC, as an engine (runc, go-criu) is one: a `SOCK_SEQPACKET`
//! socketpair, `stasis swrk 3` (or `criu swrk 3` through a symlink) spawned with one end as its
//! fd 3, requests sent as `criu_req` messages and `criu_resp` messages read back, each read
//! bounded by a timeout so that a hung server fails the test instead of hanging it.

use super::dir::TestDir;
use super::stasis::{wait_child, Stasis, STASIS_TIMEOUT};
use crate::raw::{self, Exit};
use prost::Message;
use stasis_rpc::{CriuReq, CriuReqType, CriuResp};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Stdio};

/// A running `swrk` server and our end of its socket.
pub struct SwrkClient {
    sock: OwnedFd,
    child: Child,
}

impl SwrkClient {
    /// Spawns `<bin> swrk 3` (`bin`: the stasis binary or a link to it), stderr to `swrk.N.log`.
    pub fn start(dir: &TestDir, bin: &Path) -> SwrkClient {
        let (ours, theirs) = raw::unix_pair(libc::SOCK_SEQPACKET).expect("socketpair(SOCK_SEQPACKET)");
        let log = dir.unique("swrk", "log");
        dir.watch_log(&log);
        let mut cmd = std::process::Command::new(bin);
        raw::stdio_only_on_spawn(&mut cmd);
        raw::pass_fd_on_spawn(&mut cmd, theirs.as_fd(), 3);
        cmd.args(["swrk", "3"]).stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(File::create(&log).expect("create swrk log"));
        let child = cmd.spawn().unwrap_or_else(|e| dir.fail(&format!("spawn {} swrk 3: {e}", bin.display())));
        SwrkClient { sock: ours, child }
    }

    /// [`SwrkClient::start`] with the stasis binary.
    pub fn start_stasis(dir: &TestDir) -> SwrkClient {
        SwrkClient::start(dir, Stasis::locate().bin())
    }

    /// Sends `req`.
    pub fn send(&self, req: &CriuReq) {
        self.send_bytes(&req.encode_to_vec());
    }

    /// Sends raw bytes as one message.
    pub fn send_bytes(&self, bytes: &[u8]) {
        raw::send_msg(self.sock.as_fd(), bytes, None, &[], None).expect("send to swrk");
    }

    /// The next response; panics after the timeout or if the server closed the socket.
    pub fn recv(&self) -> CriuResp {
        let ms = STASIS_TIMEOUT.as_millis() as i32;
        if !raw::poll_readable(self.sock.as_fd(), ms).expect("poll swrk socket") {
            panic!("no answer from swrk within {STASIS_TIMEOUT:?}");
        }
        let got = raw::recv_msg(self.sock.as_fd(), 1 << 20, 0).expect("recv from swrk");
        if got.data.is_empty() {
            panic!("swrk closed the socket without answering");
        }
        CriuResp::decode(got.data.as_slice()).expect("a criu_resp")
    }

    /// Sends `req` and returns the final response, answering every NOTIFY on the way with
    /// `answer(script)` (true: go on); the scripts are appended to `seen`.
    pub fn call_notified(&self, req: &CriuReq, seen: &mut Vec<String>, answer: impl Fn(&str) -> bool) -> CriuResp {
        self.send(req);
        loop {
            let resp = self.recv();
            if resp.r#type != CriuReqType::Notify as i32 {
                return resp;
            }
            let script = resp.notify.and_then(|n| n.script).unwrap_or_default();
            let ok = answer(&script);
            seen.push(script);
            let ack = CriuReq { r#type: CriuReqType::Notify as i32, notify_success: Some(ok), ..Default::default() };
            self.send(&ack);
        }
    }

    /// Sends `req` and returns its response (no NOTIFY expected).
    pub fn call(&self, req: &CriuReq) -> CriuResp {
        self.send(req);
        self.recv()
    }

    /// Closes our end and waits for the server to exit.
    pub fn finish(mut self) -> Exit {
        drop(self.sock);
        let (exit, timed_out) = wait_child(&mut self.child, STASIS_TIMEOUT);
        assert!(!timed_out, "swrk did not exit within {STASIS_TIMEOUT:?} of the socket's close");
        exit
    }
}

/// A request of `ty` with `opts`.
pub fn request(ty: CriuReqType, opts: Option<stasis_rpc::CriuOpts>) -> CriuReq {
    CriuReq { r#type: ty as i32, opts, ..Default::default() }
}
