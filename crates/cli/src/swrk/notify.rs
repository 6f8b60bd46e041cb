//! The engine's action points as CRIU's NOTIFY round trips: at each point `stasis swrk` sends
//! `criu_resp{type: NOTIFY, notify{script, pid}}` and waits for the caller's
//! `criu_req{type: NOTIFY, notify_success}`; the operation goes on only on `notify_success`.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use prost::Message;
use stasis_engine::notify::{Hooks, Point};
use stasis_rpc::{CriuReq, CriuReqType, CriuResp};

/// The NOTIFY round trips of one request, on the swrk socket.
pub struct Notifications {
    sock: Arc<OwnedFd>,
    /// One round trip at a time (the engine calls from one thread, but `Hooks` is `Sync`).
    turn: Mutex<()>,
}

impl Notifications {
    pub fn new(sock: Arc<OwnedFd>) -> Notifications {
        Notifications { sock, turn: Mutex::new(()) }
    }

    fn round_trip(&self, point: Point, pid: i32) -> Result<(), String> {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let msg = CriuResp::notify(point.name(), pid).encode_to_vec();
        stasis_sys::socket::send_message(self.sock.as_fd(), &msg, &[])
            .map_err(|e| format!("sending the notification to the caller: {e}"))?;
        let answer = stasis_sys::socket::recv_message(self.sock.as_fd(), stasis_rpc::MAX_MESSAGE)
            .map_err(|e| format!("reading the caller's answer: {e}"))?
            .ok_or("the caller closed the socket instead of answering")?;
        let req = CriuReq::decode(answer.0.as_slice()).map_err(|e| format!("malformed answer from the caller: {e}"))?;
        if req.r#type != CriuReqType::Notify as i32 {
            return Err(format!("the caller answered with request type {} instead of NOTIFY", req.r#type));
        }
        match req.notify_success() {
            true => Ok(()),
            false => Err("the caller answered notify_success = false".into()),
        }
    }
}

impl Hooks for Notifications {
    fn at(&self, point: Point, pid: i32) -> Result<(), String> {
        self.round_trip(point, pid)
    }
}
