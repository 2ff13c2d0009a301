//! Running a service under `strace` and reading its trace.
//!
//! strace prints a call's line when the call returns, or an `<unfinished
//! ...>` line at entry when another thread's call intervenes and a
//! `<... resumed>` line at exit. It handles one ptrace stop at a time and
//! prints before it lets the thread go on, so the order of lines respects
//! causality: if a thread returns from `fdatasync` and then wakes another
//! that writes a reply, the `fdatasync` exit is printed before the write's
//! entry. [`Call::entry`] and [`Call::exit`] are those line numbers.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const STRACE: &str = "strace";

/// Running a service under `strace`: every thread (`-f`), descriptors shown
/// with their paths (`-y`), every string in hex (`-xx`, so the trace parses
/// without guessing at escapes) and never cut short (`-s`: a sled write is
/// at most one 512 KiB segment). Only the calls the durability test reads
/// are traced.
pub struct Strace {
    pub log: PathBuf,
}

impl Strace {
    pub const CALLS: &'static str =
        "trace=pwrite64,pwritev,write,writev,sendto,sendmsg,fsync,fdatasync,sync_file_range";

    /// Whether strace exists and may trace a child here.
    pub fn probe() -> Result<(), StraceUnavailable> {
        let out = Command::new(STRACE)
            .args(["-f", "-o", "/dev/null", "--", "true"])
            .output()
            .map_err(|e| StraceUnavailable::Missing(format!("cannot run {STRACE}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            Err(StraceUnavailable::NoPtrace(why))
        }
    }

    pub fn new(log: PathBuf) -> Self {
        Strace { log }
    }

    /// The calls traced so far.
    pub fn calls(&self) -> Vec<Call> {
        parse(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

/// `program`, or `strace … -- program` when traced.
pub(crate) fn command(program: &Path, trace: Option<&Strace>) -> Command {
    match trace {
        None => Command::new(program),
        Some(t) => {
            let mut cmd = Command::new(STRACE);
            cmd.args([
                "-f",
                "-y",
                "-xx",
                "-s",
                "1048576",
                "-e",
                Strace::CALLS,
                "-o",
            ])
            .arg(&t.log)
            .arg("--")
            .arg(program);
            cmd
        }
    }
}

/// Why [`Strace::probe`] failed.
#[derive(Debug)]
pub enum StraceUnavailable {
    /// Not installed (or not runnable).
    Missing(String),
    /// Installed, but ptrace is not permitted (some containers).
    NoPtrace(String),
}

/// One finished system call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub pid: u32,
    pub name: String,
    /// Line of the trace where the call started.
    pub entry: usize,
    /// Line where it returned (the same line unless it was interrupted).
    pub exit: usize,
    /// What the first argument (a descriptor) refers to: a path,
    /// `socket:[inode]`, `pipe:[inode]`.
    pub target: String,
    /// Every string argument, decoded and concatenated (the bytes written).
    pub data: Vec<u8>,
    /// The return value, when it is a number.
    pub ret: Option<i64>,
}

impl Call {
    pub fn is_socket_write(&self) -> bool {
        self.target.starts_with("socket:")
            && matches!(
                self.name.as_str(),
                "write" | "writev" | "sendto" | "sendmsg"
            )
    }

    pub fn is_file_write(&self) -> bool {
        matches!(
            self.name.as_str(),
            "pwrite64" | "pwritev" | "write" | "writev"
        ) && self.target.starts_with('/')
    }

    pub fn contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.data.windows(needle.len()).any(|w| w == needle)
    }
}

/// Parses `strace -f -y -xx -o` output into finished calls, in order of
/// their exit.
pub fn parse(log: &str) -> Vec<Call> {
    // Per pid, the call that was interrupted: (entry line, its text so far).
    let mut pending: std::collections::HashMap<u32, (usize, String)> = Default::default();
    let mut calls = vec![];
    for (line_no, line) in log.lines().enumerate() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, (line_no, head.to_string()));
            continue;
        }
        let (entry, text) = if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else {
                continue;
            };
            match pending.remove(&pid) {
                Some((entry, head)) => (entry, format!("{head}{tail}")),
                None => continue, // Started before the trace did.
            }
        } else {
            (line_no, rest.to_string())
        };
        if let Some(call) = parse_call(pid, entry, line_no, &text) {
            calls.push(call);
        }
    }
    calls
}

fn parse_call(pid: u32, entry: usize, exit: usize, text: &str) -> Option<Call> {
    let open = text.find('(')?;
    let name = text[..open].to_string();
    // strace pads `) = ret` with spaces to a column on short lines.
    let (args, ret) = text[open + 1..].rsplit_once(" = ")?;
    let args = args.trim_end().strip_suffix(')')?;
    let ret = ret.split_whitespace().next().and_then(|r| r.parse().ok());
    // `-y`: the descriptor is `N<hex of what it refers to>`.
    let target = args
        .find('<')
        .zip(args.find('>'))
        .filter(|(lt, gt)| lt < gt && args[..*lt].chars().all(|c| c.is_ascii_digit()))
        .map(|(lt, gt)| String::from_utf8_lossy(&unhex(&args[lt + 1..gt])).into_owned())
        .unwrap_or_default();
    // `-xx`: a string is `"\xHH\xHH…"`, so a quote never occurs inside one.
    let mut data = vec![];
    let mut in_string = false;
    let mut start = 0;
    for (i, c) in args.char_indices() {
        if c == '"' {
            if in_string {
                data.extend(unhex(&args[start..i]));
            }
            in_string = !in_string;
            start = i + 1;
        }
    }
    Some(Call {
        pid,
        name,
        entry,
        exit,
        target,
        data,
        ret,
    })
}

/// `\x2f\x74` → `/t`; anything else is skipped.
fn unhex(s: &str) -> Vec<u8> {
    s.split("\\x")
        .filter_map(|h| u8::from_str_radix(h.get(..2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("\\x{b:02x}")).collect()
    }

    #[test]
    fn complete_and_interrupted_calls_keep_their_entry_and_exit_lines() {
        let db = hex("/tmp/n/log/db");
        let sock = hex("socket:[42]");
        let log = format!(
            "7 pwrite64(9<{db}>, \"{}\", 5, 0) = 5\n\
             7 fdatasync(9<{db}> <unfinished ...>\n\
             8 --- SIGCHLD {{si_signo=SIGCHLD}} ---\n\
             8 writev(12<{sock}>, [{{iov_base=\"{}\", iov_len=9}}, {{iov_base=\"{}\", iov_len=2}}], 2) = 11\n\
             7 <... fdatasync resumed>)          = 0\n",
            hex("order"),
            hex("HTTP/1.1 "),
            hex("ok"),
        );
        let calls = parse(&log);
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].name, "pwrite64");
        assert_eq!(calls[0].target, "/tmp/n/log/db");
        assert_eq!(calls[0].data, b"order");
        assert!(calls[0].is_file_write());
        assert_eq!((calls[1].entry, calls[1].exit), (3, 3));
        assert!(calls[1].is_socket_write());
        assert_eq!(calls[1].data, b"HTTP/1.1 ok");
        assert_eq!(calls[2].name, "fdatasync");
        assert_eq!((calls[2].entry, calls[2].exit), (1, 4));
        assert_eq!(calls[2].target, "/tmp/n/log/db");
        assert_eq!(calls[2].ret, Some(0));
    }
}
