//! Differential property test of the store (SPEC §4–5): random sequences of operations run on
//! SQLite, on PostgreSQL (when `TEST_DATABASE_URL` is given) and on a plain in-memory model of
//! the specification. Every answer, and the whole visible state (`list_updates`, `list_tags`),
//! must agree after every step.
//!
//! Tag ids differ between backends by design (a PostgreSQL identity also spends a number on a
//! refused duplicate), so each backend's ids are mapped to the model's as tags are created;
//! everything else, timestamps included, must be identical: every backend is handed the same
//! `Timestamp` for the same operation.
//!
//! 64 cases by default (about 20 s with PostgreSQL); `PROPTEST_CASES=5000 cargo test --test differential`
//! for a long run. A failure prints the shortest operation sequence that still fails.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use diun_dashboard::listing::Listing;
use diun_dashboard::model::{DiunEvent, Tag, UpdateEntry};
use diun_dashboard::store::{Assignment, ImageOutcome, Received, Store, StoreError, UpdateStore};
use diun_dashboard::time::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};

const DEFAULT_CASES: u32 = 64;

/// Images the operations pick from: case and accent variants, a digest, non-ASCII, so that
/// bytewise ordering and exact matching are exercised.
const IMAGES: &[&str] = &[
    "docker.io/library/nginx:1.27",
    "docker.io/library/Nginx:1.27",
    "ghcr.io/org/app@sha256:0123abcd",
    "a:1",
    "registry.example:5000/café/ünï:1",
    "lscr.io/linuxserver/ZZZ:latest",
    "_/x:1",
    "😀/emoji:1",
];
/// Never upserted.
const UNKNOWN_IMAGES: &[&str] = &["nope:1", "docker.io/library/nginx:1.2", "NGINX:1.27", ""];
/// Duplicates only in case or accent, digits, and a German sharp s, for name uniqueness and the
/// case-insensitive order.
const TAG_NAMES: &[&str] =
    &["prod", "Prod", "PROD", "dev", "Ärger", "ärger", "10", "9", "a b", "_x", "zulu", "ß", "SS", "😀"];
/// Ids no backend hands out in a test.
const INVALID_TAG_IDS: &[i64] = &[0, -1, i64::MIN, i64::MAX, 1 << 40];

#[derive(Clone, Debug)]
enum ImageRef {
    Known(usize),
    Unknown(usize),
}

impl ImageRef {
    fn name(&self) -> String {
        match self {
            ImageRef::Known(i) => IMAGES[i % IMAGES.len()].to_string(),
            ImageRef::Unknown(i) => UNKNOWN_IMAGES[i % UNKNOWN_IMAGES.len()].to_string(),
        }
    }
}

/// A tag as an operation names it: one created earlier in the sequence (deleted ones
/// included), or an id that never exists.
#[derive(Clone, Debug)]
enum TagRef {
    Created(usize),
    Invalid(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Upsert(Box<DiunEvent>, Timestamp),
    Acknowledge(ImageRef, Timestamp),
    Remove(ImageRef),
    /// The time of the acknowledgement, and the newest report the user was shown, if named.
    AcknowledgeAll(Timestamp, Option<Timestamp>),
    AcknowledgeByTag(TagRef, Timestamp, Option<Timestamp>),
    CreateTag(String),
    DeleteTag(TagRef),
    AssignTag(ImageRef, TagRef),
    UnassignTag(ImageRef),
}

/// What an operation answered, with tag ids in the model's numbering.
#[derive(Debug, PartialEq)]
enum Outcome {
    Done,
    Found(bool),
    Count(u64),
    CountForTag(Option<u64>),
    Created(Option<i64>),
    Assigned(Assignment),
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Any text without U+0000 (which the HTTP layer refuses, as neither PostgreSQL column type
/// can hold it), control characters included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9 ./:@_-]{0,12}",
        2 => "[^\\x00]{0,12}",
        1 => Just(String::new()),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Decimals of a few digits only: extreme floats do not survive storage exactly yet
        // (see `numbers_come_back_exactly` in tests/hostile.rs).
        (-1_000_000i64..1_000_000, 0u32..4).prop_map(|(n, scale)| {
            serde_json::Number::from_f64(n as f64 / 10f64.powi(scale as i32))
                .map_or(Value::Null, Value::Number)
        }),
        text().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn metadata() -> impl Strategy<Value = Option<Map<String, Value>>> {
    let value = prop_oneof![3 => text().prop_map(Value::String), 1 => json_value()];
    prop::option::weighted(
        0.8,
        prop::collection::btree_map(text(), value, 0..6).prop_map(|m| m.into_iter().collect()),
    )
}

/// Top-level fields DIUN may add one day: kept in `extra`.
fn extra() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text().prop_map(|key| format!("x_{key}")), json_value(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

fn created() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("2024-05-14T18:21:39.584547123Z".to_string())),
        Just(Some("2020-03-26T14:23:56+02:00".to_string())),
        text().prop_map(Some),
    ]
}

fn event() -> impl Strategy<Value = DiunEvent> {
    let strings = prop::collection::vec(text(), 8);
    (0..IMAGES.len(), strings, created(), metadata(), extra()).prop_map(
        |(image, s, created, metadata, extra)| DiunEvent {
            diun_version: s[0].clone(),
            hostname: s[1].clone(),
            status: s[2].clone(),
            provider: s[3].clone(),
            image: IMAGES[image].to_string(),
            hub_link: s[4].clone(),
            mime_type: s[5].clone(),
            digest: s[6].clone(),
            created,
            platform: s[7].clone(),
            metadata,
            extra,
        },
    )
}

/// Mostly 1970–2100; now and then before 1970 (a clock set wrong), down to 1900.
fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        9 => 0i64..4_102_444_800_000_000,
        1 => -2_208_988_800_000_000i64..0,
    ]
    .prop_map(Timestamp::from_unix_micros)
}

fn image_ref() -> impl Strategy<Value = ImageRef> {
    prop_oneof![4 => any::<usize>().prop_map(ImageRef::Known), 1 => any::<usize>().prop_map(ImageRef::Unknown)]
}

fn tag_ref() -> impl Strategy<Value = TagRef> {
    prop_oneof![5 => any::<usize>().prop_map(TagRef::Created), 1 => any::<usize>().prop_map(TagRef::Invalid)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (event(), timestamp()).prop_map(|(e, t)| Op::Upsert(Box::new(e), t)),
        3 => (image_ref(), timestamp()).prop_map(|(i, t)| Op::Acknowledge(i, t)),
        1 => image_ref().prop_map(Op::Remove),
        1 => (timestamp(), prop::option::of(timestamp())).prop_map(|(t, until)| Op::AcknowledgeAll(t, until)),
        2 => (tag_ref(), timestamp(), prop::option::of(timestamp()))
            .prop_map(|(tag, t, until)| Op::AcknowledgeByTag(tag, t, until)),
        3 => prop::sample::select(TAG_NAMES).prop_map(|name| Op::CreateTag(name.to_string())),
        1 => tag_ref().prop_map(Op::DeleteTag),
        4 => (image_ref(), tag_ref()).prop_map(|(i, tag)| Op::AssignTag(i, tag)),
        1 => image_ref().prop_map(Op::UnassignTag),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..40)
}

// ---------------------------------------------------------------------------------------------
// The model: SPEC §4.2–4.3 and §5 as plain collections.

#[derive(Default)]
struct Model {
    updates: BTreeMap<String, (DiunEvent, Timestamp, Option<Timestamp>)>,
    tags: BTreeMap<i64, String>,
    assignments: BTreeMap<String, i64>,
    /// Every tag id handed out, in order, deleted ones too.
    created: Vec<i64>,
}

impl Model {
    fn tag_id(&self, tag: &TagRef) -> i64 {
        match tag {
            TagRef::Created(k) if !self.created.is_empty() => self.created[k % self.created.len()],
            TagRef::Created(k) | TagRef::Invalid(k) => INVALID_TAG_IDS[k % INVALID_TAG_IDS.len()],
        }
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Upsert(event, at) => {
                // Every field overwritten, pending again, the tag kept.
                self.updates.insert(event.image.clone(), ((**event).clone(), *at, None));
                Outcome::Done
            }
            Op::Acknowledge(image, at) => match self.updates.get_mut(&image.name()) {
                Some((_, _, acknowledged)) => {
                    acknowledged.get_or_insert(*at);
                    Outcome::Found(true)
                }
                None => Outcome::Found(false),
            },
            Op::Remove(image) => {
                // Its group assignment goes with it; a later report starts untagged.
                self.assignments.remove(&image.name());
                Outcome::Found(self.updates.remove(&image.name()).is_some())
            }
            Op::AcknowledgeAll(at, until) => {
                let pending = self.updates.values_mut().filter(|(_, received, ack)| {
                    ack.is_none() && until.is_none_or(|until| *received <= until)
                });
                Outcome::Count(pending.map(|(_, _, ack)| *ack = Some(*at)).count() as u64)
            }
            Op::AcknowledgeByTag(tag, at, until) => {
                let id = self.tag_id(tag);
                if !self.tags.contains_key(&id) {
                    return Outcome::CountForTag(None);
                }
                let mut count = 0;
                for (image, (_, received, ack)) in &mut self.updates {
                    let shown = until.is_none_or(|until| *received <= until);
                    if ack.is_none() && shown && self.assignments.get(image) == Some(&id) {
                        *ack = Some(*at);
                        count += 1;
                    }
                }
                Outcome::CountForTag(Some(count))
            }
            Op::CreateTag(name) => {
                if self.tags.values().any(|existing| existing == name) {
                    return Outcome::Created(None);
                }
                let id = self.created.last().map_or(1, |last| last + 1);
                self.created.push(id);
                self.tags.insert(id, name.clone());
                Outcome::Created(Some(id))
            }
            Op::DeleteTag(tag) => {
                let id = self.tag_id(tag);
                let found = self.tags.remove(&id).is_some();
                self.assignments.retain(|_, tag_id| *tag_id != id);
                Outcome::Found(found)
            }
            Op::AssignTag(image, tag) => {
                let id = self.tag_id(tag);
                let image = image.name();
                Outcome::Assigned(if !self.tags.contains_key(&id) {
                    Assignment::UnknownTag
                } else if !self.updates.contains_key(&image) {
                    Assignment::UnknownImage
                } else {
                    self.assignments.insert(image, id);
                    Assignment::Assigned
                })
            }
            Op::UnassignTag(image) => {
                self.assignments.remove(&image.name());
                Outcome::Done
            }
        }
    }

    /// Ordered by image, bytewise.
    fn updates(&self) -> Vec<UpdateEntry> {
        self.updates
            .iter()
            .map(|(image, (event, received_at, acknowledged_at))| UpdateEntry {
                event: event.clone(),
                received_at: *received_at,
                acknowledged_at: *acknowledged_at,
                tag: self.assignments.get(image).map(|id| Tag { id: *id, name: self.tags[id].clone() }),
            })
            .collect()
    }

    /// Ordered by name, case-insensitively (equal names cannot exist).
    fn tags(&self) -> Vec<Tag> {
        let mut tags: Vec<Tag> =
            self.tags.iter().map(|(id, name)| Tag { id: *id, name: name.clone() }).collect();
        tags.sort_by_key(|tag| (tag.name.to_lowercase(), tag.name.clone()));
        tags
    }
}

// ---------------------------------------------------------------------------------------------
// A backend under test, with its tag ids mapped to the model's.

struct Backend {
    name: &'static str,
    store: Arc<Store>,
    /// model id → this backend's id, for every tag created so far.
    ids: HashMap<i64, i64>,
}

fn fail(what: impl Debug) -> TestCaseError {
    TestCaseError::fail(format!("{what:?}"))
}

impl Backend {
    fn new(name: &'static str, store: Arc<Store>) -> Self {
        Self { name, store, ids: HashMap::new() }
    }

    /// The id this backend knows the model's tag by; ids that never exist pass unchanged.
    fn tag_id(&self, model_id: i64) -> i64 {
        self.ids.get(&model_id).copied().unwrap_or(model_id)
    }

    fn model_id(&self, backend_id: i64) -> Result<i64, TestCaseError> {
        self.ids
            .iter()
            .find(|(_, id)| **id == backend_id)
            .map(|(model, _)| *model)
            .ok_or_else(|| fail(format!("{}: tag id {backend_id} was never handed out", self.name)))
    }

    fn translate(&self, tag: Option<Tag>) -> Result<Option<Tag>, TestCaseError> {
        tag.map(|tag| Ok(Tag { id: self.model_id(tag.id)?, name: tag.name })).transpose()
    }

    async fn apply(&mut self, op: &Op, model: &Model, expected: &Outcome) -> Result<Outcome, StoreError> {
        let store = &self.store;
        Ok(match op {
            Op::Upsert(event, at) => {
                store.upsert_event((**event).clone(), Received::At(*at)).await?;
                Outcome::Done
            }
            Op::Acknowledge(image, at) => {
                Outcome::Found(store.acknowledge(image.name(), *at, None).await? == ImageOutcome::Done)
            }
            Op::Remove(image) => {
                Outcome::Found(store.remove_update(image.name(), None).await? == ImageOutcome::Done)
            }
            Op::AcknowledgeAll(at, until) => Outcome::Count(store.acknowledge_all(*at, *until).await?),
            Op::AcknowledgeByTag(tag, at, until) => Outcome::CountForTag(
                store.acknowledge_by_tag(self.tag_id(model.tag_id(tag)), *at, *until).await?,
            ),
            Op::CreateTag(name) => match store.create_tag(name.clone()).await {
                Ok(tag) => {
                    if let Outcome::Created(Some(model_id)) = expected {
                        self.ids.insert(*model_id, tag.id);
                        Outcome::Created(Some(*model_id))
                    } else {
                        Outcome::Created(Some(-tag.id))
                    }
                }
                Err(StoreError::DuplicateTag) => Outcome::Created(None),
                Err(err) => return Err(err),
            },
            Op::DeleteTag(tag) => Outcome::Found(store.delete_tag(self.tag_id(model.tag_id(tag))).await?),
            Op::AssignTag(image, tag) => {
                Outcome::Assigned(store.assign_tag(image.name(), self.tag_id(model.tag_id(tag))).await?)
            }
            Op::UnassignTag(image) => {
                store.unassign_tag(image.name()).await?;
                Outcome::Done
            }
        })
    }

    /// `GET /api/updates` is written from the rows by its own code (on PostgreSQL from two half
    /// queries, sorted here): it must say what the entries say, in their order, and its gzip
    /// form (on PostgreSQL two parts compressed apart) must decode to the same bytes.
    async fn check_listing(&self, entries: &[UpdateEntry], step: usize) -> Result<(), TestCaseError> {
        let name = self.name;
        let listing = Listing::new(false);
        let body =
            self.store.write_listing(listing).await.map_err(|err| fail(format!("{name}: listing: {err}")))?;
        let parsed: Value = serde_json::from_slice(&body)
            .map_err(|err| fail(format!("{name}: the listing is not JSON: {err}")))?;
        let expected: Map<String, Value> = entries
            .iter()
            .map(|entry| (entry.event.image.clone(), serde_json::to_value(entry).unwrap_or_default()))
            .collect();
        if parsed != Value::Object(expected) {
            return Err(fail(format!("{name} after step {step}: the listing differs from the entries")));
        }
        let order: Vec<&str> = entries.iter().map(|entry| entry.event.image.as_str()).collect();
        if support::top_level_keys(&body) != order {
            return Err(fail(format!("{name} after step {step}: the listing's images are out of order")));
        }
        let gzip = self
            .store
            .write_listing(Listing::new(true))
            .await
            .map_err(|err| fail(format!("{name}: gzip listing: {err}")))?;
        let unzipped = support::gunzip(&gzip).map_err(|err| {
            fail(format!("{name} after step {step}: the gzip listing does not decode: {err}"))
        })?;
        if unzipped != body {
            return Err(fail(format!(
                "{name} after step {step}: the gzip listing differs from the plain one"
            )));
        }
        Ok(())
    }

    /// Compares everything the API can show with the model.
    async fn check_state(&self, model: &Model, step: usize) -> Result<(), TestCaseError> {
        let name = self.name;
        let stored =
            self.store.list_updates().await.map_err(|err| fail(format!("{name}: list_updates: {err}")))?;
        self.check_listing(&stored, step).await?;
        let updates = stored
            .into_iter()
            .map(|entry| Ok(UpdateEntry { tag: self.translate(entry.tag.clone())?, ..entry }))
            .collect::<Result<Vec<_>, TestCaseError>>()?;
        let expected = model.updates();
        if updates != expected {
            return Err(fail(format!(
                "{name} after step {step}: the updates differ from the model\n{}",
                first_difference(&expected, &updates)
            )));
        }
        let tags = self.store.list_tags().await.map_err(|err| fail(format!("{name}: list_tags: {err}")))?;
        let tags = tags
            .into_iter()
            .map(|tag| Ok(Tag { id: self.model_id(tag.id)?, name: tag.name }))
            .collect::<Result<Vec<_>, TestCaseError>>()?;
        if tags != model.tags() {
            return Err(fail(format!(
                "{name} after step {step}: tags {tags:?}, the model has {:?}",
                model.tags()
            )));
        }
        Ok(())
    }
}

fn first_difference(expected: &[UpdateEntry], actual: &[UpdateEntry]) -> String {
    let images = |entries: &[UpdateEntry]| entries.iter().map(|e| e.event.image.clone()).collect::<Vec<_>>();
    if images(expected) != images(actual) {
        return format!("model images {:?}\nstore images {:?}", images(expected), images(actual));
    }
    for (want, got) in expected.iter().zip(actual) {
        if want != got {
            return format!("model {want:#?}\nstore {got:#?}");
        }
    }
    String::new()
}

// ---------------------------------------------------------------------------------------------
// Running the cases

/// The PostgreSQL backend: one schema and one store for the whole run, emptied before each
/// case.
#[cfg(feature = "postgres")]
struct Postgres {
    db: support::TestDb,
    store: Arc<Store>,
    /// For emptying the tables between cases.
    client: tokio_postgres::Client,
}

#[cfg(feature = "postgres")]
impl Postgres {
    async fn new() -> Option<Self> {
        let db = support::TestDb::postgres().await?;
        use diun_dashboard::config::{Database, Secret};
        let Database::Postgres { url } = db.database() else { unreachable!() };
        // Commits need not wait for the disk here: the comparison is about answers, not
        // durability, and waiting for thousands of fsyncs would dominate the run.
        let fast = format!("{}%20-c%20synchronous_commit%3Doff", url.expose());
        let database = diun_dashboard::config::Database::Postgres { url: Secret::new(fast) };
        let store = Arc::new(Store::open(&database).await.expect("open PostgreSQL store"));
        let (client, connection) =
            tokio_postgres::connect(url.expose(), tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        Some(Self { db, store, client })
    }

    async fn backend(&self) -> Backend {
        // DELETE rather than TRUNCATE: much faster on small tables. Ids are mapped anyway.
        self.client
            .batch_execute("DELETE FROM tag_assignments; DELETE FROM updates; DELETE FROM tags")
            .await
            .expect("empty the tables");
        Backend::new("postgres", Arc::clone(&self.store))
    }

    async fn close(&self) {
        self.store.close().await;
        self.db.drop_schema().await;
    }
}

#[cfg(not(feature = "postgres"))]
struct Postgres;

async fn run_case(ops: &[Op], postgres: Option<&Postgres>) -> Result<(), TestCaseError> {
    let mut backends = Vec::new();
    #[cfg(feature = "sqlite")]
    let dir = support::TempDir::new();
    #[cfg(feature = "sqlite")]
    {
        let database = diun_dashboard::config::Database::Sqlite { path: dir.0.join("diun.db") };
        let store = Store::open(&database).await.expect("open SQLite store");
        backends.push(Backend::new("sqlite", Arc::new(store)));
    }
    #[cfg(feature = "postgres")]
    if let Some(postgres) = postgres {
        backends.push(postgres.backend().await);
    }
    #[cfg(not(feature = "postgres"))]
    let _ = postgres;

    let mut model = Model::default();
    let mut outcome = Ok(());
    'steps: for (step, op) in ops.iter().enumerate() {
        let expected = model.apply(op);
        for backend in &mut backends {
            let result = match backend.apply(op, &model, &expected).await {
                Ok(answer) if answer == expected => backend.check_state(&model, step).await,
                Ok(answer) => Err(fail(format!(
                    "{} at step {step} ({op:?}): answered {answer:?}, the model {expected:?}",
                    backend.name
                ))),
                Err(err) => Err(fail(format!("{} at step {step} ({op:?}): error {err}", backend.name))),
            };
            if result.is_err() {
                outcome = result;
                break 'steps;
            }
        }
    }
    #[cfg(feature = "sqlite")]
    if let Some(sqlite) = backends.iter().find(|backend| backend.name == "sqlite") {
        sqlite.store.close().await;
    }
    outcome
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_CASES)
}

#[test]
fn every_backend_agrees_with_the_model_after_every_step() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    #[cfg(feature = "postgres")]
    let postgres = runtime.block_on(Postgres::new());
    #[cfg(not(feature = "postgres"))]
    let postgres: Option<Postgres> = None;
    if cfg!(not(feature = "sqlite")) && postgres.is_none() {
        support::skip("no backend to compare with the model");
        return;
    }
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&ops(), |ops| runtime.block_on(run_case(&ops, postgres.as_ref())));
    #[cfg(feature = "postgres")]
    if let Some(postgres) = &postgres {
        runtime.block_on(postgres.close());
    }
    if let Err(err) = result {
        panic!("{err}");
    }
}
