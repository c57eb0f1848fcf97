//! The log: `RUST_LOG` (default `info`), one line per record with a UTC timestamp, on stderr.
//!
//! Under a flood of webhooks the service logs one `update received` line per webhook, tens of
//! thousands a second, and one `write` to stderr per line cost about 5% of the ingest rate.
//! So lines go through a [`Gathering`] sink, whose own thread writes them: a line that comes
//! while the log is quiet at once, lines that follow within [`GATHER`] of a write gathered and
//! written together, at most [`GATHER`] later. A burst thus costs a few hundred writes a
//! second, and a quiet log reads as it did. No thread that logs waits for stderr: one that
//! stops taking bytes stalls the log alone, and what it cannot hold is dropped and counted.
//!
//! Warnings and errors are written at once, with whatever was gathered before them; the
//! start-up lines are out before the service answers (`run` flushes once it listens), and so
//! are the lines before a panic's message. The price: a process killed with SIGKILL (or
//! aborted) loses the lines of its last moment. Every orderly exit calls [`flush`], which
//! waits two seconds at most for a stuck output.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
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
///
/// One more: unless `RUST_LOG` names `tokio_postgres`, that crate logs at `info` at most.
/// At `debug` it logs every statement with its parameters, for a batch of webhooks a line of
/// hundreds of kilobytes: `RUST_LOG=debug`, meant to show this service's own debug lines, wrote
/// megabytes a second under load and buried them.
fn filter_from(rust_log: Result<String, std::env::VarError>) -> env_filter::Filter {
    const CHATTY: &str = "tokio_postgres";
    let spec = rust_log.ok().filter(|spec| !spec.trim().is_empty()).unwrap_or_else(|| "info".to_owned());
    let given = env_filter::Builder::new().parse(&spec).build();
    let debug = Metadata::builder().level(Level::Debug).target(CHATTY).build();
    if spec.contains(CHATTY) || !given.enabled(&debug) {
        return given;
    }
    env_filter::Builder::new().parse(&spec).filter_module(CHATTY, log::LevelFilter::Info).build()
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
        sink.flush_within(FLUSH_LIMIT);
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
        self.sink.flush_within(FLUSH_LIMIT);
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

/// Lines for `out`, written by a thread of its own: at once while the log is quiet, gathered
/// for up to [`GATHER`] while it is busy. The threads that log only append to a buffer, so an
/// output that stops taking bytes (a full stderr pipe: a blocking log driver, a stuck shipper,
/// a paused terminal) holds up the log-writer thread alone, never the webhooks whose lines
/// wait. While it is stuck the buffer grows to [`PENDING_LIMIT`] at most; from the first line
/// that does not fit until the next write, lines are dropped and counted, and the count is
/// logged where they would have been. (Should the thread fail to start, each thread writes its
/// own lines, waiting for the output as it must.)
pub struct Gathering<W> {
    queue: Mutex<Queue>,
    /// Wakes the writer thread when a write falls due sooner than it was waiting for.
    wake: Condvar,
    /// Tells [`Self::flush_within`] that a write has ended.
    written: Condvar,
    /// Held while writing: lines leave the queue and reach `out` in the order they came.
    out: Mutex<Output<W>>,
}

/// How many bytes of lines may wait for a stuck output: some twenty thousand lines, a
/// moment of a flood of webhooks, hours of an ordinary log.
pub const PENDING_LIMIT: usize = 2 * 1024 * 1024;

/// How long [`flush`] waits for the output: an exit is not held up for good by a stuck one.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

struct Queue {
    pending: Vec<u8>,
    limit: usize,
    /// Lines turned away since the last write.
    dropped: u64,
    /// Pushes so far, and those a write has put out (or counted as dropped).
    pushed: u64,
    written: u64,
    /// When the last write began: lines that come while a stuck output is finally taking a
    /// write are due at once, not [`GATHER`] after it ends. `None` before the first.
    last_write: Option<Instant>,
    /// When the writer thread is to write next; `None` while nothing is waiting.
    due: Option<Instant>,
    /// How long after a write further lines are gathered.
    gather: Duration,
    /// Whether a writer thread runs; without one, the threads that log write themselves.
    writer: bool,
}

struct Output<W> {
    out: W,
    /// The buffer that takes the queue's place while its lines are written: a flood reuses two
    /// buffers rather than growing a new one every few milliseconds.
    spare: Vec<u8>,
}

impl<W: Write + Send + 'static> Gathering<W> {
    /// The sink, and the thread that writes what it gathers.
    pub fn start(out: W, gather: Duration) -> Arc<Self> {
        Self::start_with(out, gather, PENDING_LIMIT, true)
    }

    fn start_with(out: W, gather: Duration, limit: usize, spawn_writer: bool) -> Arc<Self> {
        let sink = Arc::new(Self {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                limit,
                dropped: 0,
                pushed: 0,
                written: 0,
                last_write: None,
                due: None,
                gather,
                writer: spawn_writer,
            }),
            wake: Condvar::new(),
            written: Condvar::new(),
            out: Mutex::new(Output { out, spare: Vec::new() }),
        });
        let writer = Arc::clone(&sink);
        if spawn_writer
            && std::thread::Builder::new().name("log-writer".into()).spawn(move || writer.run()).is_err()
        {
            sink.queue().writer = false;
        }
        sink
    }

    /// Takes one or more whole lines; `urgent` ones are written at once, after what is gathered.
    pub fn push(&self, lines: &[u8], urgent: bool) {
        let mut queue = self.queue();
        queue.pushed += 1;
        // Once one is dropped, so is every line until the next write: the count's notice then
        // stands where they would have.
        let dropping = queue.dropped > 0 || queue.pending.len() + lines.len() > queue.limit;
        if dropping {
            queue.dropped += lines.iter().filter(|&&byte| byte == b'\n').count().max(1) as u64;
        } else {
            queue.pending.extend_from_slice(lines);
        }
        if !queue.writer {
            drop(queue);
            self.write_pending();
            return;
        }
        let now = Instant::now();
        let at = match queue.last_write {
            Some(last) if !urgent && !dropping => now.max(last + queue.gather),
            _ => now,
        };
        if queue.due.is_none_or(|due| at < due) {
            queue.due = Some(at);
            self.wake.notify_one();
        }
    }

    /// Writes what is gathered, if anything, waiting for the output as long as it takes.
    fn write_pending(&self) {
        let output = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        self.write_from_queue(output, self.queue());
    }

    /// Has everything pushed so far written, waiting `limit` at most (for a stuck output).
    pub fn flush_within(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut queue = self.queue();
        if !queue.writer {
            drop(queue);
            self.write_pending();
            return;
        }
        let pushed = queue.pushed;
        queue.due = Some(Instant::now());
        self.wake.notify_one();
        while queue.written < pushed {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return };
            queue = self.written.wait_timeout(queue, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// [`Self::write_pending`], unless this or another thread holds the sink (a panic hook must
    /// not wait for it: the panic may have come from inside it).
    pub fn write_pending_unless_busy(&self) {
        let Some(output) = unless_busy(self.out.try_lock()) else { return };
        let Some(queue) = unless_busy(self.queue.try_lock()) else { return };
        self.write_from_queue(output, queue);
    }

    fn write_from_queue<'a>(
        &'a self,
        mut output: MutexGuard<'a, Output<W>>,
        mut queue: MutexGuard<'a, Queue>,
    ) {
        let output = &mut *output;
        queue.due = None;
        let pushed = queue.pushed;
        if !queue.pending.is_empty() || queue.dropped > 0 {
            queue.last_write = Some(Instant::now());
            std::mem::swap(&mut queue.pending, &mut output.spare);
            let dropped = std::mem::take(&mut queue.dropped);
            // Lines logged while these are written wait in the queue, not for the output.
            drop(queue);
            if dropped > 0 {
                // Formatted apart: `format_line` starts from an empty buffer.
                let mut notice = Vec::new();
                let now = crate::time::Timestamp::now();
                format_line(
                    &mut notice,
                    now,
                    &warning(format_args!("{dropped} log lines dropped: the output took none for a while")),
                );
                output.spare.extend_from_slice(&notice);
            }
            let _ = output.out.write_all(&output.spare);
            let _ = output.out.flush();
            output.spare.clear();
            // A flood's buffer is not kept once it is over.
            output.spare.shrink_to(64 * 1024);
            queue = self.queue();
        }
        queue.written = queue.written.max(pushed);
        self.written.notify_all();
    }

    fn run(&self) {
        loop {
            let mut queue = self.queue();
            loop {
                let now = Instant::now();
                queue = match queue.due {
                    Some(due) if due <= now => break,
                    Some(due) => {
                        self.wake.wait_timeout(queue, due - now).unwrap_or_else(PoisonError::into_inner).0
                    }
                    None => self.wake.wait(queue).unwrap_or_else(PoisonError::into_inner),
                };
            }
            drop(queue);
            self.write_pending();
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves at worst a line half gathered.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn unless_busy<T>(locked: std::sync::TryLockResult<T>) -> Option<T> {
    match locked {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// This module's own warning about the log.
fn warning<'a>(args: std::fmt::Arguments<'a>) -> Record<'a> {
    Record::builder().level(Level::Warn).target("diun_dashboard::logging").args(args).build()
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

        /// The text once it holds `lines` lines (the writer thread writes them soon after they
        /// are logged), or whatever it holds after 30 s.
        fn text_of(&self, lines: usize) -> String {
            self.text_once(|text| text.lines().count() >= lines)
        }

        /// The text once `done` says so, or whatever it holds after 30 s.
        fn text_once(&self, done: impl Fn(&str) -> bool) -> String {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !done(&self.text()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.text()
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
        assert_eq!(out.text_of(1), "first\n", "a line on a quiet log is written at once");
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

    /// The messages written once there are `lines` of them, without their timestamps.
    fn messages(out: &Shared, lines: usize) -> Vec<String> {
        out.text_of(lines).lines().map(|line| line.get(24..).unwrap_or(line).to_owned()).collect()
    }

    #[test]
    fn a_line_logged_while_another_is_formatted_is_written_too() {
        let (out, sink) = busy_log();
        let logger = Logger { sink };
        let outer = LogsWhileFormatted(&logger);
        logger.log(&record(Level::Warn, "diun_dashboard", format_args!("{outer}")));
        assert_eq!(messages(&out, 3), ["first", "INFO  inner", "WARN  outer"]);
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
        assert_eq!(messages(&out, 2), ["first", "ERROR a "]);
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
        assert_eq!(messages(&out, 3), ["first", "DEBUG from diun_dashboard::http::webhook", "WARN  done"]);
    }

    /// Info lines wait to be written together on a busy log; a warning takes them out with it.
    #[test]
    fn info_lines_wait_on_a_busy_log_and_warnings_do_not() {
        let (out, sink) = busy_log();
        let logger = Logger { sink };
        logger.log(&record(Level::Info, "diun_dashboard", format_args!("gathered")));
        assert!(gathered_for_long(&logger.sink), "the info line waits for the gathering to end");
        assert_eq!(messages(&out, 1), ["first"]);
        logger.log(&record(Level::Warn, "diun_dashboard", format_args!("urgent")));
        assert_eq!(messages(&out, 3), ["first", "INFO  gathered", "WARN  urgent"]);
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
    fn tokio_postgres_stays_at_info_unless_rust_log_names_it() {
        let enabled = |spec: &str, level: Level, target: &str| {
            filter_from(Ok(spec.into())).enabled(&Metadata::builder().level(level).target(target).build())
        };
        assert!(enabled("debug", Level::Debug, "diun_dashboard::store"));
        assert!(enabled("debug", Level::Debug, "hyper::proto"));
        assert!(
            !enabled("debug", Level::Debug, "tokio_postgres::query"),
            "its statements and their parameters"
        );
        assert!(!enabled("trace", Level::Debug, "tokio_postgres"));
        assert!(enabled("debug", Level::Info, "tokio_postgres::connection"), "the server's notices");
        assert!(!enabled("warn", Level::Info, "tokio_postgres::connection"), "never raised to info");
        assert!(enabled("debug,tokio_postgres=debug", Level::Debug, "tokio_postgres::query"));
        assert!(enabled("trace,tokio_postgres::query=debug", Level::Debug, "tokio_postgres::query"));
    }

    #[test]
    fn a_line_on_a_quiet_log_is_written_at_once() {
        let (out, _sink) = busy_log();
        assert_eq!(out.text(), "first\n");
    }

    /// Whether the sink holds lines and means to write them in half an hour or later.
    fn gathered_for_long<W>(sink: &Gathering<W>) -> bool {
        let queue = sink.queue.lock().unwrap();
        !queue.pending.is_empty()
            && queue.due.is_some_and(|due| due > Instant::now() + Duration::from_secs(1800))
    }

    #[test]
    fn lines_right_after_a_write_are_gathered_in_order_until_flushed() {
        let (out, sink) = busy_log();
        sink.push(b"second\n", false);
        sink.push(b"third\n", false);
        assert!(gathered_for_long(&sink));
        assert_eq!(out.text(), "first\n", "the busy log holds lines back");
        sink.flush_within(Duration::from_secs(30));
        assert_eq!(out.text(), "first\nsecond\nthird\n", "a flush returns once they are written");
        sink.flush_within(Duration::from_secs(30));
        assert_eq!(out.text(), "first\nsecond\nthird\n", "nothing is written twice");
    }

    #[test]
    fn without_a_writer_thread_each_line_is_written_by_the_thread_that_logs_it() {
        let out = Shared::default();
        let sink = Gathering::start_with(out.clone(), Duration::from_secs(3600), PENDING_LIMIT, false);
        sink.push(b"first\n", false);
        sink.push(b"second\n", false);
        assert_eq!(out.text(), "first\nsecond\n");
    }

    #[test]
    fn an_urgent_line_is_written_at_once_after_the_gathered_ones() {
        let (out, sink) = busy_log();
        sink.push(b"second\n", false);
        sink.push(b"warning\n", true);
        assert_eq!(out.text_of(3), "first\nsecond\nwarning\n");
        sink.push(b"third\n", false);
        assert!(gathered_for_long(&sink), "the log is still busy");
        assert_eq!(out.text(), "first\nsecond\nwarning\n");
    }

    #[test]
    fn a_flush_that_must_not_wait_skips_a_held_sink() {
        let (out, sink) = busy_log();
        sink.push(b"second\n", false);
        let held = sink.out.lock().unwrap();
        sink.write_pending_unless_busy();
        drop(held);
        let held = sink.queue.lock().unwrap();
        sink.write_pending_unless_busy();
        drop(held);
        assert_eq!(out.text(), "first\n");
        // The writer thread holds the output for a moment when it writes: try again then.
        let deadline = Instant::now() + Duration::from_secs(30);
        while out.text() == "first\n" && Instant::now() < deadline {
            sink.write_pending_unless_busy();
            std::thread::sleep(Duration::from_millis(1));
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
        assert_eq!(out.text_once(|text| text == expected), expected);
    }

    /// An output that takes nothing until it is opened, as a stderr pipe nobody reads; it says
    /// when a write has begun.
    #[derive(Clone, Default)]
    struct Stuck {
        taken: Shared,
        /// (a write has begun, the output is open)
        state: Arc<(Mutex<(bool, bool)>, Condvar)>,
    }

    impl Stuck {
        fn open(&self) {
            self.state.0.lock().unwrap().1 = true;
            self.state.1.notify_all();
        }

        fn wait_for_a_write(&self) {
            let (state, changed) = &*self.state;
            let _begun = changed.wait_while(state.lock().unwrap(), |(begun, _)| !*begun).unwrap();
        }
    }

    impl Write for Stuck {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let (state, changed) = &*self.state;
            let mut state = state.lock().unwrap();
            state.0 = true;
            changed.notify_all();
            let _open = changed.wait_while(state, |(_, open)| !*open).unwrap();
            self.taken.write(bytes)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_holds_up_no_thread_that_logs_and_what_it_cannot_hold_is_counted() {
        let out = Stuck::default();
        // Room for twelve of the lines below while the output is stuck.
        let sink = Gathering::start_with(out.clone(), Duration::from_millis(5), 100, true);
        let (pushed, all_pushed) = std::sync::mpsc::channel();
        let (logging, stuck) = (Arc::clone(&sink), out.clone());
        std::thread::spawn(move || {
            logging.push(b"line 00\n", true);
            stuck.wait_for_a_write();
            for n in 1..50 {
                logging.push(format!("line {n:02}\n").as_bytes(), n % 10 == 0);
            }
            // Short enough to fit, but after lines that were dropped.
            logging.push(b"x\n", false);
            // An exit does not wait for a stuck output for good either.
            logging.flush_within(Duration::from_millis(10));
            let _ = pushed.send(());
        });
        let pushed = all_pushed.recv_timeout(Duration::from_secs(30));
        out.open();
        assert!(pushed.is_ok(), "the thread that logged waited for the stuck output");

        // Until the next write, lines are dropped, so that the count's notice stands in order.
        sink.flush_within(Duration::from_secs(30));
        sink.push(b"after\n", false);
        sink.flush_within(Duration::from_secs(30));
        let text = out.taken.text();
        let mut lines: Vec<&str> = text.lines().map(|line| line.get(24..).unwrap_or(line)).collect();
        assert_eq!(lines.pop(), Some("after"), "{text}");
        assert_eq!(
            lines.pop(),
            Some("WARN  38 log lines dropped: the output took none for a while"),
            "{text}"
        );
        let in_order: Vec<String> = (0..13).map(|n| format!("line {n:02}")).collect();
        assert_eq!(lines, in_order, "the first line, then those that fitted while it was written");
    }
}
