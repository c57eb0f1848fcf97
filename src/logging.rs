//! The log: `RUST_LOG` (default `info`), one line per record with a UTC timestamp, on stderr.
//!
//! Under a flood of webhooks the service logs one `update received` line per webhook, tens of
//! thousands a second, and one `write` to stderr per line cost about 5% of the ingest rate.
//! So lines are written through a [`Gathering`] sink: a line that comes while the log is quiet
//! is written at once, as before; lines that follow within [`GATHER`] of a write are gathered
//! and written together by a thread of their own, at most [`GATHER`] later. A burst thus costs
//! a few hundred writes a second, and a quiet log reads exactly as it did.
//!
//! Warnings and errors are written at once, with whatever was gathered before them, and so
//! are the start-up lines (`run` flushes once it listens) and the lines before a panic's
//! message. The price: a process killed with SIGKILL (or aborted) loses the info lines of its
//! last few milliseconds. Every orderly exit calls [`flush`].

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use log::{Level, Log, Metadata, Record};

/// How long lines may wait to be written together once the log is busy.
pub const GATHER: Duration = Duration::from_millis(5);

static STDERR: OnceLock<Arc<Gathering<io::Stderr>>> = OnceLock::new();

thread_local! {
    /// Each thread's line being formatted: a line costs no allocation once this has grown.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// At most the first 200 characters of text a sender chose, for a log line or an error
/// message: a header or a field of hundreds of kilobytes must not become a line that size.
pub fn clipped(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// A warning anyone who reaches the port can cause (a wrong secret, a foreign origin, a health
/// check while the database is down): said once a minute at most, with how many went unsaid
/// since, so that a flood of such requests neither fills the disk nor holds every thread at the
/// log's lock. The counters in `/metrics` still count each one.
pub struct Throttle {
    minute_said: AtomicI64,
    unsaid: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Self {
        Self { minute_said: AtomicI64::new(i64::MIN), unsaid: AtomicU64::new(0) }
    }

    /// Whether to say it now, and then what to add to the line about those unsaid since.
    pub fn say(&self) -> Option<String> {
        self.say_in(crate::time::Timestamp::now().unix_micros().div_euclid(60_000_000))
    }

    fn say_in(&self, minute: i64) -> Option<String> {
        if self.minute_said.swap(minute, Ordering::Relaxed) == minute {
            self.unsaid.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(match self.unsaid.swap(0, Ordering::Relaxed) {
            0 => String::new(),
            unsaid => format!(" (and {unsaid} more like it since the last, not logged)"),
        })
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

/// Installs the logger. Call once, before anything logs.
pub fn init() {
    let sink = Arc::clone(STDERR.get_or_init(|| Gathering::start(io::stderr(), GATHER)));
    let filter = filter_from(std::env::var("RUST_LOG"));
    let max_level = filter.filter();
    if log::set_boxed_logger(Box::new(filtered(filter, sink))).is_err() {
        // A logger was installed before (a second call): it stays, with its own level.
        return;
    }
    log::set_max_level(max_level);
    // A panic's message goes straight to stderr: the lines that led to it go first.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        if let Some(sink) = STDERR.get() {
            sink.write_pending_unless_busy();
        }
        report(panic);
    }));
}

/// `RUST_LOG` read as env_logger reads it, `info` when unset, with one exception: blank counts
/// as unset, as it does for every other variable here. env_logger leaves errors only, which hid
/// the start-up lines from a compose file passing `RUST_LOG: ${RUST_LOG}` through unset. A
/// malformed part is reported on stderr and ignored.
fn filter_from(rust_log: Result<String, std::env::VarError>) -> env_filter::Filter {
    let spec = rust_log.ok().filter(|spec| !spec.trim().is_empty()).unwrap_or_else(|| "info".to_owned());
    env_filter::Builder::new().parse(&spec).build()
}

/// The logger [`init`] installs: `RUST_LOG`'s filter (env_filter's own wrapper) in front of
/// our lines.
fn filtered<W: Write + Send + 'static>(
    filter: env_filter::Filter,
    sink: Arc<Gathering<W>>,
) -> env_filter::FilteredLog<Logger<W>> {
    env_filter::FilteredLog::new(Logger { sink }, filter)
}

/// Writes every gathered line now. Call before the process exits.
pub fn flush() {
    if let Some(sink) = STDERR.get() {
        sink.write_pending();
    }
}

/// Writes each line it is given into the gathering sink; [`filtered`] puts `RUST_LOG`'s filter
/// in front of it. Our own formatting rather than env_logger's: the `update received` line is written
/// tens of thousands of times a second under a flood. Alone, on one thread, a line costs
/// about 70 ns less than through env_logger (its formatter, its timestamp `String` and the
/// lock of its target, a second lock before the sink's); BENCHMARKS.md section 25.
struct Logger<W> {
    sink: Arc<Gathering<W>>,
}

impl<W: Write + Send + 'static> Log for Logger<W> {
    /// Everything: the filter in front decides.
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let urgent = record.level() <= Level::Warn;
        let write = |line: &mut Vec<u8>| {
            format_line(line, crate::time::Timestamp::now(), record);
            self.sink.push(line, urgent);
        };
        let reused = LINE.try_with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                write(&mut line);
                true
            }
            // A value being formatted for this thread's line logged a line of its own.
            Err(_) => false,
        });
        // Or the thread is exiting and its buffer is gone: a line logged from a destructor.
        if !matches!(reused, Ok(true)) {
            write(&mut Vec::new());
        }
    }

    fn flush(&self) {
        self.sink.write_pending();
    }
}

/// `2026-12-04T19:17:43.287 INFO  message`, with the target before the message when it is
/// not this crate (`WARN  hyper::proto: message`). `line` must be empty.
fn format_line(line: &mut Vec<u8>, now: crate::time::Timestamp, record: &Record<'_>) {
    now.write_rfc3339(line);
    // Milliseconds are enough for a log; the rest of the canonical text goes.
    line.truncate(23);
    line.extend_from_slice(match record.level() {
        Level::Error => b" ERROR ",
        Level::Warn => b" WARN  ",
        Level::Info => b" INFO  ",
        Level::Debug => b" DEBUG ",
        Level::Trace => b" TRACE ",
    });
    let target = record.target();
    if !target.starts_with("diun_dashboard") {
        line.extend_from_slice(target.as_bytes());
        line.extend_from_slice(b": ");
    }
    // Through `fmt::Write`: `io::Write::write_fmt` panics when a value's own formatting fails,
    // where a log line should just end there.
    let _ = std::fmt::write(&mut Bytes(line), *record.args());
    line.push(b'\n');
}

/// A byte buffer as a `fmt::Write`.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

/// Writes to `out` at once while writes are rare, and gathers them while they are not.
pub struct Gathering<W> {
    state: Mutex<State<W>>,
    armed: Condvar,
}

struct State<W> {
    out: W,
    pending: Vec<u8>,
    /// When `out` was last written; `None` before the first write.
    last_write: Option<Instant>,
    /// Set while the gathering thread has been asked to write `pending`.
    armed: bool,
    /// How long after a write further lines are gathered; zero without the gathering thread.
    gather: Duration,
}

impl<W: Write + Send + 'static> Gathering<W> {
    /// The sink, and the thread that writes what it gathers.
    pub fn start(out: W, gather: Duration) -> Arc<Self> {
        let sink = Arc::new(Self {
            state: Mutex::new(State { out, pending: Vec::new(), last_write: None, armed: false, gather }),
            armed: Condvar::new(),
        });
        let writer = Arc::clone(&sink);
        if std::thread::Builder::new().name("log-writer".into()).spawn(move || writer.run()).is_err() {
            // Then every line is written at once, as before there was gathering.
            sink.lock().gather = Duration::ZERO;
        }
        sink
    }

    /// Takes one or more whole lines; `urgent` ones are written at once, after what is gathered.
    pub fn push(&self, lines: &[u8], urgent: bool) {
        let mut state = self.lock();
        if urgent {
            state.write_pending();
        }
        let gather = state.gather;
        let quiet = state.last_write.is_none_or(|at| at.elapsed() >= gather);
        if urgent || (quiet && state.pending.is_empty()) {
            let _ = state.out.write_all(lines);
            state.last_write = Some(Instant::now());
            return;
        }
        state.pending.extend_from_slice(lines);
        if !state.armed {
            state.armed = true;
            self.armed.notify_one();
        }
    }

    /// Writes what is gathered, if anything.
    pub fn write_pending(&self) {
        let mut state = self.lock();
        state.write_pending();
    }

    /// [`Self::write_pending`], unless this or another thread holds the sink (a panic hook must
    /// not wait for it: the panic may have come from inside it).
    pub fn write_pending_unless_busy(&self) {
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        state.write_pending();
    }

    fn run(&self) {
        loop {
            let mut state = self.lock();
            while !state.armed {
                state = self.armed.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            let gather = state.gather;
            drop(state);
            std::thread::sleep(gather);
            let mut state = self.lock();
            state.write_pending();
            state.armed = false;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<W>> {
        // A panic while holding the lock leaves at worst a line half gathered.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<W: Write> State<W> {
    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let _ = self.out.write_all(&self.pending);
        let _ = self.out.flush();
        self.pending.clear();
        // A flood's buffer is not kept once it is over.
        self.pending.shrink_to(64 * 1024);
        self.last_write = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_warning_is_said_once_a_minute_with_the_count_of_those_unsaid() {
        let throttle = Throttle::new();
        assert_eq!(throttle.say_in(10).as_deref(), Some(""));
        assert_eq!(throttle.say_in(10), None);
        assert_eq!(throttle.say_in(10), None);
        assert_eq!(throttle.say_in(11).as_deref(), Some(" (and 2 more like it since the last, not logged)"));
        assert_eq!(throttle.say_in(12).as_deref(), Some(""));
    }

    fn record<'a>(level: Level, target: &'a str, args: std::fmt::Arguments<'a>) -> Record<'a> {
        Record::builder().level(level).target(target).args(args).build()
    }

    /// An output the test can read while the sink holds it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink that gathers for an hour (only flushes write), after its first line: "first".
    fn busy_log() -> (Shared, Arc<Gathering<Shared>>) {
        let out = Shared::default();
        let sink = Gathering::start(out.clone(), Duration::from_secs(3600));
        sink.push(b"first\n", false);
        (out, sink)
    }

    fn formatted(level: Level, target: &str, args: std::fmt::Arguments<'_>) -> String {
        let mut line = Vec::new();
        let at = crate::time::Timestamp::from_unix_micros(1_764_875_863_287_654);
        format_line(&mut line, at, &record(level, target, args));
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn a_line_has_the_time_to_the_millisecond_the_padded_level_and_the_message() {
        let image = "nginx:1";
        assert_eq!(
            formatted(
                Level::Info,
                "diun_dashboard::http::webhook",
                format_args!("update received: {image:?}")
            ),
            "2025-12-04T19:17:43.287 INFO  update received: \"nginx:1\"\n"
        );
        assert_eq!(
            formatted(Level::Error, "diun_dashboard", format_args!("x")),
            "2025-12-04T19:17:43.287 ERROR x\n"
        );
    }

    #[test]
    fn another_crates_line_names_its_target() {
        assert_eq!(
            formatted(Level::Warn, "hyper::proto::h1", format_args!("bad request")),
            "2025-12-04T19:17:43.287 WARN  hyper::proto::h1: bad request\n"
        );
    }

    /// A value that logs a line of its own while its line is being formatted.
    struct LogsWhileFormatted<'a>(&'a Logger<Shared>);

    impl std::fmt::Display for LogsWhileFormatted<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let inner = format_args!("inner");
            self.0.log(&record(Level::Info, "diun_dashboard", inner));
            f.write_str("outer")
        }
    }

    /// The messages written so far, without their timestamps.
    fn messages(out: &Shared) -> Vec<String> {
        out.text().lines().map(|line| line.get(24..).unwrap_or(line).to_owned()).collect()
    }

    #[test]
    fn a_line_logged_while_another_is_formatted_is_written_too() {
        let (out, sink) = busy_log();
        let logger = Logger { sink };
        let outer = LogsWhileFormatted(&logger);
        logger.log(&record(Level::Warn, "diun_dashboard", format_args!("{outer}")));
        assert_eq!(messages(&out), ["first", "INFO  inner", "WARN  outer"]);
    }

    /// A value whose formatting fails.
    struct Fails;

    impl std::fmt::Display for Fails {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            Err(std::fmt::Error)
        }
    }

    #[test]
    fn a_value_that_fails_to_format_ends_its_line_there() {
        let (out, sink) = busy_log();
        let logger = Logger { sink };
        logger.log(&record(Level::Error, "diun_dashboard", format_args!("a {Fails} b")));
        assert_eq!(messages(&out), ["first", "ERROR a "]);
    }

    /// What [`init`] installs keeps a module's debug lines and drops another's.
    #[test]
    fn the_installed_logger_writes_what_rust_log_lets_through() {
        let (out, sink) = busy_log();
        let logger = filtered(filter_from(Ok("warn,diun_dashboard::http=debug".into())), sink);
        let debug = |target| Metadata::builder().level(Level::Debug).target(target).build();
        assert!(logger.enabled(&debug("diun_dashboard::http::webhook")));
        assert!(!logger.enabled(&debug("diun_dashboard::store")));
        assert!(!logger.enabled(&debug("hyper::proto")));
        for target in ["hyper::proto", "diun_dashboard::http::webhook", "diun_dashboard::store"] {
            logger.log(&record(Level::Debug, target, format_args!("from {target}")));
        }
        logger.log(&record(Level::Warn, "diun_dashboard", format_args!("done")));
        assert_eq!(messages(&out), ["first", "DEBUG from diun_dashboard::http::webhook", "WARN  done"]);
    }

    /// Info lines wait to be written together on a busy log; a warning takes them out with it.
    #[test]
    fn info_lines_wait_on_a_busy_log_and_warnings_do_not() {
        let (out, sink) = busy_log();
        let logger = Logger { sink };
        logger.log(&record(Level::Info, "diun_dashboard", format_args!("gathered")));
        assert_eq!(messages(&out), ["first"]);
        logger.log(&record(Level::Warn, "diun_dashboard", format_args!("urgent")));
        assert_eq!(messages(&out), ["first", "INFO  gathered", "WARN  urgent"]);
    }

    #[test]
    fn rust_log_reads_as_env_loggers_but_blank_is_unset() {
        use log::LevelFilter;
        assert_eq!(filter_from(Err(std::env::VarError::NotPresent)).filter(), LevelFilter::Info);
        assert_eq!(filter_from(Ok(String::new())).filter(), LevelFilter::Info, "blank counts as unset");
        assert_eq!(filter_from(Ok("  ".into())).filter(), LevelFilter::Info);
        assert_eq!(filter_from(Ok("off".into())).filter(), LevelFilter::Off);
        assert_eq!(filter_from(Ok("warn".into())).filter(), LevelFilter::Warn);
        let per_module = filter_from(Ok("warn,diun_dashboard::http=debug".into()));
        let debug_in =
            |target| per_module.enabled(&Metadata::builder().level(Level::Debug).target(target).build());
        assert!(debug_in("diun_dashboard::http::webhook"));
        assert!(!debug_in("diun_dashboard::store"));
    }

    #[test]
    fn a_line_on_a_quiet_log_is_written_at_once() {
        let (out, _sink) = busy_log();
        assert_eq!(out.text(), "first\n");
    }

    #[test]
    fn lines_right_after_a_write_are_gathered_in_order_until_flushed() {
        let (out, sink) = busy_log();
        sink.push(b"second\n", false);
        sink.push(b"third\n", false);
        assert_eq!(out.text(), "first\n", "the busy log holds lines back");
        sink.write_pending();
        assert_eq!(out.text(), "first\nsecond\nthird\n");
        sink.write_pending();
        assert_eq!(out.text(), "first\nsecond\nthird\n", "nothing is written twice");
    }

    #[test]
    fn an_urgent_line_is_written_at_once_after_the_gathered_ones() {
        let (out, sink) = busy_log();
        sink.push(b"second\n", false);
        sink.push(b"warning\n", true);
        assert_eq!(out.text(), "first\nsecond\nwarning\n");
        sink.push(b"third\n", false);
        assert_eq!(out.text(), "first\nsecond\nwarning\n", "the log is still busy");
    }

    #[test]
    fn a_flush_that_must_not_wait_skips_a_held_sink() {
        let (out, sink) = busy_log();
        sink.push(b"second\n", false);
        let held = sink.lock();
        sink.write_pending_unless_busy();
        drop(held);
        assert_eq!(out.text(), "first\n");
        // The gathering thread takes the lock for a moment when it is woken: try again then.
        let deadline = Instant::now() + Duration::from_secs(30);
        while out.text() == "first\n" && Instant::now() < deadline {
            sink.write_pending_unless_busy();
        }
        assert_eq!(out.text(), "first\nsecond\n");
    }

    #[test]
    fn gathered_lines_are_written_without_a_flush() {
        let out = Shared::default();
        let sink = Gathering::start(out.clone(), Duration::from_millis(5));
        for n in 0..100 {
            sink.push(format!("line {n}\n").as_bytes(), false);
        }
        let expected: String = (0..100).map(|n| format!("line {n}\n")).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while out.text() != expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), expected);
    }
}
