//! The process's open-file limit, raised to what the system allows.
//!
//! Every connection is a file descriptor: DIUN's webhooks, the dashboards' event streams (up to
//! [`crate::http::MAX_STREAMS`]), the database's pool and files. systemd and many container
//! runtimes start services with a soft limit of 1024 under a far higher hard one, which a
//! process may raise for itself; Go's runtime does so at start, and so does this service, so
//! that a burst of clients meets the limit the administrator set, not a historical default.

/// Raises the soft `RLIMIT_NOFILE` to the hard one. Failing is logged, never fatal: the
/// service runs as well as it did before this existed.
#[cfg(unix)]
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        log::debug!("cannot read the open-file limit: {}", std::io::Error::last_os_error());
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    let set_soft = |to: libc::rlim_t| {
        let wanted = libc::rlimit { rlim_cur: to, rlim_max: hard };
        // SAFETY: as above.
        (unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0).then_some(to)
    };
    // An unlimited hard limit is more than Linux gives any process (fs.nr_open): that is the top.
    let raised = set_soft(hard)
        .or_else(|| (hard == libc::RLIM_INFINITY).then(most_files_per_process).flatten().and_then(set_soft));
    if let Some(raised) = raised {
        log::debug!("open files: limit raised from {soft} to {raised}");
    } else {
        log::warn!(
            "open files: the limit stays at {soft} ({}); many clients at once may be refused",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(unix)]
fn most_files_per_process() -> Option<libc::rlim_t> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

#[cfg(not(unix))]
pub fn raise_open_file_limit() {}
