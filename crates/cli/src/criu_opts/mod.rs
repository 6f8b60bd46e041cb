//! CRIU's command line: every option of `criu dump`, `pre-dump`, `restore` and `check` (CRIU 4.2),
//! so that `stasis` can stand where a script says `criu`. The options live in one table
//! ([`OPTIONS`], in `table.rs`), grouped as criu(8) groups them; the clap arguments, the checks run
//! before anything is touched, and the README's table are made from it. Each option is either done
//! with CRIU's meaning, accepted with no effect because stasis' design makes it moot (said in the
//! log and the README), or refused with an error naming it when its feature is not built yet; like
//! CRIU, an option of another command is accepted and ignored.
//!
//! Also here: `--config FILE` (CRIU's configuration file: one option per line, without `--`, read
//! before the command line), the CRIU log levels of `-v`, and the paths relative to `--work-dir`.

mod table;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::builder::ValueParser;
use clap::{Arg, ArgAction, ArgMatches};
use log::LevelFilter;

#[cfg(test)]
pub use table::markdown;
pub use table::OPTIONS;

/// A set of commands, as bits.
pub type Cmds = u8;
pub const DUMP: Cmds = 1;
pub const PRE_DUMP: Cmds = 2;
pub const RESTORE: Cmds = 4;
pub const CHECK: Cmds = 8;
pub const DUMPS: Cmds = DUMP | PRE_DUMP;
pub const ALL: Cmds = DUMPS | RESTORE | CHECK;

/// The commands that take CRIU's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CriuCommand {
    Dump,
    PreDump,
    Restore,
    Check,
}

impl CriuCommand {
    fn bit(self) -> Cmds {
        match self {
            CriuCommand::Dump => DUMP,
            CriuCommand::PreDump => PRE_DUMP,
            CriuCommand::Restore => RESTORE,
            CriuCommand::Check => CHECK,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CriuCommand::Dump => "dump",
            CriuCommand::PreDump => "pre-dump",
            CriuCommand::Restore => "restore",
            CriuCommand::Check => "check",
        }
    }
}

/// What a value must look like.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Text,
    Path,
    /// A pid, at least 1.
    Pid,
    /// A file descriptor number.
    Fd,
    /// Bytes with an optional K, M or G suffix.
    Size,
    /// A `-v` level: a number, more `v`s, or nothing.
    Level,
}

/// What an option takes.
#[derive(Clone, Copy, Debug)]
pub enum Takes {
    /// Nothing.
    Flag,
    /// Nothing, and has a `--no-` form (CRIU's boolean options); the last one given wins.
    Bool,
    /// A value (`--name VALUE`, `--name=VALUE`, `-xVALUE`, `-x VALUE`); may be repeated.
    Value(&'static str, Kind),
    /// An optional value, attached as CRIU takes it (`--name=VALUE`, `-xVALUE`; `-vvv` is `-v`
    /// with the value `vv`); a separate word not starting with `-` is taken too.
    OptValue(&'static str, Kind),
}

/// What stasis does with an option.
#[derive(Clone, Copy, Debug)]
pub enum Status {
    /// Done with CRIU's meaning (how, briefly).
    Done(&'static str),
    /// Accepted with no effect: why it is moot in stasis.
    Moot(&'static str),
    /// Refused, naming the option: the feature not built yet.
    NotBuilt(&'static str),
}

/// One option of the table.
#[derive(Debug)]
pub struct Opt {
    pub long: &'static str,
    pub short: Option<char>,
    pub takes: Takes,
    /// The commands it means something to.
    pub cmds: Cmds,
    /// What it means in CRIU.
    pub criu: &'static str,
    pub stasis: Status,
}

impl Opt {
    /// How it is written: `` `-t`, `--tree PID` ``, `` `--[no-]link-remap` ``.
    #[cfg(test)]
    pub fn spelling(&self) -> String {
        let short = self.short.map(|c| format!("`-{c}`, ")).unwrap_or_default();
        let long = match self.takes {
            Takes::Flag => format!("`--{}`", self.long),
            Takes::Bool => format!("`--[no-]{}`", self.long),
            Takes::Value(v, _) => format!("`--{} {v}`", self.long),
            Takes::OptValue(v, _) => format!("`--{}[={v}]`", self.long),
        };
        format!("{short}{long}")
    }

    /// What stasis does with it, in words (the `--help` text and the README's).
    pub fn verdict(&self) -> String {
        match self.stasis {
            Status::Done(s) => s.to_string(),
            Status::Moot(s) => format!("accepted, no effect: {s}"),
            Status::NotBuilt(s) => format!("fails: {s} not built yet"),
        }
    }

    /// The clap arguments of the option (two for a [`Takes::Bool`]).
    fn args(&'static self) -> Vec<Arg> {
        let long_help = format!("{} [stasis: {}]", self.criu, self.verdict());
        let mut arg =
            Arg::new(self.long).long(self.long).help(self.criu).long_help(long_help).help_heading("CRIU options");
        if let Some(c) = self.short {
            arg = arg.short(c);
        }
        match self.takes {
            Takes::Flag => vec![arg.action(ArgAction::SetTrue)],
            Takes::Bool => {
                let no: &'static str = Box::leak(format!("no-{}", self.long).into_boxed_str());
                let negated = Arg::new(no).long(no).action(ArgAction::SetTrue).hide(true).overrides_with(self.long);
                vec![arg.action(ArgAction::SetTrue).overrides_with(no), negated]
            }
            Takes::Value(name, kind) => {
                vec![arg.value_name(name).action(ArgAction::Append).value_parser(parser(kind))]
            }
            Takes::OptValue(name, kind) => vec![arg
                .value_name(name)
                .action(ArgAction::Append)
                .num_args(0..=1)
                .default_missing_value("")
                .value_parser(parser(kind))],
        }
    }
}

/// The check of a value of `kind` (keeping the text).
fn parser(kind: Kind) -> ValueParser {
    ValueParser::new(move |text: &str| -> Result<String, String> {
        match kind {
            Kind::Text | Kind::Path => Ok(()),
            Kind::Pid => text.parse::<i32>().ok().filter(|p| *p >= 1).map(drop).ok_or("not a pid (1 or more)".into()),
            Kind::Fd => text.parse::<i32>().ok().filter(|p| *p >= 0).map(drop).ok_or("not an fd number".into()),
            Kind::Size => parse_size(text).map(drop),
            Kind::Level => level_step(text).map(drop).ok_or("not a level (0-9, or more v)".into()),
        }
        .map(|()| text.to_string())
    })
}

/// A size in bytes, with an optional K, M or G suffix (powers of 1024) as CRIU takes them, at most
/// [`stasis_engine::MAX_GHOST_LIMIT`].
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 1 << 10),
        Some((i, 'M' | 'm')) => (&text[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size (e.g. 4096, 64K, 8M)"))?;
    let bytes = n.checked_mul(unit).ok_or_else(|| format!("{text} is too big"))?;
    if bytes > stasis_engine::MAX_GHOST_LIMIT {
        return Err(format!("{text} is over the most an image can hold for one file (32M)"));
    }
    Ok(bytes)
}

/// One `-v`: `Some(Err(n))` sets level n, `Some(Ok(k))` adds k.
fn level_step(text: &str) -> Option<Result<u32, u32>> {
    if text.chars().all(|c| c == 'v') {
        return Some(Ok(text.len() as u32 + 1));
    }
    text.parse::<u32>().ok().filter(|n| *n <= 9).map(Err)
}

/// The CRIU options given on one command line, in table order.
#[derive(Clone, Debug, Default)]
pub struct CriuArgs {
    given: Vec<(&'static Opt, Vec<String>)>,
}

impl clap::Args for CriuArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.args(OPTIONS.iter().flat_map(Opt::args))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for CriuArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Vec::new();
        for opt in OPTIONS {
            match opt.takes {
                Takes::Flag | Takes::Bool if m.get_flag(opt.long) => given.push((opt, Vec::new())),
                Takes::Flag | Takes::Bool => {}
                Takes::Value(..) | Takes::OptValue(..) => {
                    if let Some(values) = m.get_many::<String>(opt.long) {
                        given.push((opt, values.cloned().collect()));
                    }
                }
            }
        }
        Ok(CriuArgs { given })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl CriuArgs {
    /// The values of option `long` (empty for a flag), if it was given.
    pub fn get(&self, long: &str) -> Option<&[String]> {
        self.given.iter().find(|(o, _)| o.long == long).map(|(_, v)| v.as_slice())
    }

    /// Whether option `long` was given (a [`Takes::Bool`]: and not negated after).
    pub fn is_set(&self, long: &str) -> bool {
        self.get(long).is_some()
    }

    /// The last value of option `long`.
    pub fn last(&self, long: &str) -> Option<&str> {
        self.get(long).and_then(|v| v.last()).map(String::as_str)
    }

    /// `-D`, or the current directory.
    pub fn images_dir(&self) -> PathBuf {
        PathBuf::from(self.last("images-dir").unwrap_or("."))
    }

    /// `-W`, or the image directory.
    pub fn work_dir(&self) -> PathBuf {
        self.last("work-dir").map_or_else(|| self.images_dir(), PathBuf::from)
    }

    /// `path`, taken from the work directory when relative (CRIU works in it).
    fn in_work_dir(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        self.work_dir().join(path)
    }

    /// `-o`, relative to the work directory.
    pub fn log_file(&self) -> Option<PathBuf> {
        self.last("log-file").map(|p| self.in_work_dir(p))
    }

    /// `--pidfile`, relative to the work directory.
    pub fn pidfile(&self) -> Option<PathBuf> {
        self.last("pidfile").map(|p| self.in_work_dir(p))
    }

    /// The log level of the `-v` options, from CRIU's default 2 (warnings).
    pub fn level(&self) -> LevelFilter {
        let mut level: u32 = 2;
        for v in self.get("verbosity").unwrap_or_default() {
            match level_step(v) {
                Some(Ok(more)) => level += more,
                Some(Err(set)) => level = set,
                None => {}
            }
        }
        level_of(level as i32)
    }

    /// `-t`.
    pub fn tree(&self) -> Option<i32> {
        self.last("tree").and_then(|t| t.parse().ok())
    }

    /// `--ghost-limit`, or 1 MiB.
    pub fn ghost_limit(&self) -> u64 {
        self.last("ghost-limit").and_then(|s| parse_size(s).ok()).unwrap_or(stasis_engine::DEFAULT_GHOST_LIMIT)
    }

    /// `-d` or `--daemon`.
    pub fn restore_detached(&self) -> bool {
        self.is_set("restore-detached") || self.is_set("daemon")
    }

    /// The fds of `--close`.
    pub fn close_fds(&self) -> Vec<i32> {
        self.get("close").unwrap_or_default().iter().filter_map(|f| f.parse().ok()).collect()
    }

    /// Refuse, naming them, the options given whose feature is not built yet (or whose value is
    /// not supported); log what the moot ones do and which options `cmd` ignores. Runs before
    /// anything is touched.
    pub fn check(&self, cmd: CriuCommand) -> anyhow::Result<()> {
        let mut refused = Vec::new();
        for (opt, _) in &self.given {
            if opt.cmds & cmd.bit() == 0 {
                log::info!("--{}: ignored by {} (as by criu)", opt.long, cmd.name());
                continue;
            }
            match opt.stasis {
                Status::Done(_) => {}
                Status::Moot(why) => log::info!("--{}: accepted, no effect: {why}", opt.long),
                Status::NotBuilt(what) => refused.push(format!("--{} ({what})", opt.long)),
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        anyhow::bail!("not built yet in stasis, nothing was touched: {}", refused.join(", "))
    }
}

/// The log filter of CRIU log level `level` (0 none, 1 errors, 2 warnings, 3 info, 4 debug,
/// more: trace).
pub fn level_of(level: i32) -> LevelFilter {
    match level {
        i32::MIN..=0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// The command line with the options of `--config FILE` inserted after the command name, so that
/// the command line's own options, parsed later, override them. Each line of the file is `name`
/// or `name value` (the value may be in double quotes); `#` starts a comment.
pub fn with_config(args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Some(file) = config_file(&args) else { return Ok(args) };
    let text = std::fs::read_to_string(&file).with_context(|| format!("read config file {}", file.display()))?;
    let from_file = config_args(&text).with_context(|| format!("config file {}", file.display()))?;
    // The command is the first argument after the program that is not an option.
    let at = args.iter().skip(1).position(|a| !a.to_string_lossy().starts_with('-')).map_or(args.len(), |i| i + 2);
    let mut out = args;
    out.splice(at.min(out.len())..at.min(out.len()), from_file);
    Ok(out)
}

/// The FILE of the last `--config FILE` or `--config=FILE`.
fn config_file(args: &[OsString]) -> Option<PathBuf> {
    let mut file = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            file = it.next().map(PathBuf::from);
        } else if let Some(f) = a.strip_prefix("--config=") {
            file = Some(PathBuf::from(f));
        }
    }
    file
}

/// The arguments of a config file's text.
fn config_args(text: &str) -> anyhow::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (name, value) = match line.split_once([' ', '\t']) {
            Some((name, value)) => (name, Some(unquote(value.trim()))),
            None => (line, None),
        };
        let name = name.trim_start_matches("--");
        let Some(opt) = OPTIONS.iter().find(|o| o.long == name || o.long == name.trim_start_matches("no-")) else {
            anyhow::bail!("line {}: unknown option {name:?}", n + 1);
        };
        match (opt.takes, value) {
            (Takes::OptValue(..), Some(v)) => out.push(format!("--{name}={v}").into()),
            (_, Some(v)) => out.extend([format!("--{name}").into(), v.into()]),
            (_, None) => out.push(format!("--{name}").into()),
        }
    }
    Ok(out)
}

fn unquote(value: &str) -> String {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value).replace("\\\"", "\"")
}

#[cfg(test)]
mod tests;
