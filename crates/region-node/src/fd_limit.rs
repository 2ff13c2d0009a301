//! The open-file limit. Every WebSocket and HTTP connection is a file
//! descriptor, and the usual soft limit (1024) would stop a node long before
//! `ws.max_connections`. The node raises its soft `RLIMIT_NOFILE` to the
//! hard limit at start; only an operator can raise the hard one (systemd
//! `LimitNOFILE=`, `ulimit -Hn`, a container's `--ulimit nofile=`), see
//! `docs/websocket.md`.

/// Descriptors the node needs besides WebSocket connections: the event log
/// and snapshots, HTTP clients, NATS, the runtime's own.
pub const FD_HEADROOM: u64 = 1024;

/// The soft limit before and after [`raise_to_hard`], and the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub before: u64,
    pub after: u64,
    pub hard: u64,
}

impl NoFile {
    /// Whether `connections` WebSockets fit under the soft limit with
    /// [`FD_HEADROOM`] to spare.
    pub fn fits(&self, connections: usize) -> bool {
        (connections as u64).saturating_add(FD_HEADROOM) <= self.after
    }
}

/// Raises this process's soft open-file limit to its hard limit.
pub fn raise_to_hard() -> std::io::Result<NoFile> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit(2) reads the struct we pass and nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = raised;
    }
    // `rlim_t` is u64 on Linux but not on every Unix.
    #[allow(clippy::unnecessary_cast)]
    Ok(NoFile {
        before: before as u64,
        after: lim.rlim_cur as u64,
        hard: lim.rlim_max as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one_and_never_drops() {
        let got = raise_to_hard().unwrap();
        assert_eq!(got.after, got.hard);
        assert!(got.after >= got.before);
        // A second call finds it raised already.
        assert_eq!(raise_to_hard().unwrap().before, got.after);
    }

    #[test]
    fn connections_fit_only_with_headroom() {
        let lim = NoFile {
            before: 1024,
            after: 11_024,
            hard: 11_024,
        };
        assert!(lim.fits(10_000));
        assert!(!lim.fits(10_001));
    }
}
