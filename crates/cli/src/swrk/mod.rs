//! `stasis swrk FD`: CRIU's RPC, served on the `SOCK_SEQPACKET` socket `FD` the way `criu swrk`
//! serves it, so that runc, crun and Podman (go-criu, libcriu) can drive stasis unchanged. Each
//! message is one `criu_req`; each answer one `criu_resp` (see [`stasis_rpc`]). The server ends
//! after one request unless it set `keep_open`, or when the caller closes the socket.
//!
//! DUMP, PRE_DUMP and RESTORE turn `criu_opts` into a `stasis dump` / `pre-dump` / `restore`
//! command line (see [`opts`])
//! parsed by the same code as the CLI's, so the RPC and the CLI share one option mapping, its
//! checks and its refusals by name; the engine then runs with [`notify::Notifications`] as its
//! hooks when `notify_scripts` is set. The caller's fds named in `criu_opts` are taken from the
//! caller (the socket's peer) with `pidfd_getfd`; those of `inherit_fd` are, as CRIU reads them,
//! the swrk process's own (runc hands them over as extra fds), the caller's only when not
//! inherited.

mod notify;
mod opts;

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use prost::Message;
use stasis_rpc::stats::{self, DumpStatsEntry, RestoreStatsEntry, StatsEntry};
use stasis_rpc::{CriuDumpResp, CriuFeatures, CriuOpts, CriuReq, CriuReqType, CriuResp, CriuRestoreResp, CriuVersion};
use stasis_sys::Pid;

use crate::criu_opts::CriuArgs;
use crate::{Cli, Command};

/// The CRIU version VERSION answers: the release whose options stasis' table mirrors (every
/// option of CRIU 4.2 is accepted, done or refused by name), and above the minimum each engine
/// checks (3.x releases: crun's libcriu wrapper wants 3.15, runc and Podman older ones).
pub const CRIU_VERSION: (i32, i32) = (4, 2);

/// Options of `stasis swrk`.
#[derive(Args, Debug)]
pub struct SwrkArgs {
    /// The connected SOCK_SEQPACKET socket to serve (criu swrk's argument; `criu swrk 3`).
    pub fd: i32,
}

/// The process at the other end of the socket, whose fds `criu_opts` names.
pub struct Caller {
    pub pid: i32,
    pidfd: OwnedFd,
    /// The fds (above 2) this process was started with, but the socket: those a caller hands to
    /// `criu swrk` (runc's `ExtraFiles`, or everything a libcriu caller forks with).
    pub inherited: Vec<i32>,
}

impl Caller {
    /// A copy of the caller's fd `n` (the same open file).
    pub fn fd(&self, n: i32) -> anyhow::Result<OwnedFd> {
        Ok(stasis_sys::fd::pidfd_getfd(self.pidfd.as_fd(), n)?)
    }

    /// A copy of fd `n` as `inherit_fd` names it: as CRIU reads it, the swrk process's own fd `n`
    /// (runc passes the files as the child's extra fds; a libcriu caller's child has them under
    /// the same numbers), else, for a caller whose swrk did not inherit it, the caller's fd `n`.
    pub fn inherited_fd(&self, n: i32) -> anyhow::Result<OwnedFd> {
        if self.inherited.contains(&n) {
            return Ok(stasis_sys::fd::dup_own_fd(n)?);
        }
        self.fd(n)
    }
}

/// The fds above 2 open in this process now, but `except`.
fn open_fds(except: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).filter(|&n| n > 2 && n != except).collect()
}

/// The socket and its caller.
struct Server {
    sock: Arc<OwnedFd>,
    caller: Caller,
}

/// Runs `stasis swrk FD`: 0 once the caller is served, 1 after a malformed request.
pub fn run(args: &SwrkArgs) -> anyhow::Result<u8> {
    // Before any fd of ours is opened: those the caller handed over.
    let inherited = open_fds(args.fd);
    let sock = stasis_sys::fd::dup_own_fd(args.fd).with_context(|| format!("swrk socket fd {}", args.fd))?;
    // The number is ours now only through `sock`; nothing restored may inherit it.
    stasis_sys::fd::close_inherited(args.fd);
    let peer = stasis_sys::socket::peer_cred(sock.as_fd()).context("the swrk socket's peer")?.pid;
    let pidfd = stasis_sys::fd::pidfd_open(Pid(peer)).with_context(|| format!("pidfd of the swrk caller {peer}"))?;
    let server = Server { sock: Arc::new(sock), caller: Caller { pid: peer, pidfd, inherited } };
    loop {
        let req = match server.next()? {
            None => return Ok(0),
            Some(Ok(req)) => req,
            Some(Err(resp)) => {
                server.send(&resp)?;
                return Ok(1);
            }
        };
        let resp = server.serve(&req);
        server.send(&resp)?;
        if !req.keep_open() {
            return Ok(0);
        }
    }
}

impl Server {
    /// The next request, `None` once the caller closed the socket, or the answer to a malformed one.
    fn next(&self) -> anyhow::Result<Option<Result<CriuReq, CriuResp>>> {
        let msg = stasis_sys::socket::recv_message(self.sock.as_fd(), stasis_rpc::MAX_MESSAGE);
        let (bytes, _fds) = match msg {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(e) if e.errno() == libc::EMSGSIZE => {
                let why = format!("malformed criu_req: over {} bytes", stasis_rpc::MAX_MESSAGE);
                return Ok(Some(Err(CriuResp::failed(CriuReqType::Empty, why, Some(libc::EMSGSIZE)))));
            }
            Err(e) => return Err(e).context("read a criu_req from the swrk socket"),
        };
        Ok(Some(CriuReq::decode(bytes.as_slice()).map_err(|e| {
            let why = format!("malformed criu_req ({} bytes): {e}", bytes.len());
            CriuResp::failed(CriuReqType::Empty, why, Some(libc::EBADMSG))
        })))
    }

    fn send(&self, resp: &CriuResp) -> anyhow::Result<()> {
        stasis_sys::socket::send_message(self.sock.as_fd(), &resp.encode_to_vec(), &[])
            .map(drop)
            .context("write a criu_resp to the swrk socket")
    }

    /// The answer to `req`.
    fn serve(&self, req: &CriuReq) -> CriuResp {
        let Ok(ty) = CriuReqType::try_from(req.r#type) else {
            return CriuResp::failed(
                CriuReqType::Empty,
                format!("unknown request type {}", req.r#type),
                Some(libc::EINVAL),
            );
        };
        log::info!("swrk: {ty:?} request from pid {}", self.caller.pid);
        let result = match ty {
            CriuReqType::Version => Ok(version()),
            CriuReqType::Check => check(),
            CriuReqType::FeatureCheck => Ok(feature_check(req.features.as_ref())),
            CriuReqType::Dump => self.with_opts(req, |o| self.dump(o)),
            CriuReqType::PreDump | CriuReqType::SinglePreDump => self.with_opts(req, |o| self.pre_dump(o, ty)),
            CriuReqType::Restore => self.with_opts(req, |o| self.restore(o)),
            other => Err(anyhow::anyhow!("{}", not_served(other))),
        };
        result.unwrap_or_else(|e| {
            let msg = format!("{e:#}");
            log::error!("{msg}");
            CriuResp::failed(ty, msg, None)
        })
    }

    fn with_opts(
        &self,
        req: &CriuReq,
        f: impl FnOnce(&CriuOpts) -> anyhow::Result<CriuResp>,
    ) -> anyhow::Result<CriuResp> {
        let opts = req.opts.as_ref().context("the request has no criu_opts")?;
        if opts.pidfd_store_sk.is_some() {
            anyhow::bail!("criu_opts.pidfd_store_sk (the pidfd store of pre-dumps) is not built yet in stasis, nothing was touched");
        }
        if !opts.exec_cmd.is_empty() {
            anyhow::bail!(
                "criu_opts.exec_cmd (a command the service becomes after the restore) is not built in stasis swrk, nothing was touched; `stasis restore --exec-cmd -- CMD` does it"
            );
        }
        f(opts)
    }

    /// The parsed command line of `o` for `command`, its logger started and its options checked.
    fn parse(&self, command: &str, o: &CriuOpts) -> anyhow::Result<(Command, Vec<OwnedFd>)> {
        let line = opts::command_line(command, o, &self.caller)?;
        // Opened first, so that a refusal of the options is logged there too.
        let level = crate::criu_opts::level_of(o.log_level());
        crate::logger::init(line.log_file.as_deref(), level)?;
        log::info!("swrk: {command} as {:?}", line.args);
        let args: Vec<OsString> = crate::criu_opts::with_config(line.args)?;
        let cli = Cli::try_parse_from_args(args).map_err(|e| anyhow::anyhow!("criu_opts: {}", e.render()))?;
        let (criu, cmd) = cli.command.parts().1.context("a command with CRIU's options")?;
        crate::logger::init(criu.log_file().as_deref(), criu.level())?;
        criu.check(cmd)?;
        Ok((cli.command, line.held))
    }

    /// With `notify_scripts`, the NOTIFY round trips replace the hooks of the command line (the
    /// `--action-script` of a `config_file`), as CRIU's RPC sends its script points to the caller.
    fn notify(&self, o: &CriuOpts, current: &mut stasis_engine::notify::Notifier) {
        if o.notify_scripts == Some(true) {
            let hooks = Arc::new(notify::Notifications::new(self.sock.clone()));
            *current = stasis_engine::notify::Notifier::new(hooks);
        }
    }

    fn dump(&self, o: &CriuOpts) -> anyhow::Result<CriuResp> {
        let (Command::Dump(args), _held) = self.parse("dump", o)? else { unreachable!("parsed as dump") };
        let mut opts = crate::dump::options(&args)?;
        self.notify(o, &mut opts.notify);
        let report = stasis_engine::dump(&opts, &mut |_| {})
            .with_context(|| format!("dump of pid {} into {}", opts.pid, opts.dir.display()))?;
        // stasis times the freeze as a whole (CRIU splits it into freezing, memory dump and write).
        let entry = DumpStatsEntry {
            frozen_time: micros(report.frozen),
            pages_scanned: report.pages + report.pages_in_parent,
            pages_written: report.pages,
            ..Default::default()
        };
        write_stats(&args.criu, stats::DUMP_FILE, StatsEntry { dump: Some(entry), restore: None });
        Ok(CriuResp { dump: Some(CriuDumpResp { restored: Some(false) }), ..CriuResp::ok(CriuReqType::Dump) })
    }

    /// PRE_DUMP: `stasis pre-dump` with the same options (the tree runs on, its writes tracked).
    fn pre_dump(&self, o: &CriuOpts, ty: CriuReqType) -> anyhow::Result<CriuResp> {
        let (Command::PreDump(args), _held) = self.parse("pre-dump", o)? else { unreachable!("parsed as pre-dump") };
        let opts = crate::dump::options(&args)?;
        let report = stasis_engine::pre_dump(&opts, &mut |_| {})
            .with_context(|| format!("pre-dump of pid {} into {}", opts.pid, opts.dir.display()))?;
        let entry = DumpStatsEntry {
            frozen_time: micros(report.frozen),
            pages_scanned: report.pages + report.pages_in_parent,
            pages_written: report.pages,
            ..Default::default()
        };
        write_stats(&args.criu, stats::DUMP_FILE, StatsEntry { dump: Some(entry), restore: None });
        Ok(CriuResp::ok(ty))
    }

    fn restore(&self, o: &CriuOpts) -> anyhow::Result<CriuResp> {
        let (Command::Restore(args), _held) = self.parse("restore", o)? else { unreachable!("parsed as restore") };
        // Taken before anything runs, so that a bad fd fails the restore before it starts.
        let status = o
            .status_fd
            .map(|n| self.caller.inherited_fd(n).with_context(|| format!("criu_opts.status_fd: fd {n} of the caller")))
            .transpose()?;
        // Nobody in this process waits for the tree: the caller does (rst_sibling) or init.
        let mut opts = crate::restore::options(&args.criu, true)?;
        self.notify(o, &mut opts.notify);
        let restored = stasis_engine::restore(&opts, &mut |_| {})
            .with_context(|| format!("restore from {}", opts.dir.display()))?;
        let pid = restored.pid();
        let entry = RestoreStatsEntry {
            restore_time: micros(restored.report.total),
            pages_restored: Some(restored.report.pages),
            ..Default::default()
        };
        restored.detach();
        log::info!("restored pid {pid} from {}", opts.dir.display());
        write_stats(&args.criu, stats::RESTORE_FILE, StatsEntry { dump: None, restore: Some(entry) });
        if let Some(fd) = status {
            // --status-fd: one zero byte once the tree runs, then closed.
            if let Err(e) = std::fs::File::from(fd).write_all(&[0]) {
                log::warn!("criu_opts.status_fd: {e}");
            }
        }
        let restore = CriuRestoreResp { pid };
        Ok(CriuResp { restore: Some(restore), ..CriuResp::ok(CriuReqType::Restore) })
    }
}

fn micros(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// `stats-dump` / `stats-restore` in the work directory (the image directory unless
/// `work_dir_fd` names another), where CRIU writes them and Podman reads them; a failure is only
/// logged (the dump or restore itself succeeded).
fn write_stats(c: &CriuArgs, name: &str, entry: StatsEntry) {
    let path = c.work_dir().join(name);
    if let Err(e) = std::fs::write(&path, stats::file_bytes(&entry)) {
        log::warn!("{}: {e}", path.display());
    }
}

fn version() -> CriuResp {
    let v = CriuVersion {
        major_number: CRIU_VERSION.0,
        minor_number: CRIU_VERSION.1,
        name: Some(format!("stasis {}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    };
    CriuResp { version: Some(v), ..CriuResp::ok(CriuReqType::Version) }
}

/// `criu check`: every feature stasis requires is there.
fn check() -> anyhow::Result<CriuResp> {
    let missing = stasis_sys::probe::probe().missing_required();
    if !missing.is_empty() {
        anyhow::bail!("missing required kernel features: {}", missing.join(", "));
    }
    Ok(CriuResp::ok(CriuReqType::Check))
}

/// The features asked about, each answered: write tracking for incremental dumps where the
/// kernel has asynchronous userfaultfd write-protect, lazy pages where it has userfaultfd (which
/// that probe opens); not yet the pidfd store of pre-dumps.
fn feature_check(asked: Option<&CriuFeatures>) -> CriuResp {
    let asked = asked.cloned().unwrap_or_default();
    let no = |q: Option<bool>| q.map(|_| false);
    let tracks = || stasis_sys::probe::probe().uffd_wp_async.available;
    let features = CriuFeatures {
        mem_track: asked.mem_track.map(|_| tracks()),
        lazy_pages: asked.lazy_pages.map(|_| tracks()),
        pidfd_store: no(asked.pidfd_store),
    };
    CriuResp { features: Some(features), ..CriuResp::ok(CriuReqType::FeatureCheck) }
}

/// Why a request of type `ty` is not served.
fn not_served(ty: CriuReqType) -> String {
    match ty {
        CriuReqType::PageServer | CriuReqType::PageServerChld | CriuReqType::WaitPid => {
            format!("{ty:?}: the page server is not served over RPC yet in stasis (run `stasis page-server`)")
        }
        CriuReqType::CpuinfoDump | CriuReqType::CpuinfoCheck => {
            format!("{ty:?}: cpuinfo images are not built in stasis (restore checks the CPU's XSAVE features itself)")
        }
        CriuReqType::Notify => "a NOTIFY answer came while no notification was waiting for one".into(),
        _ => "request type EMPTY (or no type): nothing to do".into(),
    }
}

impl Cli {
    /// [`Cli`] from a command line made by the RPC (an error rather than an exit).
    fn try_parse_from_args(args: Vec<OsString>) -> Result<Cli, clap::Error> {
        crate::parse(args)
    }
}

#[cfg(test)]
mod tests;
