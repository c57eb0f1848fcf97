//! `GET /api/updates` written straight from the rows a store reads.
//!
//! Going through [`UpdateEntry`] would parse every stored metadata
//! object into a map and write it out again, and copy every column into its own `String`: for
//! thousands of images that was most of the listing's time. Here each row's columns are
//! borrowed from the database's buffers and the stored JSON objects (written by serde_json, or
//! by PostgreSQL's `jsonb` output) are copied as they are. The document is the one
//! `UpdateEntry`'s `Serialize` describes; a test on every backend holds the two equal.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::http::gzip;
use crate::json_text;
use crate::model::{DiunEvent, Tag, UpdateEntry};
use crate::time::Timestamp;

/// One listed image, borrowed from a database row.
pub struct ListedUpdate<'a> {
    pub image: &'a str,
    pub diun_version: &'a str,
    pub hostname: &'a str,
    pub status: &'a str,
    pub provider: &'a str,
    pub hub_link: &'a str,
    pub mime_type: &'a str,
    pub digest: &'a str,
    pub created: Option<&'a str>,
    pub platform: &'a str,
    /// The stored metadata object.
    pub metadata: Option<StoredText<'a>>,
    /// The stored object of unknown top-level fields; its members are listed beside the known
    /// fields, as they came.
    pub extra: Option<StoredText<'a>>,
    pub received_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub tag: Option<(i64, &'a str)>,
}

impl ListedUpdate<'_> {
    /// The row as an owned entry, its JSON parsed: for the callers that need values rather
    /// than the listing's text (the export, the tests).
    pub fn to_entry(&self) -> Result<UpdateEntry, String> {
        let mut event = DiunEvent {
            image: self.image.to_owned(),
            diun_version: self.diun_version.to_owned(),
            hostname: self.hostname.to_owned(),
            status: self.status.to_owned(),
            provider: self.provider.to_owned(),
            hub_link: self.hub_link.to_owned(),
            mime_type: self.mime_type.to_owned(),
            digest: self.digest.to_owned(),
            created: self.created.map(str::to_owned),
            platform: self.platform.to_owned(),
            ..DiunEvent::default()
        };
        event.set_json_columns(self.metadata.map(|m| m.text), self.extra.map(|e| e.text))?;
        Ok(UpdateEntry {
            event,
            received_at: self.received_at,
            acknowledged_at: self.acknowledged_at,
            tag: self.tag.map(|(id, name)| Tag { id, name: name.to_owned() }),
        })
    }
}

/// What the gzip thread of a listing written row by row is given at a time: a hand-off per
/// chunk costs nothing next to compressing it, and the last chunk is all that is left to
/// compress once the rows are read.
const GZIP_CHUNK: usize = 256 * 1024;

/// The size of the last listing body, plain and gzip: the next one is about as large, and a
/// buffer of that size from the start never grows (growing a few MB copies them each time).
static LAST_SIZE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// The size to reserve for a listing: 1/8 more than last time, as it may have grown since.
fn expected_size(last: &AtomicUsize) -> usize {
    let last = last.load(Ordering::Relaxed);
    last + last / 8 + 64
}

/// The listing document being written: `{"<image>": {…}, …}` in the order entries are pushed.
pub struct Listing {
    text: Vec<u8>,
    gzip: Option<gzip::BackgroundWriter>,
    entries: usize,
}

impl Listing {
    /// An empty listing, gzip-compressed when `gzip`.
    pub fn new(gzip: bool) -> Self {
        let (text, gzip) = if gzip {
            (
                Vec::with_capacity(GZIP_CHUNK * 2),
                Some(gzip::BackgroundWriter::new(gzip::Effort::Fast, expected_size(&LAST_SIZE[1]))),
            )
        } else {
            (Vec::with_capacity(expected_size(&LAST_SIZE[0])), None)
        };
        let mut listing = Self { text, gzip, entries: 0 };
        listing.text.push(b'{');
        listing
    }

    /// The listing, nothing pushed to it yet, as `N` consecutive parts holding `members[i]`
    /// images each, for a store that has read every row before it writes the first: each part
    /// can then be written and compressed on a thread of its own. [`join_parts`] makes the
    /// body.
    pub fn into_parts<const N: usize>(self, members: [usize; N]) -> [ListingPart; N] {
        const { assert!(N > 0, "a listing has at least one part: its braces") };
        debug_assert_eq!(self.entries, 0, "into_parts takes a listing nothing was pushed to");
        let gzip = self.gzip.is_some();
        // The plain text of the whole listing, as large as last time's.
        let whole = expected_size(&LAST_SIZE[0]);
        let mut first = Some(self.text);
        let mut before = 0;
        std::array::from_fn(|index| {
            // The first part holds the opening brace; uncompressed, it becomes the body.
            let text = match first.take() {
                Some(mut text) => {
                    text.reserve(if gzip { whole / N } else { whole });
                    text
                }
                None => Vec::with_capacity(whole / N),
            };
            let part = ListingPart { text, gzip, before, last: index + 1 == N };
            before += members[index];
            part
        })
    }

    /// Adds one image; images must come in the order the API promises (bytewise by name).
    pub fn push(&mut self, entry: &ListedUpdate<'_>) -> io::Result<()> {
        self.separate();
        render(&mut self.text, entry)?;
        self.compress_full_chunk()
    }

    fn separate(&mut self) {
        if self.entries > 0 {
            self.text.push(b',');
        }
        self.entries += 1;
    }

    fn compress_full_chunk(&mut self) -> io::Result<()> {
        if let Some(gzip) = &mut self.gzip
            && self.text.len() >= GZIP_CHUNK
        {
            gzip.write_chunk(std::mem::replace(&mut self.text, Vec::with_capacity(GZIP_CHUNK * 2)))?;
        }
        Ok(())
    }

    /// The finished body.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        self.text.push(b'}');
        let (body, last) = match self.gzip {
            Some(mut gzip) => {
                gzip.write_chunk(self.text)?;
                (gzip.finish()?, &LAST_SIZE[1])
            }
            None => (self.text, &LAST_SIZE[0]),
        };
        last.store(body.len(), Ordering::Relaxed);
        Ok(body)
    }
}

/// Consecutive members of a listing, written apart from it on a thread of their own and
/// compressed there when the listing is gzip: see [`Listing::into_parts`].
pub struct ListingPart {
    text: Vec<u8>,
    gzip: bool,
    /// Members of the listing before this part's next one.
    before: usize,
    /// Whether the listing ends with this part.
    last: bool,
}

impl ListingPart {
    /// Adds one image written by [`render`]; images must come in the listing's order.
    pub fn push_rendered(&mut self, member: &[u8]) {
        if self.before > 0 {
            self.text.push(b',');
        }
        self.before += 1;
        self.text.extend_from_slice(member);
    }

    /// The part as it goes into the body: compressed, when the listing is, on this thread.
    pub fn finish(mut self) -> io::Result<FinishedPart> {
        if self.last {
            self.text.push(b'}');
        }
        Ok(FinishedPart {
            length: self.text.len(),
            bytes: match self.gzip {
                true => Finished::Deflated(gzip::Piece::deflate(&self.text, gzip::Effort::Fast)?),
                false => Finished::Plain(self.text),
            },
        })
    }
}

/// A [`ListingPart`] ready to be joined with the others by [`join_parts`].
pub struct FinishedPart {
    /// Bytes before compression.
    length: usize,
    bytes: Finished,
}

enum Finished {
    Plain(Vec<u8>),
    Deflated(gzip::Piece),
}

/// The body of a listing written in parts ([`Listing::into_parts`]), from the parts in order.
pub fn join_parts(parts: Vec<FinishedPart>) -> Vec<u8> {
    let length = parts.iter().map(|part| part.length).sum();
    let mut plain = Vec::new();
    let mut pieces = Vec::new();
    for part in parts {
        match part.bytes {
            Finished::Plain(text) if plain.is_empty() => plain = text,
            Finished::Plain(text) => plain.extend_from_slice(&text),
            Finished::Deflated(piece) => pieces.push(piece),
        }
    }
    LAST_SIZE[0].store(length, Ordering::Relaxed);
    if pieces.is_empty() {
        return plain;
    }
    let body = gzip::join_pieces(&pieces);
    LAST_SIZE[1].store(body.len(), Ordering::Relaxed);
    body
}

/// How many of the first `k` items of the merged order of `a` and `b` (both sorted by `key`,
/// no key in both) come from `a` and from `b`.
pub fn merged_split<T>(a: &[T], b: &[T], k: usize, key: impl Fn(&T) -> &str) -> (usize, usize) {
    let k = k.min(a.len() + b.len());
    let (mut low, mut high) = (k.saturating_sub(b.len()), k.min(a.len()));
    while low < high {
        let from_a = (low + high) / 2;
        // Too few from `a` when its next item comes before the last one taken from `b`.
        if key(&a[from_a]) < key(&b[k - from_a - 1]) {
            low = from_a + 1;
        } else {
            high = from_a;
        }
    }
    (low, k - low)
}

/// Who wrote a stored JSON object's text, which decides how it is copied into the listing.
#[derive(Clone, Copy, Debug)]
pub enum StoredJson {
    /// serde_json (SQLite's text columns, PostgreSQL's `metadata_json`): copied as it is.
    Serde,
    /// PostgreSQL's `jsonb` output: rewritten to serde_json's bytes by [`crate::json_text`].
    Jsonb,
}

/// A stored JSON object's text (`metadata`, `extra`), and who wrote it.
#[derive(Clone, Copy, Debug)]
pub struct StoredText<'a> {
    pub text: &'a str,
    pub by: StoredJson,
}

impl<'a> StoredText<'a> {
    pub fn serde(text: &'a str) -> Self {
        Self { text, by: StoredJson::Serde }
    }

    pub fn jsonb(text: &'a str) -> Self {
        Self { text, by: StoredJson::Jsonb }
    }
}

/// One image's member of the listing document, `"<image>":{…}`. Apart from [`Listing`] so that
/// a store can write members on threads of its own (see [`Listing::into_parts`]).
pub fn render(out: &mut Vec<u8>, entry: &ListedUpdate<'_>) -> io::Result<()> {
    string(out, entry.image);
    out.extend_from_slice(b":{\"event\":{\"diun_version\":");
    string(out, entry.diun_version);
    field(out, "hostname", entry.hostname);
    field(out, "status", entry.status);
    field(out, "provider", entry.provider);
    field(out, "image", entry.image);
    field(out, "hub_link", entry.hub_link);
    field(out, "mime_type", entry.mime_type);
    field(out, "digest", entry.digest);
    out.extend_from_slice(b",\"created\":");
    match entry.created {
        Some(created) => string(out, created),
        None => out.extend_from_slice(b"null"),
    }
    field(out, "platform", entry.platform);
    out.extend_from_slice(b",\"metadata\":");
    match entry.metadata {
        None => out.extend_from_slice(b"null"),
        Some(StoredText { text, by: StoredJson::Serde }) => out.extend_from_slice(text.as_bytes()),
        Some(StoredText { text, by: StoredJson::Jsonb }) => {
            json_text::write_as_serde(out, text).map_err(io::Error::other)?
        }
    }
    match entry.extra {
        None => {}
        Some(StoredText { text: extra, by: StoredJson::Serde }) => {
            let members = object_members(extra);
            if !members.is_empty() {
                out.push(b',');
                out.extend_from_slice(members.as_bytes());
            }
        }
        Some(StoredText { text: extra, by: StoredJson::Jsonb }) => {
            out.push(b',');
            json_text::write_members_as_serde(out, extra).map_err(io::Error::other)?;
            if out.last() == Some(&b',') {
                // An empty object: no members after all.
                out.pop();
            }
        }
    }
    out.extend_from_slice(b"},\"received_at\":");
    timestamp(out, entry.received_at);
    match entry.acknowledged_at {
        Some(at) => {
            out.extend_from_slice(b",\"acknowledged\":true,\"acknowledged_at\":");
            timestamp(out, at);
        }
        None => out.extend_from_slice(b",\"acknowledged\":false,\"acknowledged_at\":null"),
    }
    match entry.tag {
        Some((id, name)) => {
            write!(out, ",\"tag\":{{\"id\":{id},\"name\":")?;
            string(out, name);
            out.extend_from_slice(b"}}");
        }
        None => out.extend_from_slice(b",\"tag\":null}"),
    }
    Ok(())
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    string(out, value);
}

/// A JSON string, escaped the way serde_json escapes it.
fn string(out: &mut Vec<u8>, text: &str) {
    // Nearly every stored text needs no escape, and is copied whole: serde_json's writer looks
    // at one byte at a time, 8.5% of a 5,000-image SQLite listing's time (6% after).
    if !needs_escape(text.as_bytes()) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Whether JSON needs any byte of `text` escaped: quotes, backslashes and control characters,
/// the bytes serde_json escapes. Eight bytes at a time: each test below sets a byte's high bit
/// exactly when some byte of the word is below 0x20 or equal to the byte tested for.
fn needs_escape(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let below = |word: u64, limit: u8| word.wrapping_sub(ONES * u64::from(limit)) & !word;
    let equal = |word: u64, byte: u8| below(word ^ (ONES * u64::from(byte)), 1);
    let (words, rest) = text.as_chunks::<8>();
    let found = words.iter().fold(0, |found, word| {
        let word = u64::from_ne_bytes(*word);
        found | below(word, 0x20) | equal(word, b'"') | equal(word, b'\\')
    });
    found & HIGH_BITS != 0 || rest.iter().any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

fn timestamp(out: &mut Vec<u8>, at: Timestamp) {
    out.push(b'"');
    at.write_rfc3339(out);
    out.push(b'"');
}

/// The members of a JSON object's text, without its braces: `{"a": 1}` gives `"a": 1`.
fn object_members(object: &str) -> &str {
    let inner = object.trim();
    inner.strip_prefix('{').and_then(|inner| inner.strip_suffix('}')).unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::{DiunEvent, Tag, UpdateEntry};

    fn entry<'a>(
        event: &'a DiunEvent,
        metadata: Option<StoredText<'a>>,
        extra: Option<StoredText<'a>>,
    ) -> ListedUpdate<'a> {
        ListedUpdate {
            image: &event.image,
            diun_version: &event.diun_version,
            hostname: &event.hostname,
            status: &event.status,
            provider: &event.provider,
            hub_link: &event.hub_link,
            mime_type: &event.mime_type,
            digest: &event.digest,
            created: event.created.as_deref(),
            platform: &event.platform,
            metadata,
            extra,
            received_at: Timestamp::from_unix_micros(1_714_557_600_123_456),
            acknowledged_at: None,
            tag: None,
        }
    }

    fn sample() -> DiunEvent {
        serde_json::from_value(json!({
            "diun_version": "4.28.0", "hostname": "nas\n\"1\"", "status": "new", "provider": "docker",
            "image": "docker.io/library/nginx:1.27", "hub_link": "https://hub.docker.com/_/nginx",
            "mime_type": "application/vnd.oci.image.index.v1+json", "digest": "sha256:ab",
            "created": "2024-05-01T10:00:00.123456789Z", "platform": "linux/amd64",
            "metadata": { "ctn_names": "web", "ünïcode": "😀\u{1}" },
            "future_field": [1, 2.5, null], "another": { "x": true }
        }))
        .unwrap()
    }

    #[test]
    fn a_listing_matches_the_serialized_entries() {
        let event = sample();
        let metadata = event.metadata_json();
        // PostgreSQL's jsonb prints spaces after colons and commas.
        let extra = r#" { "another": {"x": true}, "future_field": [1, 2.5, null] } "#;
        let mut second = event.clone();
        second.image = "ghcr.io/o/app".into();
        second.metadata = None;
        second.created = None;
        let mut listing = Listing::new(false);
        let (metadata, extra) = (metadata.as_deref().map(StoredText::serde), Some(StoredText::serde(extra)));
        listing.push(&entry(&event, metadata, extra)).unwrap();
        let acknowledged_at = Timestamp::from_unix_micros(1_714_557_700_000_001);
        listing
            .push(&ListedUpdate {
                acknowledged_at: Some(acknowledged_at),
                tag: Some((7, "home \"lab\"")),
                ..entry(&second, None, Some(StoredText::jsonb("{}")))
            })
            .unwrap();
        let body: Value = serde_json::from_slice(&listing.finish().unwrap()).unwrap();

        let received_at = Timestamp::from_unix_micros(1_714_557_600_123_456);
        let expected = [
            UpdateEntry { event: event.clone(), received_at, acknowledged_at: None, tag: None },
            UpdateEntry {
                event: DiunEvent { extra: Default::default(), ..second.clone() },
                received_at,
                acknowledged_at: Some(acknowledged_at),
                tag: Some(Tag { id: 7, name: "home \"lab\"".into() }),
            },
        ];
        let expected: serde_json::Map<String, Value> = expected
            .iter()
            .map(|entry| (entry.event.image.clone(), serde_json::to_value(entry).unwrap()))
            .collect();
        assert_eq!(body, Value::Object(expected));
    }

    #[test]
    fn a_listing_is_the_same_pushed_row_by_row_or_written_in_parts_plain_or_gzip() {
        assert_eq!(Listing::new(false).finish().unwrap(), b"{}");
        assert_eq!(gzip::gunzip(&Listing::new(true).finish().unwrap()), b"{}");
        let event = sample();
        let metadata = event.metadata_json();
        // Enough entries to cross several compression chunks.
        let images: Vec<String> = (0..3000).map(|n| format!("registry/image-{n:05}")).collect();
        let updates = || {
            images.iter().map(|image| ListedUpdate {
                image,
                ..entry(&event, metadata.as_deref().map(StoredText::serde), None)
            })
        };
        // Pushed one by one, as SQLite's rows are read.
        let pushed = |gzip| {
            let mut listing = Listing::new(gzip);
            for update in updates() {
                listing.push(&update).unwrap();
            }
            listing.finish().unwrap()
        };
        // Written in parts, as PostgreSQL's are on threads of their own.
        fn in_parts<'u, const N: usize>(
            gzip: bool,
            members: [usize; N],
            mut updates: impl Iterator<Item = ListedUpdate<'u>>,
        ) -> Vec<u8> {
            let parts = Listing::new(gzip).into_parts(members).into_iter().zip(members);
            let finished = parts
                .map(|(mut part, count)| {
                    for update in updates.by_ref().take(count) {
                        let mut member = Vec::new();
                        render(&mut member, &update).unwrap();
                        part.push_rendered(&member);
                    }
                    part.finish().unwrap()
                })
                .collect();
            join_parts(finished)
        }
        let plain = pushed(false);
        assert!(gzip::gunzip(&pushed(true)) == plain);
        for gzip in [false, true] {
            let check = |body: Vec<u8>, members: &str| {
                let body = if gzip { gzip::gunzip(&body) } else { body };
                assert!(body == plain, "parts {members}, gzip {gzip}");
            };
            check(in_parts(gzip, [3000], updates()), "3000");
            check(in_parts(gzip, [1500, 1500], updates()), "1500, 1500");
            check(in_parts(gzip, [0, 1000, 2000], updates()), "0, 1000, 2000");
            check(in_parts(gzip, [1000, 2000, 0], updates()), "1000, 2000, 0");
        }
        assert_eq!(in_parts(false, [0, 0], std::iter::empty()), b"{}");
        assert_eq!(gzip::gunzip(&in_parts(true, [0, 0], std::iter::empty())), b"{}");
        let parsed: serde_json::Map<String, Value> = serde_json::from_slice(&plain).unwrap();
        assert_eq!(parsed.len(), 3000);
    }

    /// The same values, stored as serde_json writes them (SQLite, PostgreSQL's `metadata_json`)
    /// or as jsonb prints them (PostgreSQL), list as the same bytes, either way for each.
    #[test]
    fn jsonb_rows_list_the_bytes_serde_rows_list() {
        let mut event = sample();
        event.extra =
            serde_json::from_str(r#"{"future_field": [1, 2.5, null], "another": {"x": true, "ab": "c"}}"#)
                .unwrap();
        let (metadata_text, extra_text) = (event.metadata_json(), event.extra_json());
        let (serde_metadata, serde_extra) =
            (metadata_text.as_deref().map(StoredText::serde), extra_text.as_deref().map(StoredText::serde));
        let as_serde_wrote = entry(&event, serde_metadata, serde_extra);
        // As PostgreSQL prints them: shorter keys first, blanks after colons and commas.
        let metadata = r#"{"ctn_names": "web", "ünïcode": "😀\u0001"}"#;
        let extra = r#"{"another": {"x": true, "ab": "c"}, "future_field": [1, 2.5, null]}"#;
        assert_eq!(
            serde_json::from_str::<Value>(metadata).unwrap(),
            serde_json::to_value(&event.metadata).unwrap(),
            "the sample's metadata, printed as jsonb prints it"
        );
        let (metadata, extra) = (StoredText::jsonb(metadata), StoredText::jsonb(extra));
        let as_jsonb_printed = entry(&event, Some(metadata), Some(extra));
        let rendered = |entry| {
            let mut out = Vec::new();
            render(&mut out, &entry).unwrap();
            String::from_utf8(out).unwrap()
        };
        let serde = rendered(as_serde_wrote);
        assert_eq!(rendered(as_jsonb_printed), serde);
        // As PostgreSQL lists them: the metadata as the service wrote it, the rest as jsonb.
        assert_eq!(rendered(entry(&event, serde_metadata, Some(extra))), serde);
        assert_eq!(rendered(entry(&event, Some(metadata), serde_extra)), serde);
    }

    #[test]
    fn object_members_strip_braces_and_blanks() {
        assert_eq!(object_members(r#"{"a":1}"#), r#""a":1"#);
        assert_eq!(object_members(" { \"a\": 1 } "), "\"a\": 1");
        assert_eq!(object_members("{}"), "");
        assert_eq!(object_members("{ }"), "");
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_found_wherever_it_is() {
        for byte in 0u8..0x80 {
            for at in 0..17 {
                let mut text = vec![b'a'; 17];
                text[at] = byte;
                let text = String::from_utf8(text).unwrap();
                let mut out = Vec::new();
                string(&mut out, &text);
                assert_eq!(out, serde_json::to_vec(&text).unwrap(), "byte {byte:#x} at {at}");
            }
        }
    }

    proptest::proptest! {
        /// Cut anywhere, the merged order of two sorted runs splits into a front taken from the
        /// start of each run, holding exactly the first items.
        #[test]
        fn a_merge_splits_where_its_first_items_end(
            names in proptest::collection::btree_set("[a-c]{0,4}", 0..40),
            in_a in proptest::collection::vec(proptest::bool::ANY, 40),
            k in 0usize..45,
        ) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for (name, to_a) in names.iter().zip(&in_a) {
                if *to_a { a.push(name.as_str()) } else { b.push(name.as_str()) }
            }
            let (i, j) = merged_split(&a, &b, k, |name| name);
            let front: std::collections::BTreeSet<&str> = a[..i].iter().chain(&b[..j]).copied().collect();
            let first: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).take(k).collect();
            proptest::prop_assert_eq!(front, first);
        }

        /// Whatever the text, the listing writes it exactly as serde_json does.
        #[test]
        fn strings_are_written_as_serde_writes_them(text in "([ -~]|[\\x00-\\x1f]|\\PC)*") {
            let mut out = Vec::new();
            string(&mut out, &text);
            proptest::prop_assert_eq!(out, serde_json::to_vec(&text).unwrap());
        }
    }
}
