//! gzip for response bodies, when the client accepts it (RFC 9110 §12.5.3).
//!
//! flate2 on its zlib-rs backend: pure Rust like miniz_oxide, and several times faster at the
//! fast levels, which is what a listing of thousands of images compressed per request needs.

use std::io::{self, Write};
use std::sync::mpsc;

use flate2::write::GzEncoder;
use flate2::{Compress, Compression, Crc, FlushCompress};
use warp::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, HeaderMap, HeaderValue, VARY};

/// How hard to compress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    /// For what is compressed per request: most of the gain for a fraction of the time.
    Fast,
    /// For what is compressed once and kept (embedded assets).
    Small,
}

impl Effort {
    fn level(self) -> Compression {
        match self {
            Effort::Fast => Compression::fast(),
            Effort::Small => Compression::best(),
        }
    }
}

/// Whether the request's `Accept-Encoding` allows gzip: `gzip` (or `x-gzip`, or `*` when gzip
/// itself is not named) listed without `q=0`.
pub fn accepted(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    let values = headers.get_all(ACCEPT_ENCODING).into_iter().filter_map(|value| value.to_str().ok());
    for item in values.flat_map(|value| value.split(',')) {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, q)| q.trim().parse::<f32>().unwrap_or(0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(weight > 0.0);
        } else if coding == "*" {
            any = Some(weight > 0.0);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// A gzip stream writing into a buffer of `capacity` bytes; `finish()` returns the buffer.
pub fn writer(effort: Effort, capacity: usize) -> GzEncoder<Vec<u8>> {
    GzEncoder::new(Vec::with_capacity(capacity), effort.level())
}

/// `data` compressed (for the embedded assets, compressed once).
pub fn compress(data: &[u8], effort: Effort) -> Vec<u8> {
    let mut gzip = writer(effort, data.len() / 4 + 64);
    // Writing into a Vec cannot fail.
    let _ = gzip.write_all(data);
    gzip.finish().unwrap_or_default()
}

/// Chunks given to the thread and not collected yet, at most: bounds the memory held.
const CHUNKS_IN_FLIGHT: usize = 16;

/// A gzip stream compressed chunk by chunk on a thread of its own, fed while the input is
/// still being produced (a listing's rows read). Every chunk ends with a sync flush, on a byte
/// boundary with the stream left open, and continues the one before, so nothing is lost to
/// the cuts.
pub struct BackgroundWriter {
    effort: Effort,
    /// The thread, started with the first chunk.
    thread: Option<Deflater>,
    sent: usize,
    collected: usize,
    /// Reserved for `out` with the first chunk: a writer that gets none allocates nothing.
    capacity: usize,
    out: Vec<u8>,
    crc: Crc,
}

struct Deflater {
    chunks: mpsc::SyncSender<Vec<u8>>,
    deflated: mpsc::Receiver<io::Result<Piece>>,
}

/// A gzip member's header: ID1 ID2, deflate, no flags, no modification time, no extra flags,
/// unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Closes a deflate stream made of sync-flushed pieces (an empty final block with fixed codes)
/// and writes the gzip trailer.
fn close(out: &mut Vec<u8>, crc: &Crc) {
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
}

/// A run of input deflated and sync-flushed (ending on a byte boundary, the stream left open),
/// with its CRC: consecutive pieces make one deflate stream, whether each was deflated from
/// scratch on a thread of its own ([`join_pieces`]) or continued the one before
/// ([`BackgroundWriter`]).
pub struct Piece {
    deflated: Vec<u8>,
    crc: Crc,
}

impl Piece {
    /// `input` deflated from scratch.
    pub fn deflate(input: &[u8], effort: Effort) -> io::Result<Self> {
        Self::continuing(&mut Compress::new(effort.level(), false), input)
    }

    /// `input` deflated by `deflate`, which may refer back into what it deflated before.
    fn continuing(deflate: &mut Compress, input: &[u8]) -> io::Result<Self> {
        let mut crc = Crc::new();
        crc.update(input);
        Ok(Self { deflated: deflate_sync_flushed(deflate, input)?, crc })
    }

    /// Appends the piece to a stream whose CRC so far is `crc`.
    fn append_to(&self, out: &mut Vec<u8>, crc: &mut Crc) {
        out.extend_from_slice(&self.deflated);
        crc.combine(&self.crc);
    }
}

/// The gzip stream of the pieces' inputs, in order.
pub fn join_pieces(pieces: &[Piece]) -> Vec<u8> {
    let size = pieces.iter().map(|piece| piece.deflated.len()).sum::<usize>();
    let mut out = Vec::with_capacity(HEADER.len() + size + 10);
    out.extend_from_slice(&HEADER);
    let mut crc = Crc::new();
    for piece in pieces {
        piece.append_to(&mut out, &mut crc);
    }
    close(&mut out, &crc);
    out
}

impl BackgroundWriter {
    /// A stream writing into a buffer of `capacity` bytes; its thread starts with the first
    /// chunk.
    pub fn new(effort: Effort, capacity: usize) -> Self {
        Self { effort, thread: None, sent: 0, collected: 0, capacity, out: HEADER.to_vec(), crc: Crc::new() }
    }

    fn start_thread(effort: Effort) -> io::Result<Deflater> {
        let (chunks, incoming) = mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        // As deep as the chunks that may be in flight: the thread never waits long to hand
        // back what it deflated (the writer collects beyond that many).
        let (done, deflated) = mpsc::sync_channel(CHUNKS_IN_FLIGHT);
        std::thread::Builder::new().name("gzip".into()).spawn(move || {
            let mut deflate = Compress::new(effort.level(), false);
            for chunk in incoming {
                if done.send(Piece::continuing(&mut deflate, &chunk)).is_err() {
                    break;
                }
            }
        })?;
        Ok(Deflater { chunks, deflated })
    }

    /// Compresses the next chunk of the input.
    pub fn write_chunk(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        let thread = match &mut self.thread {
            Some(thread) => thread,
            None => {
                self.out.reserve(self.capacity);
                self.thread.insert(Self::start_thread(self.effort)?)
            }
        };
        thread.chunks.send(chunk).map_err(|_| stopped())?;
        self.sent += 1;
        while self.sent - self.collected > CHUNKS_IN_FLIGHT {
            self.collect_one()?;
        }
        Ok(())
    }

    /// The whole stream.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        while self.collected < self.sent {
            self.collect_one()?;
        }
        close(&mut self.out, &self.crc);
        Ok(self.out)
    }

    /// Appends the oldest chunk not collected yet.
    fn collect_one(&mut self) -> io::Result<()> {
        let thread = self.thread.as_ref().ok_or_else(stopped)?;
        thread.deflated.recv().map_err(|_| stopped())??.append_to(&mut self.out, &mut self.crc);
        self.collected += 1;
        Ok(())
    }
}

fn stopped() -> io::Error {
    io::Error::other("a gzip thread stopped")
}

/// `input` deflated and sync-flushed: every byte of it out, ending on a byte boundary.
fn deflate_sync_flushed(deflate: &mut Compress, input: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 + 64);
    let before = deflate.total_in();
    loop {
        let consumed = usize::try_from(deflate.total_in() - before).map_err(io::Error::other)?;
        deflate.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync).map_err(io::Error::other)?;
        // zlib's rule: the flush is complete once a call leaves room in the output.
        if deflate.total_in() - before == input.len() as u64 && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity().max(64));
    }
}

/// Marks a response whose body is gzip: `Content-Encoding`, and `Vary` for caches.
pub fn mark_encoded(headers: &mut HeaderMap) {
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    mark_negotiated(headers);
}

/// Marks a response whose encoding depended on `Accept-Encoding` (`Vary`), compressed or not.
pub fn mark_negotiated(headers: &mut HeaderMap) {
    headers.append(VARY, HeaderValue::from_static("accept-encoding"));
}

/// A gzip body decoded, for tests. `GzDecoder` checks the CRC and the length in the trailer,
/// and stops at the end of the first member: a stream closed early or joined wrongly decodes
/// to less, or fails.
#[cfg(test)]
pub fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut restored = Vec::new();
    io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut restored).unwrap();
    restored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        accepted(&headers)
    }

    #[test]
    fn gzip_is_accepted_only_when_the_client_says_so() {
        assert!(accepts("gzip"));
        assert!(accepts("gzip, deflate, br, zstd"));
        assert!(accepts("br;q=1.0, GZip;q=0.5"));
        assert!(accepts("x-gzip"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip; q=0.000"));
        assert!(!accepts("*, gzip;q=0"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts("identity"));
        assert!(!accepted(&HeaderMap::new()));
    }

    #[test]
    fn a_stream_compressed_in_chunks_on_a_thread_is_one_gzip_stream() {
        // Chunks of every size class: empty, tiny, and larger than the output first reserved;
        // more of them than may be in flight.
        let chunks: Vec<Vec<u8>> = (0..40)
            .map(|i: usize| match i % 4 {
                0 => Vec::new(),
                1 => b"x".to_vec(),
                2 => (0..70_000).map(|j: usize| (j.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
                _ => format!("{{\"image\":\"app-{i}\"}}").repeat(2000).into_bytes(),
            })
            .collect();
        let whole = chunks.concat();
        let mut gzip = BackgroundWriter::new(Effort::Fast, 0);
        for chunk in &chunks {
            gzip.write_chunk(chunk.clone()).unwrap();
        }
        let compressed = gzip.finish().unwrap();
        let restored = gunzip(&compressed);
        assert!(restored == whole, "{} of {} bytes", restored.len(), whole.len());
        assert!(compressed.len() < whole.len() / 2, "{} bytes", compressed.len());
    }

    #[test]
    fn each_chunk_continues_the_one_before() {
        // 16 KiB that do not compress, sent 40 times: alone, every chunk would take 16 KiB; as
        // a continuation, each but the first refers back to the one before.
        let block: Vec<u8> = (0..16 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut gzip = BackgroundWriter::new(Effort::Fast, 0);
        for _ in 0..40 {
            gzip.write_chunk(block.clone()).unwrap();
        }
        let compressed = gzip.finish().unwrap();
        assert!(
            compressed.len() < 4 * block.len(),
            "{} bytes for 40 chunks of {}",
            compressed.len(),
            block.len()
        );
    }

    #[test]
    fn pieces_deflated_apart_join_into_one_gzip_stream() {
        let inputs: [&[u8]; 5] = [b"{", b"", &b"\"app\":{\"tag\":null},".repeat(5000), b"x", b"}"];
        let pieces: Vec<Piece> =
            inputs.iter().map(|input| Piece::deflate(input, Effort::Fast).unwrap()).collect();
        let compressed = join_pieces(&pieces);
        let restored = gunzip(&compressed);
        assert!(restored == inputs.concat(), "{} of {} bytes", restored.len(), inputs.concat().len());
        assert!(compressed.len() < restored.len() / 10, "{} bytes", compressed.len());
    }

    #[test]
    fn an_empty_background_stream_is_valid_gzip() {
        let compressed = BackgroundWriter::new(Effort::Fast, 0).finish().unwrap();
        let restored = gunzip(&compressed);
        assert!(restored.is_empty());
    }

    #[test]
    fn compressed_data_decompresses_to_the_original() {
        let data = br#"{"docker.io/library/nginx:1.27":{"acknowledged":false}}"#.repeat(100);
        for effort in [Effort::Fast, Effort::Small] {
            let compressed = compress(&data, effort);
            assert!(compressed.len() < data.len() / 10, "{effort:?}: {} bytes", compressed.len());
            assert_eq!(gunzip(&compressed), data);
        }
    }
}
