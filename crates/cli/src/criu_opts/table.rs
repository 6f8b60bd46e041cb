//! The table of CRIU 4.2's options (criu(8), `criu/config.c`), by section of criu(8): for each,
//! how it is spelled, what it takes, which commands use it, what it means in CRIU and what stasis
//! does with it. The clap arguments, the checks and the README table are all made from it.

use super::{Cmds, Kind, Opt, Status, Takes, ALL, CHECK, DUMPS, PRE_DUMP, RESTORE};

use Kind::{Fd, Level, Path, Pid, Size, Text};
use Status::{Done, Moot, NotBuilt};
use Takes::{Bool, Flag, OptValue, Value};

const fn o(
    long: &'static str,
    short: Option<char>,
    takes: Takes,
    cmds: Cmds,
    criu: &'static str,
    stasis: Status,
) -> Opt {
    Opt { long, short, takes, cmds, criu, stasis }
}

const D_R: Cmds = DUMPS | RESTORE;

/// Every option stasis accepts for `dump`, `pre-dump`, `restore` and `check`, but `-h`/`--help`
/// and `-V`/`--version` (made by clap).
pub const OPTIONS: &[Opt] = &[
    // Common options.
    o(
        "images-dir",
        Some('D'),
        Value("DIR", Path),
        ALL,
        "directory of the image files (default: the current directory)",
        Done("the image directory; `.` when not given"),
    ),
    o(
        "work-dir",
        Some('W'),
        Value("DIR", Path),
        ALL,
        "directory for logs and pid files (default: the image directory)",
        Done("relative `--log-file` and `--pidfile` paths are taken from it"),
    ),
    o(
        "log-file",
        Some('o'),
        Value("FILE", Path),
        ALL,
        "write the log to FILE (relative to the work directory)",
        Done("the log is appended to FILE; without it, to stderr"),
    ),
    o(
        "verbosity",
        Some('v'),
        OptValue("LEVEL", Level),
        ALL,
        "log level: each `v` adds one to the default 2, `-vN` sets N (0 none, 1 errors, 2 warnings, 3 info, 4 debug)",
        Done("the same levels (5 and more: trace)"),
    ),
    o(
        "config",
        None,
        Value("FILE", Path),
        ALL,
        "read options from FILE (one per line, without the leading `--`)",
        Done("read before the command line, which overrides it"),
    ),
    o(
        "no-default-config",
        None,
        Flag,
        ALL,
        "do not read /etc/criu/default.conf and ~/.criu/default.conf",
        Moot("stasis reads no default configuration file"),
    ),
    o(
        "pidfile",
        None,
        Value("FILE", Path),
        ALL,
        "write the pid of the restored root (or the daemon) to FILE",
        Done("restore writes the root's pid, atomically"),
    ),
    o(
        "display-stats",
        None,
        Bool,
        ALL,
        "print the statistics of the dump or restore at its end",
        Moot("stasis always prints its summary (pages, bytes, times); `--json` prints the whole report"),
    ),
    o(
        "log-pid",
        None,
        Bool,
        ALL,
        "one log file per process of criu",
        Moot("stasis is one process; its threads write one log"),
    ),
    o("close", None, Value("FD", Fd), ALL, "close FD before doing anything", Done("the same")),
    o(
        "libdir",
        Some('L'),
        Value("DIR", Path),
        ALL,
        "directory of criu's plugins",
        Moot("stasis has no plugins: what it supports is built in"),
    ),
    o("stream", None, Bool, D_R, "stream the images through criu-image-streamer", NotBuilt("image streaming")),
    o(
        "prev-images-dir",
        None,
        Value("DIR", Path),
        DUMPS,
        "the images of an earlier (pre-)dump, for an incremental dump",
        Done("only pages written since are saved (userfaultfd write tracking); a `parent` link is made"),
    ),
    o(
        "enable-fs",
        None,
        Value("FS", Text),
        DUMPS,
        "file systems whose mounts are detected and restored by mount(2)",
        Done(
            "FS,... (or `all`): a mount of those types in the tree's mount namespace that stasis makes no other way \
             is saved without its contents and made again by mounting its source with its options; a part of a \
             filesystem, or a ramfs or hugetlbfs holding files, is refused by name",
        ),
    ),
    o(
        "action-script",
        None,
        Value("SCRIPT", Path),
        ALL,
        "run SCRIPT at stages of dump and restore",
        Done("`sh -c SCRIPT` with CRIU's `CRTOOLS_SCRIPT_ACTION` and `CRTOOLS_INIT_PID` at pre-dump, network-lock, post-dump, network-unlock, pre-restore, setup-namespaces, post-setup-namespaces, post-restore; a failing script fails the dump or restore there"),
    ),
    o(
        "unprivileged",
        None,
        Bool,
        ALL,
        "run without root, with CAP_CHECKPOINT_RESTORE",
        NotBuilt("the unprivileged mode"),
    ),
    o("deprecated", None, Bool, ALL, "allow deprecated features", Moot("stasis has no deprecated features")),
    o(
        "status-fd",
        None,
        Value("FD", Fd),
        ALL,
        "page server: write a zero byte to FD once it serves",
        Moot("only the page server uses it: `stasis page-server --status-fd FD`"),
    ),
    // pre-dump and dump.
    o("tree", Some('t'), Value("PID", Pid), DUMPS, "the root of the process tree to checkpoint", Done("the same")),
    o("leave-running", Some('R'), Flag, DUMPS, "let the tree run after the dump", Done("the same")),
    o(
        "leave-stopped",
        Some('s'),
        Flag,
        DUMPS | RESTORE,
        "leave the tree stopped after the dump or restore",
        Done("SIGSTOP queued to every process before it is let go; stasis returns once each shows the stop"),
    ),
    o(
        "track-mem",
        None,
        Bool,
        DUMPS,
        "track memory changes for the next incremental dump",
        Done("userfaultfd write-protect (WP_ASYNC) read back by PAGEMAP_SCAN; pre-dump always tracks"),
    ),
    o(
        "pre-dump-mode",
        None,
        Value("MODE", Text),
        PRE_DUMP,
        "how pre-dump reads memory (splice or read)",
        Moot("stasis' pre-dump always copies from the running tree through /proc/PID/mem (CRIU's `read`)"),
    ),
    o(
        "page-server",
        None,
        Bool,
        DUMPS,
        "send the pages to a page server",
        Done("dump sends the page files to `stasis page-server` (its own checksummed protocol); the other images stay in `-D`"),
    ),
    o(
        "address",
        None,
        Value("ADDR", Text),
        DUMPS,
        "the page server's address",
        Done("the page server's host name or IP address"),
    ),
    o("port", None, Value("PORT", Text), DUMPS, "the page server's port", Done("the same")),
    o(
        "ps-socket",
        None,
        Value("FD", Fd),
        DUMPS,
        "a connected socket to the page server",
        Done("with `--page-server`: the pages go over FD (any stream socket connected to `stasis page-server`) instead of a connection to `--address`/`--port`"),
    ),
    o("tls", None, Bool, DUMPS, "encrypt the page server connection with TLS", NotBuilt("TLS for the page server")),
    o("tls-cacert", None, Value("FILE", Path), DUMPS, "TLS: the CA certificate", NotBuilt("TLS for the page server")),
    o("tls-cacrl", None, Value("FILE", Path), DUMPS, "TLS: the CA revocation list", NotBuilt("TLS for the page server")),
    o("tls-cert", None, Value("FILE", Path), DUMPS, "TLS: this side's certificate", NotBuilt("TLS for the page server")),
    o("tls-key", None, Value("FILE", Path), DUMPS, "TLS: this side's private key", NotBuilt("TLS for the page server")),
    o("tls-no-cn-verify", None, Flag, DUMPS, "TLS: do not check the peer's common name", NotBuilt("TLS for the page server")),
    o(
        "auto-dedup",
        None,
        Bool,
        DUMPS | RESTORE,
        "drop pages of earlier images that a new dump replaces (or that restore read)",
        Done("dump and pre-dump punch the pages they save out of the parent images (fallocate PUNCH_HOLE; their page maps and inventories say so); restore refuses it: deleting what restore read is not built"),
    ),
    o(
        "lazy-pages",
        None,
        Flag,
        DUMPS | RESTORE,
        "serve (or fill) the pages on demand, for post-copy migration",
        Done("restore leaves the private anonymous pages of childless processes to `stasis lazy-pages -D DIR` (userfaultfd); dump writes every page as usual"),
    ),
    o(
        "ext-unix-sk",
        Some('x'),
        OptValue("INODE", Text),
        D_R,
        "allow UNIX sockets connected to sockets outside the tree",
        Done("without a value every such socket, with `=INODE` (dump, repeatable) only that one, as `--external unix[INODE]`; restore connects each to its peer's name again (a value there is ignored)"),
    ),
    o(
        "tcp-established",
        None,
        Bool,
        D_R,
        "checkpoint established TCP connections",
        Done("TCP_REPAIR, under the network lock"),
    ),
    o(
        "tcp-close",
        None,
        Bool,
        D_R,
        "restore TCP connections closed",
        Done("connections come back as unconnected sockets"),
    ),
    o(
        "skip-in-flight",
        None,
        Bool,
        DUMPS,
        "skip TCP connections not yet accepted",
        Done("dropped with a warning; their clients are reset"),
    ),
    o(
        "network-lock",
        None,
        Value("METHOD", Text),
        D_R,
        "how the network is locked during the dump (iptables, nftables, skip)",
        Done(
            "`nftables` (the default: a table of the dump's own), `iptables` (CRIU's default: a chain of the dump's own in iptables' and ip6tables' filter tables), `skip`; restore removes the lock with the dump's method"
        ),
    ),
    o(
        "link-remap",
        None,
        Bool,
        D_R,
        "link unlinked files back into the file system at restore",
        Moot(
            "stasis saves an unlinked file's contents in the image (up to `--ghost-limit`) and never links a file back",
        ),
    ),
    o(
        "ghost-limit",
        None,
        Value("SIZE", Size),
        DUMPS,
        "largest unlinked file carried in the image (K, M or G suffix; default 1M)",
        Done("the same, at most 32M"),
    ),
    o(
        "ghost-fiemap",
        None,
        Bool,
        DUMPS,
        "read sparse unlinked files with FIEMAP (on by default)",
        Moot("an unlinked file is at most 32M and is copied whole; neither way changes the image's meaning"),
    ),
    o(
        "force-irmap",
        None,
        Bool,
        DUMPS,
        "resolve the paths of inotify and fanotify watches by scanning the file system",
        Moot("stasis resolves every watch by its file handle (open_by_handle_at); there is no inode map to force"),
    ),
    o(
        "irmap-scan-path",
        None,
        Value("DIR", Path),
        DUMPS,
        "where that scan looks",
        Moot("there is no scan (see `--force-irmap`)"),
    ),
    o(
        "file-locks",
        Some('l'),
        Bool,
        D_R,
        "checkpoint file locks",
        Done("flock, POSIX and OFD locks and leases, taken again by their owners; without it a lock fails the dump"),
    ),
    o(
        "evasive-devices",
        None,
        Bool,
        D_R,
        "use any path to a device when its own is gone",
        Done("restore: a device file whose path is gone, or is another device here, is opened through a node of the same device under /dev"),
    ),
    o(
        "external",
        None,
        Value("RES", Text),
        D_R,
        "mark a resource as external (files, mounts, devices, namespaces)",
        Done(
            "`unix[INODE]`: that UNIX socket may have its peer outside the tree; `veth[NAME]:PEER`: the veth's peer \
             outside the tree's network namespace, made again there at restore; `net[INODE]:KEY`: that network \
             namespace is not saved, restore joins the one given as `--inherit-fd fd[N]:KEY`; `mnt[MOUNTPOINT]:KEY` \
             at the dump, `mnt[KEY]:PATH` at restore: as `--ext-mount-map`; every other type is refused by name",
        ),
    ),
    o(
        "shell-job",
        Some('j'),
        Bool,
        D_R,
        "the tree is a job of the calling shell: restore joins its session and terminal",
        Done("the same"),
    ),
    o(
        "cpu-cap",
        None,
        OptValue("CAPS", Text),
        D_R,
        "which CPU features to record and require (fpu, ins, cpu, all, none)",
        Done("dump records them all; restore requires `fpu` (the XSAVE features the image uses), `cpu` (every /proc/cpuinfo flag of the dump's CPU), `ins` (its instruction-set flags), `all`, or `none`; the default is CRIU 4.2's `fpu,ins`"),
    ),
    o(
        "allow-uprobes",
        None,
        Bool,
        D_R,
        "allow tasks with uprobes",
        Done(
            "a process with a uprobes area (`[uprobes]`) is dumped only with it, and such an image restored only with \
             it: the area is not saved (the kernel maps it again at the next hit), the probes' breakpoints are saved \
             with the code pages, so the probes must still be registered; a thread in the area or a running return \
             probe is refused by name",
        ),
    ),
    o(
        "timeout",
        None,
        Value("SECONDS", Text),
        DUMPS,
        "how long to wait for the tree to be collected (default 10)",
        Moot("stasis freezes the tree with ptrace, which does not wait on a freezer"),
    ),
    o(
        "freeze-cgroup",
        None,
        Value("CGROUP", Path),
        DUMPS,
        "freeze the tree with this cgroup's freezer",
        Done("the cgroup (v2 `cgroup.freeze`, or v1 `freezer.state`) is frozen before the tree is seized and thawed once every task is held; every process in it must be in the tree"),
    ),
    o(
        "manage-cgroups",
        None,
        OptValue("MODE", Text),
        D_R,
        "dump and restore cgroups (none, props, soft, full, strict, ignore)",
        Done("cgroup v2 membership of every task and the settings of the tree's cgroups; CRIU's modes (soft when absent or without a value); see docs/architecture.md"),
    ),
    o(
        "cgroup-root",
        None,
        Value("ROOT", Text),
        D_R,
        "change the root of a cgroup controller",
        Done("`PATH`: the dumped root of the tree's cgroups is made at PATH (v2, and each v1 hierarchy not given its own); `CONTROLLER:PATH`: the root in the v1 hierarchy with CONTROLLER"),
    ),
    o("cgroup-props", None, Value("PROPS", Text), D_R, "cgroup properties to dump", NotBuilt("cgroup property lists, controller lists and yards")),
    o(
        "cgroup-props-file",
        None,
        Value("FILE", Path),
        D_R,
        "cgroup properties to dump, from a file",
        NotBuilt("cgroup property lists, controller lists and yards"),
    ),
    o(
        "cgroup-dump-controller",
        None,
        Value("NAME", Text),
        D_R,
        "a cgroup controller to dump",
        NotBuilt("cgroup property lists, controller lists and yards"),
    ),
    o(
        "cgroup-yard",
        None,
        Value("DIR", Path),
        D_R,
        "where criu mounts the cgroup controllers",
        Moot("stasis mounts no cgroup yard: it uses the cgroup2 mount it finds in /proc/self/mounts"),
    ),
    o(
        "empty-ns",
        None,
        Value("NS", Text),
        DUMPS,
        "make this namespace empty at restore (net)",
        Done("`net`: the network namespace is saved empty, restore makes a new one with only its loopback, up (as CRIU)"),
    ),
    o(
        "ext-mount-map",
        Some('M'),
        Value("KEY:VALUE", Text),
        D_R,
        "map an external mount",
        Done(
            "at the dump `MOUNTPOINT:KEY`: that mount of the tree's mount namespace is not saved; at restore \
             `KEY:PATH`: it is a copy of PATH; `auto` at the dump: a mount of a filesystem stasis's namespace also \
             shows (a tmpfs, or one stasis could not make otherwise) is external, keyed by that path; `auto` at \
             restore: such a mount with no path given is a copy of its key",
        ),
    ),
    o(
        "skip-mnt",
        None,
        Value("MOUNT", Path),
        DUMPS,
        "do not dump this mount",
        Done(
            "the mount at that point of the tree's mount namespace and the mounts under it are not saved, so \
             restore does not make them; refused while the tree holds a file, mapping, cwd or root of them",
        ),
    ),
    o(
        "enable-external-sharing",
        None,
        Flag,
        D_R,
        "allow external shared mounts",
        Done(
            "at the dump: the root (not shared: pivot_root), an external mount or a copy of stasis's own mount may be \
             in a peer group of stasis's mount namespace; restore makes it a peer of the group of the path it copies \
             (refused if that mount is private); without it such a mount is refused by name; no effect at restore",
        ),
    ),
    o(
        "enable-external-masters",
        None,
        Flag,
        D_R,
        "allow mounts with external masters",
        Done(
            "at the dump: the root, an external mount or a copy of stasis's own mount may be a slave of a peer group \
             outside the namespace; restore makes it a slave of the group of the path it copies (refused if that \
             mount is private); without it such a mount is refused by name; no effect at restore",
        ),
    ),
    // restore.
    o(
        "restore-detached",
        Some('d'),
        Bool,
        RESTORE,
        "return once the tree runs instead of waiting for it",
        Done("the same"),
    ),
    o("daemon", None, Bool, RESTORE, "the same as `--restore-detached`", Done("the same as `-d`")),
    o(
        "restore-sibling",
        Some('S'),
        Bool,
        RESTORE,
        "restore the root as a sibling of criu, not its child",
        Done("the root is made a child of stasis' parent (`CLONE_PARENT`), which reaps it"),
    ),
    o(
        "root",
        Some('r'),
        Value("DIR", Path),
        RESTORE,
        "restore into another root directory",
        Done("the root mount of the tree's mount namespace is a copy of DIR (without it: stasis's own root)"),
    ),
    o(
        "join-ns",
        Some('J'),
        Value("NS:FILE", Text),
        RESTORE,
        "restore into existing namespaces",
        Done("`uts`, `ipc` or `net` with a PID or a namespace file: the root joins it as it is; extra options and other kinds are refused"),
    ),
    o("mntns-compat-mode", None, Bool, RESTORE, "restore mount namespaces the old way", Moot("stasis has one way to make a mount namespace again (the new mount API, see docs/architecture.md); the option changes nothing")),
    o(
        "veth-pair",
        None,
        Value("IN=OUT", Text),
        RESTORE,
        "the host end of a veth device",
        Done("the same as `--external veth[IN]:OUT` at restore (a bridge is refused)"),
    ),
    o(
        "inherit-fd",
        None,
        Value("fd[N]:RES", Text),
        RESTORE,
        "give the tree criu's fd N for an external resource",
        Done("`fd[N]:pipe:[INODE]`, `fd[N]:socket:[INODE]` or `fd[N]:PATH`: stasis' fd N is installed instead"),
    ),
    o(
        "exec-cmd",
        None,
        Flag,
        RESTORE,
        "run a command once the tree is restored",
        Done("`--exec-cmd -- CMD ARGS`: the restore is detached and stasis becomes CMD, the parent of the restored root"),
    ),
    o(
        "weak-sysctls",
        None,
        Bool,
        RESTORE,
        "skip sysctls the kernel lacks",
        Done("a `net.ipv4`/`net.ipv6`/`net.netfilter` sysctl of the image this kernel lacks is skipped with a warning; without it the restore fails naming it"),
    ),
    o(
        "lsm-profile",
        None,
        Value("TYPE:NAME", Text),
        RESTORE,
        "the LSM profile of the restored tasks",
        NotBuilt("LSM profiles"),
    ),
    o("lsm-mount-context", None, Value("CONTEXT", Text), RESTORE, "the LSM mount context", NotBuilt("LSM profiles")),
    o(
        "file-validation",
        None,
        Value("MODE", Text),
        RESTORE,
        "how a file is checked to be the one dumped (filesize, buildid)",
        NotBuilt("file validation (stasis only warns when a file's size changed)"),
    ),
    o(
        "skip-file-rwx-check",
        None,
        Bool,
        RESTORE,
        "do not compare files' permission bits with the image",
        Moot("stasis compares no permission bits; a file it cannot open with its saved flags fails the restore"),
    ),
    // check.
    o(
        "feature",
        None,
        Value("NAME", Text),
        CHECK,
        "check one feature (exit 0 when present)",
        Done("the names of `stasis check`; CRIU's spelling with `_` is accepted"),
    ),
    o(
        "extra",
        None,
        Bool,
        CHECK,
        "also check the extra features",
        Done("exit 1 also when an optional feature is missing"),
    ),
    o("experimental", None, Bool, CHECK, "also check the experimental features", Done("the same as `--extra`")),
    o("all", None, Flag, CHECK, "check the extra and the experimental features", Done("the same as `--extra`")),
];

/// The whole table as Markdown: one row per option (the README's table).
#[cfg(test)]
pub fn markdown() -> String {
    let mut out = String::from("| option | CRIU meaning | what stasis does |\n|---|---|---|\n");
    for opt in OPTIONS {
        out.push_str(&format!("| {} | {} | {} |\n", opt.spelling(), opt.criu, opt.verdict()));
    }
    out
}
