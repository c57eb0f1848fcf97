//! When SQLite's write-ahead log is copied into the database file, and by whom.
//!
//! A thread of its own (the checkpointer) copies committed WAL pages into the database file,
//! so that the writer never waits for that copy: SQLite allows one checkpoint beside the
//! writer, and a passive checkpoint blocks neither of them.
//!
//! But the WAL can only start over from its beginning once a checkpoint has copied all of it,
//! and under a steady stream of writes the checkpointer never catches up with the very last
//! commit. So, once the WAL holds [`Limits::recycle_at`] frames, someone must copy the rest
//! while no commit comes in: the writer itself, between two batches. That checkpoint ends
//! with two fsyncs, and every queued webhook waits for them: with the database file's pages
//! left for the kernel to write whenever it liked, the last fsync found tens of megabytes to
//! write and took 40–60 ms, and the whole stall over 100 ms, once a second in the ingest
//! benchmark's flood. Instead the writer now asks the checkpointer to hurry: to copy without
//! its usual delay and to fsync the database file after each pass, until a pass finds little
//! to copy ([`Limits::short_tail`]). Then the checkpointer steps back and the writer copies
//! that rest, in 7–30 ms ([`Phase`]). [`Limits::force_at`] bounds the WAL should the
//! checkpointer not get there.

use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, ffi};

use super::sqlite::open_connection;

/// How long the checkpointer lets commits gather before it copies them into the database file:
/// a page written by many commits meanwhile is copied once.
const CHECKPOINT_DELAY: Duration = Duration::from_millis(100);
/// After this long without commits the checkpointer empties the WAL file, so that a flood does
/// not leave its WAL on disk. (`journal_size_limit` would cut it back on every restart, and
/// regrowing it cost a fifth of the ingest rate.)
const IDLE_BEFORE_TRUNCATE: Duration = Duration::from_secs(5);
/// How long emptying the WAL waits for readers still on it. It holds new writes back while it
/// waits, and it is tried again at the next idle moment anyway.
const TRUNCATE_WAIT: Duration = Duration::from_millis(100);

/// WAL sizes, in frames (a page and a 24-byte header each).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From this size on, the WAL is brought to its end so that it can start over. In the
    /// ingest benchmark's flood the checkpointer then needed 3–8 passes of 15–100 ms to get
    /// near the end, and the WAL started over at 30,000–60,000 frames (125–250 MB), every
    /// second or two. Recycling far more often cost the rate: at 8,000 frames, when the writer
    /// still copied it all, 20.5k against 25.8k webhooks/s at 30,000.
    pub recycle_at: i32,
    /// A pass that copied no more than this hands the rest to the writer, and the writer
    /// copies no more than this unless forced: 1,000–2,500 frames took it 7–30 ms, where the
    /// whole WAL's rest took it over 100 ms.
    pub short_tail: i32,
    /// From this size on the writer copies whatever is left, however long that takes.
    pub force_at: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { recycle_at: 16_000, short_tail: 2_500, force_at: 60_000 }
    }
}

/// What the writer and the checkpointer tell each other.
#[derive(Default)]
struct Progress {
    /// The last frame known to be copied into the database file, or past the WAL's end after
    /// it started over (the writer then treats nothing as copied).
    backfilled: AtomicI32,
    /// A [`Phase`].
    phase: AtomicU8,
}

impl Progress {
    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            1 => Phase::Hurrying,
            2 => Phase::WritersTurn,
            _ => Phase::Steady,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }
}

/// Where the recycling of the WAL stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// The checkpointer copies [`CHECKPOINT_DELAY`] after commits.
    Steady = 0,
    /// Asked by the writer: the checkpointer copies pass after pass, and makes the database
    /// file durable after each.
    Hurrying = 1,
    /// The checkpointer's last pass left a short tail: the writer copies it between two
    /// batches, while the checkpointer waits as when steady (a pass of its own would hold the
    /// lock the writer's checkpoint needs).
    WritersTurn = 2,
}

/// The outcome of one `PRAGMA wal_checkpoint`.
struct Pass {
    /// Another checkpoint was running, so this one did nothing.
    busy: bool,
    /// The last frame of the WAL copied into the database file.
    backfilled: i32,
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Pass> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(Pass { busy: row.get::<_, i32>(0)? != 0, backfilled: row.get(2)? })
    })
}

/// Frames from `earlier` up to `later`; all of `later` when `earlier` lies past it, that is
/// before the WAL started over.
fn frames_since(later: i32, earlier: i32) -> i32 {
    if earlier > later { later } else { later - earlier }
}

/// The checkpointer thread, and the writer's side of the WAL's recycling.
pub struct Checkpointer {
    /// The writer's WAL size after its last commit ([`watch_wal_size`]).
    wal_frames: Arc<AtomicI32>,
    progress: Arc<Progress>,
    limits: Limits,
    nudges: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the checkpointer thread on its own connection to the database at `path`, and
    /// takes over the checkpoints of `writer`, the connection that writes it.
    pub fn start(path: &Path, writer: &mut Connection) -> Result<Self, String> {
        Self::start_with(path, writer, Limits::default(), CHECKPOINT_DELAY, IDLE_BEFORE_TRUNCATE)
    }

    fn start_with(
        path: &Path,
        writer: &mut Connection,
        limits: Limits,
        delay: Duration,
        idle_before_truncate: Duration,
    ) -> Result<Self, String> {
        let wal_frames = watch_wal_size(writer).map_err(|err| err.to_string())?;
        let conn = open_connection(path).map_err(|err| err.to_string())?;
        // Only the TRUNCATE waits on others: a PASSIVE pass never does.
        conn.busy_timeout(TRUNCATE_WAIT).map_err(|err| err.to_string())?;
        let progress = Arc::new(Progress::default());
        let (nudges, nudged) = mpsc::sync_channel(1);
        let shared = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut wal_in_use = false;
                loop {
                    match nudged.recv_timeout(idle_before_truncate) {
                        Ok(()) => {
                            if shared.phase() != Phase::Hurrying {
                                // Cut short when the writer asks to hurry (or, rarely, by a
                                // spurious wake-up: then this pass just comes early).
                                std::thread::park_timeout(delay);
                            }
                            while nudged.try_recv().is_ok() {}
                            copy_pass(&conn, &shared, limits);
                            wal_in_use = true;
                        }
                        // Holds new writes back while it runs, which costs nothing when idle.
                        // One that a reader kept from the WAL's end, or that failed, is tried
                        // again at the next idle moment: an idle service keeps no flood's WAL.
                        Err(mpsc::RecvTimeoutError::Timeout) if wal_in_use => {
                            wal_in_use = match checkpoint(&conn, "TRUNCATE") {
                                Ok(pass) => pass.busy,
                                Err(err) => {
                                    log::warn!(
                                        "SQLite checkpoint failed (the next idle moment retries): {err}"
                                    );
                                    true
                                }
                            };
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .map_err(|err| format!("cannot start the checkpoint thread: {err}"))?;
        Ok(Self { wal_frames, progress, limits, nudges: Some(nudges), thread: Some(thread) })
    }

    /// The writer's part, after each batch is answered.
    pub fn after_commit(&self, writer: &Connection) {
        let wal_frames = self.wal_frames.load(Ordering::Relaxed);
        let backfilled = self.progress.backfilled.load(Ordering::Relaxed);
        match writers_move(self.limits, wal_frames, backfilled, self.progress.phase()) {
            WritersMove::Nothing => {}
            // The WAL started over without the writer (the checkpointer caught up in a lull).
            WritersMove::Settle => self.progress.set_phase(Phase::Steady),
            WritersMove::Hurry => {
                self.progress.set_phase(Phase::Hurrying);
                if let Some(thread) = &self.thread {
                    thread.thread().unpark();
                }
            }
            WritersMove::Checkpoint => match checkpoint(writer, "PASSIVE") {
                // Finished: the next batch's transaction starts the WAL over.
                Ok(pass) if !pass.busy => {
                    self.progress.backfilled.store(pass.backfilled, Ordering::Relaxed);
                    self.progress.set_phase(Phase::Steady);
                }
                // The checkpointer is in a pass; the next batch tries again.
                Ok(_) => {}
                Err(err) => log::warn!("SQLite checkpoint failed (the next batch will retry): {err}"),
            },
        }
        self.nudge();
    }

    /// Something was committed; a nudge while one is pending is the same nudge.
    fn nudge(&self) {
        if let Some(nudges) = &self.nudges {
            let _ = nudges.try_send(());
        }
    }

    pub fn stop(mut self) {
        self.nudges = None;
        if let Some(thread) = self.thread.take() {
            // A pass it was waiting to make runs now; then it sees the writer is gone.
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum WritersMove {
    Nothing,
    /// Back to [`Phase::Steady`].
    Settle,
    /// Ask the checkpointer to catch up.
    Hurry,
    /// Copy what is left of the WAL now.
    Checkpoint,
}

/// What the writer does about a WAL of `wal_frames` frames, of which the first `backfilled`
/// were copied as far as it knows.
fn writers_move(limits: Limits, wal_frames: i32, backfilled: i32, phase: Phase) -> WritersMove {
    if wal_frames < limits.recycle_at {
        return if phase == Phase::Steady { WritersMove::Nothing } else { WritersMove::Settle };
    }
    let uncopied = frames_since(wal_frames, backfilled);
    if phase == Phase::WritersTurn || uncopied <= limits.short_tail || wal_frames >= limits.force_at {
        WritersMove::Checkpoint
    } else if phase == Phase::Steady {
        WritersMove::Hurry
    } else {
        WritersMove::Nothing
    }
}

/// One passive checkpoint by the checkpointer thread.
fn copy_pass(conn: &Connection, progress: &Progress, limits: Limits) {
    let pass = match checkpoint(conn, "PASSIVE") {
        Ok(pass) if !pass.busy => pass,
        // The writer is finishing the WAL itself.
        Ok(_) => return,
        Err(err) => {
            log::warn!("SQLite checkpoint failed (the next one will retry): {err}");
            return;
        }
    };
    let before = progress.backfilled.load(Ordering::Relaxed);
    let copied = frames_since(pass.backfilled, before);
    let hurrying = progress.phase() == Phase::Hurrying;
    // SQLite fsyncs the database file only in a checkpoint that reaches the WAL's end: the
    // writer's, which would otherwise find every page copied since the last one to write.
    if hurrying
        && copied > 0
        && let Err(err) = sync_database_file(conn)
    {
        log::warn!("fsync of the SQLite database file failed (the writer's checkpoint will retry): {err}");
    }
    // Published after the fsync, so that the writer's checkpoint does not wait for it.
    progress.backfilled.store(pass.backfilled, Ordering::Relaxed);
    // A pass copies what came during the last one: once that is short, further passes would
    // not shorten it much, and only the writer can copy the very last commit.
    if hurrying && copied <= limits.short_tail {
        progress.set_phase(Phase::WritersTurn);
    }
}

/// fsyncs the database file through SQLite's own handle on it. A descriptor of our own would
/// be wrong: closing it drops every POSIX lock this process holds on the file (the writer's
/// and the readers'), and another process could then take the database over.
fn sync_database_file(conn: &Connection) -> Result<(), String> {
    let file = super::wal_writes::file_object(conn, ffi::SQLITE_FCNTL_FILE_POINTER)
        .ok_or("SQLite has no database file to sync")?;
    // SAFETY: `file` is SQLite's open file object, its methods set while it is open.
    let sync = unsafe { (*file).pMethods.as_ref() }
        .and_then(|methods| methods.xSync)
        .ok_or("SQLite's database file has no sync method")?;
    // SAFETY: as above; xSync is called on the file it belongs to, on the connection's thread.
    match unsafe { sync(file, ffi::SQLITE_SYNC_NORMAL | ffi::SQLITE_SYNC_DATAONLY) } {
        ffi::SQLITE_OK => Ok(()),
        code => Err(format!("SQLite error {code}")),
    }
}

/// The WAL's size in frames after each commit of `conn`, from SQLite's WAL hook. Setting the
/// hook turns SQLite's own automatic checkpoints off for that connection, which is the point.
fn watch_wal_size(conn: &mut Connection) -> rusqlite::Result<Arc<AtomicI32>> {
    let frames = Arc::new(AtomicI32::new(0));
    let recorded = Arc::clone(&frames);
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: c_int| {
        recorded.store(pages, Ordering::Relaxed);
        Ok(())
    }))?;
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scratch::Scratch;

    const LIMITS: Limits = Limits { recycle_at: 100, short_tail: 10, force_at: 1_000 };

    #[test]
    fn the_writer_copies_only_a_short_tail_itself() {
        use Phase::*;
        assert_eq!(writers_move(LIMITS, 99, 0, Steady), WritersMove::Nothing);
        assert_eq!(writers_move(LIMITS, 99, 0, Hurrying), WritersMove::Settle);
        assert_eq!(writers_move(LIMITS, 99, 0, WritersTurn), WritersMove::Settle);
        assert_eq!(writers_move(LIMITS, 100, 0, Steady), WritersMove::Hurry);
        assert_eq!(writers_move(LIMITS, 500, 489, Steady), WritersMove::Hurry);
        assert_eq!(writers_move(LIMITS, 500, 489, Hurrying), WritersMove::Nothing);
        assert_eq!(writers_move(LIMITS, 500, 0, WritersTurn), WritersMove::Checkpoint);
        assert_eq!(writers_move(LIMITS, 500, 490, Steady), WritersMove::Checkpoint);
        assert_eq!(writers_move(LIMITS, 500, 490, Hurrying), WritersMove::Checkpoint);
        assert_eq!(writers_move(LIMITS, 1_000, 0, Hurrying), WritersMove::Checkpoint);
        // What was copied of the WAL before it started over says nothing about this one.
        assert_eq!(writers_move(LIMITS, 200, 50_000, Steady), WritersMove::Hurry);
    }

    /// A new database in a scratch folder, its writer, and a checkpointer for it.
    fn start(
        name: &str,
        limits: Limits,
        delay: Duration,
        idle_before_truncate: Duration,
    ) -> (Scratch, Connection, Checkpointer) {
        let scratch = Scratch::new(name);
        let path = scratch.path().join("db.sqlite");
        let mut writer = open_connection(&path).unwrap();
        writer.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let checkpointer =
            Checkpointer::start_with(&path, &mut writer, limits, delay, idle_before_truncate).unwrap();
        (scratch, writer, checkpointer)
    }

    fn write(writer: &Connection, bytes: i64) {
        writer.execute("INSERT INTO t VALUES (zeroblob(?1))", [bytes]).unwrap();
    }

    #[test]
    fn the_writer_starts_the_wal_over_under_a_steady_stream_of_writes() {
        // With commits back to back, the checkpointer never copies the very last one: only
        // the writer's own checkpoint lets the WAL start over. Every tail counts as short here.
        let limits = Limits { recycle_at: 100, short_tail: i32::MAX, force_at: i32::MAX };
        let (_scratch, writer, checkpointer) =
            start("wal-recycled", limits, Duration::from_millis(1), Duration::from_secs(60));
        let (mut largest, mut started_over) = (0, false);
        for _ in 0..10_000 {
            write(&writer, 100);
            let frames = checkpointer.wal_frames.load(Ordering::Relaxed);
            started_over = frames < largest;
            if started_over {
                break;
            }
            largest = frames;
            checkpointer.after_commit(&writer);
        }
        checkpointer.stop();
        assert!(started_over, "the WAL grew to {largest} frames and never started over");
    }

    #[test]
    fn a_hurried_checkpointer_copies_at_once_then_leaves_the_rest_to_the_writer() {
        // Left alone, it would wait a minute after each commit before it copied anything.
        let (_scratch, writer, checkpointer) =
            start("wal-hurried", LIMITS, Duration::from_secs(60), Duration::from_secs(60));
        write(&writer, 100);
        checkpointer.after_commit(&writer);
        // Now (or soon) in that minute's wait, which the writer's request must cut short.
        std::thread::sleep(Duration::from_millis(50));
        while checkpointer.wal_frames.load(Ordering::Relaxed) < LIMITS.recycle_at + LIMITS.short_tail {
            write(&writer, 100);
        }
        checkpointer.after_commit(&writer);
        let eventually = |done: &dyn Fn() -> bool| {
            (0..400).any(|_| {
                std::thread::sleep(Duration::from_millis(25));
                done()
            })
        };
        let copied = eventually(&|| checkpointer.progress.backfilled.load(Ordering::Relaxed) > 0);
        // The next pass finds nothing new to copy: short enough for the writer.
        checkpointer.nudge();
        let stepped_back = eventually(&|| checkpointer.progress.phase() == Phase::WritersTurn);
        checkpointer.stop();
        assert!(copied, "the checkpointer copied nothing within 10 s of being asked to hurry");
        assert!(stepped_back, "the checkpointer kept the WAL's last stretch from the writer");
    }

    /// Whether the file at `wal` is cut to nothing within 5 s.
    fn emptied_within_5_s(wal: &Path) -> bool {
        (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(25));
            std::fs::metadata(wal).unwrap().len() == 0
        })
    }

    #[test]
    fn the_wal_is_emptied_once_writes_stop() {
        let (scratch, writer, checkpointer) =
            start("wal-emptied", LIMITS, Duration::from_millis(1), Duration::from_millis(50));
        write(&writer, 100_000);
        let wal = scratch.path().join("db.sqlite-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 100_000);
        checkpointer.nudge();
        let emptied = emptied_within_5_s(&wal);
        checkpointer.stop();
        assert!(emptied, "the WAL file was not truncated within 5 s of the last commit");
    }

    #[test]
    fn a_wal_a_reader_kept_from_emptying_is_emptied_once_the_reader_is_done() {
        let (scratch, writer, checkpointer) =
            start("wal-reader", LIMITS, Duration::from_millis(1), Duration::from_millis(50));
        write(&writer, 100_000);
        // A read transaction on the WAL's snapshot, held across several idle moments.
        let reader = open_connection(&scratch.path().join("db.sqlite")).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        reader.query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0)).unwrap();
        checkpointer.nudge();
        std::thread::sleep(Duration::from_millis(500));
        let wal = scratch.path().join("db.sqlite-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0, "emptied under a reader");
        reader.execute_batch("COMMIT").unwrap();
        let emptied = emptied_within_5_s(&wal);
        checkpointer.stop();
        assert!(emptied, "the WAL file was not truncated within 5 s of its reader leaving");
    }

    #[test]
    fn the_database_file_is_synced_through_sqlites_own_handle() {
        let (scratch, writer, checkpointer) =
            start("db-synced", LIMITS, Duration::from_secs(60), Duration::from_secs(60));
        checkpointer.stop();
        drop(writer);
        let conn = open_connection(&scratch.path().join("db.sqlite")).unwrap();
        assert_eq!(sync_database_file(&conn), Ok(()));
    }

    #[test]
    fn the_wal_is_kept_while_writes_may_still_come() {
        // Cutting the WAL after every checkpoint made it regrow under load: only idleness may.
        let (scratch, writer, checkpointer) =
            start("wal-kept", LIMITS, Duration::from_millis(1), Duration::from_secs(60));
        write(&writer, 100_000);
        checkpointer.nudge();
        let copied = (0..400).any(|_| {
            std::thread::sleep(Duration::from_millis(25));
            checkpointer.progress.backfilled.load(Ordering::Relaxed) > 0
        });
        assert!(copied, "no passive checkpoint within 10 s of the nudge");
        // The pass has run; a cut would follow it on the same thread at once.
        std::thread::sleep(Duration::from_millis(100));
        let wal = std::fs::metadata(scratch.path().join("db.sqlite-wal")).unwrap().len();
        checkpointer.stop();
        assert!(wal > 100_000, "the WAL was cut back to {wal} bytes after a passive checkpoint");
    }
}
