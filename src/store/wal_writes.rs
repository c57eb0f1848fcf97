//! A SQLite VFS that writes a commit's WAL frames with one system call instead of two per page.
//!
//! SQLite appends each WAL frame as two `pwrite`s: its 24-byte header, then the page. A webhook
//! dirtied about three pages, so the writer thread made some 130,000 `pwrite`s a second in the
//! ingest benchmark and spent more than a third of its time in them, most of it in the
//! kernel's per-call work rather than in copying bytes. This VFS wraps the default one and,
//! for WAL files only, gathers consecutive writes in a buffer that goes out in one `pwrite`:
//!
//! - when the header of a commit frame arrives (its "database size" field is not zero), the
//!   buffer and that header are written at once, and the commit frame's page right after it.
//!   SQLite publishes a commit to other connections (in shared memory) only after writing that
//!   page, so readers, the checkpointer and crash recovery never find a committed frame
//!   missing, and a commit is on its way to the disk exactly when it was before;
//! - any other call on the WAL file (read, sync, size, truncate, file control) writes the
//!   buffer first, so SQLite never sees the file differ from what it wrote; a rollback
//!   ([`discard_uncommitted`]) and closing the file drop it, as it then holds only frames of a
//!   transaction that did not commit;
//! - once gathered frames fail to go out (a full disk), every later write fails too, until
//!   the rollback: SQLite must not commit a transaction some of whose frames are not in the file.
//!
//! Frames still in the buffer belong to a transaction that has not committed; losing them in a
//! crash loses nothing SQLite would keep. Database files, journals and the rest go straight to
//! the default VFS: they are opened in SQLite's own file structure, untouched.

use std::ffi::{CStr, c_int, c_void};
use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open with to write their WAL through this VFS.
pub const NAME: &CStr = c"diun-batched-wal";

/// Bytes gathered at most before they are written anyway (a big transaction's frames).
const MAX_PENDING: usize = 1 << 20;
/// Bytes per call to the default VFS: its unix `pwrite` takes at most 128 KiB - 1 at a time.
const MAX_WRITE: usize = 124 * 1024;
/// Size of a WAL frame header; bytes 4..8 hold the database size, set only in commit frames.
const FRAME_HEADER: usize = 24;

/// Registers the VFS (once per process); afterwards [`NAME`] can be opened.
pub fn register() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED.get_or_init(register_once).clone()
}

/// The default VFS this one wraps, found at registration.
static BASE: OnceLock<BaseVfs> = OnceLock::new();

struct BaseVfs(*mut ffi::sqlite3_vfs);
// SAFETY: a registered sqlite3_vfs is immutable and meant to be used from every thread.
unsafe impl Send for BaseVfs {}
unsafe impl Sync for BaseVfs {}

fn register_once() -> Result<(), String> {
    // SAFETY: sqlite3_vfs_find is thread-safe; a null name asks for the default VFS.
    let base = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    if base.is_null() {
        return Err("SQLite has no default VFS".into());
    }
    let base = BASE.get_or_init(|| BaseVfs(base)).0;
    // SAFETY: `base` points to a registered VFS, which SQLite never frees or changes.
    let mut vfs = unsafe { *base };
    let base_file = usize::try_from(vfs.szOsFile).map_err(|_| "invalid szOsFile".to_string())?;
    vfs.szOsFile = c_int::try_from(base_file_offset() + base_file)
        .map_err(|_| "the WAL file structure is too large".to_string())?;
    vfs.zName = NAME.as_ptr();
    vfs.pNext = ptr::null_mut();
    vfs.xOpen = Some(open);
    // Every other entry is the default VFS's own, which only reads pAppData (copied above).
    let vfs = Box::leak(Box::new(vfs));
    // SAFETY: `vfs` lives for the rest of the process, as SQLite requires.
    match unsafe { ffi::sqlite3_vfs_register(vfs, 0) } {
        ffi::SQLITE_OK => Ok(()),
        code => Err(format!("cannot register the SQLite VFS (error {code})")),
    }
}

/// A WAL file: SQLite's handle, the default VFS's file after it, and the frames not written yet.
#[repr(C)]
struct WalFile {
    handle: ffi::sqlite3_file,
    gather: Gather,
}

/// Which of SQLite's WAL writes go out, and when: the rules of this module, free of FFI.
#[derive(Default)]
struct Gather {
    pending: Vec<u8>,
    pending_offset: i64,
    /// The commit frame's header went out; its page comes next and goes straight out too.
    commit_page_next: bool,
    /// Why gathered frames could not be written (SQLITE_OK while none were lost). SQLite believes
    /// them written, and when the failed write was a flush ahead of a read, it may roll back only
    /// the statement: its transaction would then commit over frames missing from the file. Every
    /// write is refused with this until the transaction's rollback ([`Gather::discard`]), so it
    /// cannot.
    lost: c_int,
}

impl Gather {
    /// Takes one write from SQLite; `out` writes bytes at an offset of the file.
    fn write(&mut self, data: &[u8], offset: i64, out: &mut impl FnMut(&[u8], i64) -> c_int) -> c_int {
        if self.lost != ffi::SQLITE_OK {
            return self.lost;
        }
        if std::mem::take(&mut self.commit_page_next) {
            return match self.flush(out) {
                ffi::SQLITE_OK => out(data, offset),
                failed => failed,
            };
        }
        let end = self.pending_offset + self.pending.len() as i64;
        if !self.pending.is_empty() && (offset != end || self.pending.len() + data.len() > MAX_PENDING) {
            let rc = self.flush(out);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if self.pending.is_empty() {
            self.pending_offset = offset;
        }
        self.pending.extend_from_slice(data);
        if !is_commit_header(data) {
            return ffi::SQLITE_OK;
        }
        let rc = self.flush(out);
        self.commit_page_next = rc == ffi::SQLITE_OK;
        rc
    }

    /// Forgets what is pending: frames of a transaction that rolled back.
    fn discard(&mut self) {
        self.pending.clear();
        self.commit_page_next = false;
        self.lost = ffi::SQLITE_OK;
    }

    /// Writes what is pending, in one call.
    fn flush(&mut self, out: &mut impl FnMut(&[u8], i64) -> c_int) -> c_int {
        if self.pending.is_empty() {
            return ffi::SQLITE_OK;
        }
        let rc = out(&self.pending, self.pending_offset);
        self.pending.clear();
        self.lost = rc;
        rc
    }
}

fn is_commit_header(data: &[u8]) -> bool {
    data.len() == FRAME_HEADER && data[4..8] != [0; 4]
}

/// Forgets the WAL frames still gathered for `conn` once its transaction has rolled back.
///
/// SQLite's rollback makes no call on the WAL file, so frames the transaction wrote early (a
/// cache spill) would stay gathered. Another process may then take the write lock and commit
/// its own frames at those same offsets; our next flush would write the stale frames over
/// them, with a valid checksum chain, and the database would be corrupt. Call it only when no
/// transaction is open on `conn`: everything gathered then belongs to one that rolled back.
pub fn discard_uncommitted(conn: &rusqlite::Connection) {
    if let Some(wal) = wal_file(conn) {
        // SAFETY: see wal_file; no call on the file runs meanwhile (this thread owns `conn`).
        unsafe { (*wal).gather.discard() }
    }
}

/// `conn`'s WAL file, when it is open and one of ours.
fn wal_file(conn: &rusqlite::Connection) -> Option<*mut WalFile> {
    // SQLITE_FCNTL_JOURNAL_POINTER: the pager's WAL file (its rollback journal's outside WAL).
    let file = file_object(conn, ffi::SQLITE_FCNTL_JOURNAL_POINTER)?;
    // SAFETY: `file` is an open file object of `conn`, or one whose pMethods is null; only a
    // WalFile opened by open() has WAL_METHODS.
    let ours = unsafe { ptr::eq((*file).pMethods, &raw const WAL_METHODS) };
    ours.then(|| file.cast::<WalFile>())
}

/// One of the main database's file objects (`op` is SQLITE_FCNTL_FILE_POINTER or
/// SQLITE_FCNTL_JOURNAL_POINTER): SQLite hands out its pointer without calling into the file.
/// It lives as long as `conn`, and only `conn`'s thread may use it.
pub(super) fn file_object(conn: &rusqlite::Connection, op: c_int) -> Option<*mut ffi::sqlite3_file> {
    let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
    // SAFETY: `conn` is open and used by this thread alone; both ops write a pointer to `file`.
    let rc =
        unsafe { ffi::sqlite3_file_control(conn.handle(), c"main".as_ptr(), op, (&raw mut file).cast()) };
    (rc == ffi::SQLITE_OK && !file.is_null()).then_some(file)
}

/// Where the default VFS's file lives inside the memory SQLite gives us (`szOsFile` bytes).
const fn base_file_offset() -> usize {
    size_of::<WalFile>().next_multiple_of(align_of::<u64>())
}

/// The default VFS's file behind `file`.
///
/// # Safety
/// `file` must be a [`WalFile`] opened by [`open`].
unsafe fn base_file(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: open() placed the base file at this offset inside SQLite's allocation.
    unsafe { file.cast::<u8>().add(base_file_offset()).cast() }
}

/// The base file's methods (set by the default VFS's xOpen, never null after it succeeded).
///
/// # Safety
/// `file` must be a [`WalFile`] opened by [`open`].
unsafe fn base_methods(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: per the contract, the base file is open and its methods outlive it.
    unsafe {
        let base = base_file(file);
        (base, &*(*base).pMethods)
    }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // The default VFS is called as itself: it reads its own pAppData and szOsFile.
    let Some(BaseVfs(base)) = BASE.get() else { return ffi::SQLITE_ERROR };
    // SAFETY: SQLite hands us szOsFile bytes at `file`, enough for the base VFS's file at the
    // start (for files other than a WAL) or after a WalFile (for a WAL).
    unsafe {
        let Some(base_open) = (**base).xOpen else { return ffi::SQLITE_ERROR };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return base_open(*base, name, file, flags, out_flags);
        }
        (*file).pMethods = ptr::null();
        let inner = base_file(file);
        (*inner).pMethods = ptr::null();
        let rc = base_open(*base, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        ptr::write(
            file.cast::<WalFile>(),
            WalFile { handle: ffi::sqlite3_file { pMethods: &WAL_METHODS }, gather: Gather::default() },
        );
        ffi::SQLITE_OK
    }
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    // Version 1: SQLite maps shared memory and pages through the database file, never the WAL.
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The WAL's gathered writes, and where they go out: the base file, in chunks it accepts.
///
/// # Safety
/// `file` must be a [`WalFile`] opened by [`open`], not borrowed elsewhere meanwhile.
unsafe fn gather_and_output<'a>(
    file: *mut ffi::sqlite3_file,
) -> (&'a mut Gather, impl FnMut(&[u8], i64) -> c_int) {
    // SAFETY: per the contract; the base file lies after the WalFile, so the two borrows are
    // disjoint, and the base VFS writes all of each chunk or reports why not.
    unsafe {
        let (base, methods) = base_methods(file);
        let output = move |data: &[u8], offset: i64| {
            let Some(write) = methods.xWrite else { return ffi::SQLITE_IOERR_WRITE };
            let mut offset = offset;
            for chunk in data.chunks(MAX_WRITE) {
                let len = chunk.len() as c_int;
                let rc = write(base, chunk.as_ptr().cast(), len, offset);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                offset += i64::from(len);
            }
            ffi::SQLITE_OK
        };
        (&mut (*file.cast::<WalFile>()).gather, output)
    }
}

/// # Safety
/// `file` must be a [`WalFile`] opened by [`open`].
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the contract.
    let (gather, mut output) = unsafe { gather_and_output(file) };
    gather.flush(&mut output)
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let Ok(len) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
    // SAFETY: SQLite passes a WalFile opened by open() and `amount` readable bytes at `data`.
    let (data, (gather, mut output)) =
        unsafe { (std::slice::from_raw_parts(data.cast::<u8>(), len), gather_and_output(file)) };
    gather.write(data, offset, &mut output)
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite passes a WalFile opened by open() and never uses it after xClose.
    unsafe {
        // What is still gathered can only be a transaction's that did not commit (a commit
        // always writes everything out): not written, as in `discard_uncommitted`.
        (*file.cast::<WalFile>()).gather.discard();
        let (base, methods) = base_methods(file);
        let closed = methods.xClose.map_or(ffi::SQLITE_OK, |close| close(base));
        ptr::drop_in_place(file.cast::<WalFile>());
        (*file).pMethods = ptr::null();
        closed
    }
}

/// Forwards a call to the base file after writing what is pending.
macro_rules! flushed_then {
    ($file:ident, $method:ident ( $($arg:expr),* )) => {
        // SAFETY: SQLite passes a WalFile opened by open(); the arguments are SQLite's own.
        unsafe {
            let rc = flush($file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let (base, methods) = base_methods($file);
            match methods.$method {
                Some(method) => method(base $(, $arg)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    };
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    flushed_then!(file, xRead(data, amount, offset))
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    flushed_then!(file, xTruncate(size))
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flushed_then!(file, xSync(flags))
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    flushed_then!(file, xFileSize(size))
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    flushed_then!(file, xFileControl(op, arg))
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: SQLite passes a WalFile opened by open().
    unsafe {
        let (base, methods) = base_methods(file);
        methods.xLock.map_or(ffi::SQLITE_OK, |lock| lock(base, level))
    }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: SQLite passes a WalFile opened by open().
    unsafe {
        let (base, methods) = base_methods(file);
        methods.xUnlock.map_or(ffi::SQLITE_OK, |unlock| unlock(base, level))
    }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: SQLite passes a WalFile opened by open() and a place for the answer.
    unsafe {
        let (base, methods) = base_methods(file);
        match methods.xCheckReservedLock {
            Some(check) => check(base, out),
            None => {
                *out = 0;
                ffi::SQLITE_OK
            }
        }
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite passes a WalFile opened by open().
    unsafe {
        let (base, methods) = base_methods(file);
        methods.xSectorSize.map_or(4096, |size| size(base))
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite passes a WalFile opened by open().
    unsafe {
        let (base, methods) = base_methods(file);
        methods.xDeviceCharacteristics.map_or(0, |characteristics| characteristics(base))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags};

    use super::*;
    use crate::store::scratch::Scratch;

    /// A frame header for page `page`; `db_size` is set only in a commit frame.
    fn header(page: u8, db_size: u8) -> Vec<u8> {
        let mut header = vec![0; FRAME_HEADER];
        header[3] = page;
        header[7] = db_size;
        header
    }

    /// Feeds `writes` (data, offset) to a Gather; returns the calls that reached the file.
    fn outputs(gather: &mut Gather, writes: &[(Vec<u8>, i64)]) -> Vec<(i64, usize)> {
        let mut calls = Vec::new();
        let mut out = |data: &[u8], offset: i64| {
            calls.push((offset, data.len()));
            ffi::SQLITE_OK
        };
        for (data, offset) in writes {
            assert_eq!(gather.write(data, *offset, &mut out), ffi::SQLITE_OK);
        }
        calls
    }

    #[test]
    fn a_commit_goes_out_as_its_frames_in_one_call_then_its_page() {
        let page = vec![7u8; 4096];
        let frame = (FRAME_HEADER + page.len()) as i64;
        let mut gather = Gather::default();
        let calls = outputs(
            &mut gather,
            &[
                (header(1, 0), 32),
                (page.clone(), 32 + 24),
                (header(2, 0), 32 + frame),
                (page.clone(), 32 + frame + 24),
                (header(3, 9), 32 + 2 * frame),
                (page.clone(), 32 + 2 * frame + 24),
            ],
        );
        assert_eq!(calls, [(32, 2 * frame as usize + FRAME_HEADER), (32 + 2 * frame + 24, 4096)]);
        assert!(gather.pending.is_empty() && !gather.commit_page_next);
    }

    #[test]
    fn frames_wait_until_the_commit_unless_they_are_not_contiguous_or_too_many() {
        let mut gather = Gather::default();
        assert!(outputs(&mut gather, &[(header(1, 0), 32), (vec![0; 4096], 56)]).is_empty());
        // Written elsewhere in the file (a frame overwritten in place): what waited goes first.
        let calls = outputs(&mut gather, &[(vec![1; 4096], 10_000)]);
        assert_eq!(calls, [(32, 4120)]);
        assert_eq!((gather.pending_offset, gather.pending.len()), (10_000, 4096));
        // Past MAX_PENDING, the pending bytes go out before more are taken.
        let big = vec![2; MAX_PENDING];
        let calls = outputs(&mut gather, &[(big, 14_096)]);
        assert_eq!(calls, [(10_000, 4096)]);
        assert_eq!(gather.flush(&mut |_: &[u8], _| ffi::SQLITE_OK), ffi::SQLITE_OK);
        assert!(gather.pending.is_empty());
    }

    #[test]
    fn a_failed_write_is_reported_and_not_retried() {
        let mut gather = Gather::default();
        let mut full = |_: &[u8], _: i64| ffi::SQLITE_FULL;
        assert_eq!(gather.write(&vec![0; 4096], 32, &mut full), ffi::SQLITE_OK);
        assert_eq!(gather.write(&header(2, 5), 32 + 4096, &mut full), ffi::SQLITE_FULL);
        assert!(gather.pending.is_empty());
        assert!(!gather.commit_page_next, "after a failed commit header, its page is not written through");
    }

    /// A flush ahead of a read fails (the disk is full); SQLite may take that as the read's
    /// failure and go on with the transaction. Nothing more may reach the file until it rolls
    /// back: a commit written after the lost frames would point at pages the file lacks.
    #[test]
    fn after_frames_are_lost_nothing_is_written_until_the_rollback() {
        let mut gather = Gather::default();
        assert!(outputs(&mut gather, &[(header(1, 0), 32), (vec![0; 4096], 56)]).is_empty());
        assert_eq!(gather.flush(&mut |_: &[u8], _| ffi::SQLITE_FULL), ffi::SQLITE_FULL);
        let mut written = Vec::new();
        let mut out = |data: &[u8], offset: i64| {
            written.push((offset, data.len()));
            ffi::SQLITE_OK
        };
        let commit = 32 + 4120;
        assert_eq!(gather.write(&header(2, 5), commit, &mut out), ffi::SQLITE_FULL);
        assert_eq!(gather.write(&vec![1; 4096], commit + 24, &mut out), ffi::SQLITE_FULL);
        assert_eq!(gather.flush(&mut out), ffi::SQLITE_OK);
        assert!(written.is_empty(), "written after frames were lost: {written:?}");
        gather.discard();
        assert_eq!(outputs(&mut gather, &[(header(1, 3), 32), (vec![2; 4096], 56)]), [(32, 24), (56, 4096)]);
    }

    fn writer(path: &Path) -> Connection {
        register().unwrap();
        let conn = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
        )
        .unwrap();
        conn
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0)).unwrap()
    }

    /// What a crash right now would leave: the database and its WAL as they are on disk, opened
    /// elsewhere, so that SQLite recovers the WAL by reading and checksumming its frames.
    fn after_crash(dir: &Path) -> Connection {
        let copy = dir.join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(dir.join("db"), copy.join("db")).unwrap();
        std::fs::copy(dir.join("db-wal"), copy.join("db-wal")).unwrap();
        Connection::open(copy.join("db")).unwrap()
    }

    #[test]
    fn every_commit_is_in_the_file_when_it_returns() {
        let scratch = Scratch::new("every-commit");
        let dir = scratch.path();
        let conn = writer(&dir.join("db"));
        let reader = Connection::open(dir.join("db")).unwrap();
        for batch in 0..20 {
            let tx = conn.unchecked_transaction().unwrap();
            for i in 0..50 {
                tx.execute("INSERT INTO t (body) VALUES (?1)", [format!("{batch}-{i}-{}", "x".repeat(300))])
                    .unwrap();
            }
            tx.commit().unwrap();
            assert_eq!(count(&reader), (batch + 1) * 50);
        }
        assert_eq!(count(&after_crash(dir)), 1000);
    }

    #[test]
    fn a_transaction_that_spills_and_rewrites_frames_survives_a_crash() {
        let scratch = Scratch::new("spill");
        let dir = scratch.path();
        let conn = writer(&dir.join("db"));
        // A tiny cache makes SQLite write frames before the commit and, when a page written
        // that way changes again, overwrite its frame and rewrite the checksums after it.
        conn.execute_batch("PRAGMA cache_size = 4").unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..2000 {
            tx.execute("INSERT INTO t (id, body) VALUES (?1, ?2)", rusqlite::params![i, "y".repeat(200)])
                .unwrap();
        }
        tx.execute("UPDATE t SET body = 'z' WHERE id % 3 = 0", []).unwrap();
        tx.commit().unwrap();
        let recovered = after_crash(dir);
        assert_eq!(count(&recovered), 2000);
        let changed: i64 =
            recovered.query_row("SELECT count(*) FROM t WHERE body = 'z'", [], |row| row.get(0)).unwrap();
        assert_eq!(changed, 667);
        let check: String = recovered.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
        assert_eq!(check, "ok");
    }

    /// A writer on a new database in `dir` with one committed row ('first'), whose next
    /// transaction wrote frames early (a tiny cache) and rolled back: they are still gathered.
    fn rolled_back_with_frames_gathered(dir: &Path) -> Connection {
        let conn = writer(&dir.join("db"));
        // With page 1 out of the WAL, the rollback reloads it from the database file: no call
        // on the WAL then writes what is gathered while this connection holds the lock.
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        conn.execute("INSERT INTO t (body) VALUES ('first')", []).unwrap();
        conn.execute_batch("PRAGMA cache_size = 4").unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..50 {
            tx.execute("INSERT INTO t (body) VALUES (?1)", [format!("{i}{}", "n".repeat(500))]).unwrap();
        }
        tx.rollback().unwrap();
        // SAFETY: the writer's WAL, on this thread, between calls.
        let gathered = wal_file(&conn).map(|wal| unsafe { (*wal).gather.pending.len() });
        assert!(gathered.is_some_and(|len| len > 0), "the rollback left nothing gathered: {gathered:?}");
        conn
    }

    /// Another process's connection (the default VFS) commits 'second' at the WAL offsets the
    /// rolled-back frames were meant for. Kept open, it keeps the WAL from being checkpointed
    /// away when the writer closes.
    fn another_writer_commits(dir: &Path) -> Connection {
        let other = Connection::open(dir.join("db")).unwrap();
        other.execute("INSERT INTO t (body) VALUES ('second')", []).unwrap();
        other
    }

    /// What a crash now would leave is sound and holds exactly 'first' and 'second'.
    fn assert_both_commits_survive(dir: &Path) {
        let recovered = after_crash(dir);
        let check: String = recovered.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
        assert_eq!(check, "ok");
        let bodies: Vec<String> = recovered
            .prepare("SELECT body FROM t ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(bodies, ["first", "second"]);
    }

    #[test]
    fn frames_of_a_rolled_back_transaction_do_not_overwrite_another_writers_commit() {
        let scratch = Scratch::new("rolled-back");
        let dir = scratch.path();
        let conn = rolled_back_with_frames_gathered(dir);
        discard_uncommitted(&conn);
        drop(another_writer_commits(dir));
        // The writer's next call on its WAL (a read) would flush what it still gathered.
        assert_eq!(count(&conn), 2);
        assert_both_commits_survive(dir);
    }

    #[test]
    fn closing_the_wal_does_not_write_a_rolled_back_transactions_frames() {
        let scratch = Scratch::new("closed-after-rollback");
        let dir = scratch.path();
        let conn = rolled_back_with_frames_gathered(dir);
        let other = another_writer_commits(dir);
        // Closed without a call that would have dropped them first.
        drop(conn);
        assert_both_commits_survive(dir);
        drop(other);
    }

    #[test]
    fn an_uncommitted_transaction_is_not_seen() {
        let scratch = Scratch::new("uncommitted");
        let dir = scratch.path();
        let conn = writer(&dir.join("db"));
        conn.execute("INSERT INTO t (body) VALUES ('kept')", []).unwrap();
        let tx = conn.unchecked_transaction().unwrap();
        tx.execute("INSERT INTO t (body) VALUES ('not yet')", []).unwrap();
        let reader = Connection::open(dir.join("db")).unwrap();
        assert_eq!(count(&reader), 1);
        tx.rollback().unwrap();
        assert_eq!(count(&after_crash(dir)), 1);
    }
}
