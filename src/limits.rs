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
    let soft = limit.rlim_cur;
    // macOS reports an unlimited hard limit and refuses it as a soft one: OPEN_MAX is its top,
    // as Go's runtime takes it. Linux caps the hard limit itself (fs.nr_open).
    let wanted = if limit.rlim_max == libc::RLIM_INFINITY { OPEN_MAX.max(soft) } else { limit.rlim_max };
    if wanted <= soft {
        return;
    }
    limit.rlim_cur = wanted;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        log::debug!("open files: limit raised from {soft} to {wanted}");
    } else {
        let err = std::io::Error::last_os_error();
        log::warn!("open files: the limit stays at {soft} ({err}); many clients at once may be refused");
    }
}

/// macOS's largest soft limit on open files (`<sys/syslimits.h>`).
#[cfg(unix)]
const OPEN_MAX: libc::rlim_t = 10240;

#[cfg(not(unix))]
pub fn raise_open_file_limit() {}
