//! `cargo xtask bench`: builds the release binaries and measures them on loopback, the same way
//! every time (issue 5), for each backend:
//!
//! - floor: `examples/bench_floor.rs`, warp parsing the same JSON into the same `DiunEvent`
//!   and answering 200, measured just before and just after each backend's ingest: this
//!   machine's HTTP+JSON ceiling, whose mean the ingest rate is divided by;
//! - ingest: `POST /webhook` with `bench/ingest.lua` over 5,000 distinct realistic payloads
//!   (written to `target/bench/payloads.jsonl`), re-sent so upserts happen;
//! - list: `GET /api/updates` over those 5,000 images with 100 tags, half of the images
//!   assigned, plain and with `Accept-Encoding: gzip`;
//! - memory: VmRSS a second after start, VmHWM right after the ingest run;
//! - start-up: exec to the first 200 from `/healthz` on an empty database, median of runs;
//! - size: the stripped binary of the full build and of both slim builds.
//!
//! Each wrk run also records how much of the machine's CPU time was idle (waiting for I/O
//! included) and how much the hypervisor gave to other guests (steal), so that a run on a busy
//! host shows as one.
//!
//! It prints a table and writes it to `target/bench/results.json`. Nothing here is asserted:
//! machines are noisy, the targets are reported as met or missed, and ratios are what we track.
//!
//! `cargo xtask bench [--only sqlite|postgres] [--quick]` (`--quick`: short runs and fewer
//! start-ups, for working on the harness or on one change; the builds are still brought up to
//! date).

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::schema::{self, ScratchSchema, find_psql};
use crate::system::{self, command};

const BINARY: &str = "diun-dashboard";
const IMAGES: usize = 5000;
const TAGS: usize = 100;
const INGEST_CONNECTIONS: u32 = 32;
/// wrk's threads; the server shares the machine's cores with them (loopback).
const WRK_THREADS: u32 = 2;
/// Stolen CPU time from which the table says the host was busy with other guests.
const STOLEN_NOTE_PCT: f64 = 5.0;
const START_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(15);

struct Options {
    backends: Vec<Backend>,
    ingest: Duration,
    list: Duration,
    list_connections: u32,
    startup_runs: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut options = Options {
            backends: vec![Backend::Sqlite, Backend::Postgres],
            ingest: Duration::from_secs(10),
            list: Duration::from_secs(10),
            list_connections: 1,
            startup_runs: 11,
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--only" => {
                    options.backends = match args.next().as_deref() {
                        Some("sqlite") => vec![Backend::Sqlite],
                        Some("postgres") => vec![Backend::Postgres],
                        other => return Err(format!("--only takes sqlite or postgres, not {other:?}")),
                    }
                }
                "--quick" => {
                    options.ingest = Duration::from_secs(3);
                    options.list = Duration::from_secs(3);
                    options.startup_runs = 3;
                }
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; usage: cargo xtask bench [--only sqlite|postgres] [--quick]"
                    ));
                }
            }
        }
        Ok(options)
    }
}

/// The bench's folder (databases, the servers' logs), removed when dropped unless kept: a
/// backend's failure keeps it for its logs, which its error names; any other error removes it.
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the folders of earlier runs whose process is gone (killed, so its [`Scratch`] was
/// never dropped), which would otherwise pile up databases; a run still going keeps its own.
fn remove_unowned_work(out: &Path) {
    for entry in fs::read_dir(out).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.strip_prefix("work-")) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

pub fn run(root: &Path) -> Result<(), String> {
    let options = Options::parse(std::env::args().skip(2))?;
    // The servers are stopped with `kill`, which minimal Debian images lack (procps).
    system::ensure_packages(&[("wrk", "wrk"), ("procps", "kill")])?;
    let out = root.join("target/bench");
    fs::create_dir_all(&out).map_err(|e| format!("bench: {}: {e}", out.display()))?;
    let load_before = load_average();

    let builds = build(root)?;
    let sizes = sizes(&out, &builds)?;
    let payloads = out.join("payloads.jsonl");
    let images = write_payloads(&payloads)?;

    // Beside the build, on the project's disk: not in TMPDIR, which can be a tmpfs (Debian 13's
    // /tmp), where the SQLite file's writes would cost nothing.
    let mut work = Scratch { path: out.join(format!("work-{}", std::process::id())), keep: false };
    remove_unowned_work(&out);
    let _ = fs::remove_dir_all(&work.path);
    fs::create_dir_all(&work.path).map_err(|e| format!("bench: {}: {e}", work.path.display()))?;
    let sqlite_filesystem = filesystem_of(&work.path);
    let ctx = Context {
        root,
        work: &work.path,
        builds: &builds,
        payloads: &payloads,
        images: &images,
        options: &options,
    };

    let mut backends = serde_json::Map::new();
    let mut postgres_version = Value::Null;
    let mut postgres_settings = Value::Null;
    for &backend in &options.backends {
        println!("\n==> bench: {}", backend.name());
        let result = match backend {
            Backend::Sqlite => bench_backend(&ctx, &Database::Sqlite),
            Backend::Postgres => match crate::postgres::provide_with(crate::postgres::Durability::AsDeployed)
            {
                Ok(server) => {
                    let database = Database::Postgres { url: server.url(), psql: find_psql()? };
                    postgres_version = database.server_version().map_or(Value::Null, Value::from);
                    postgres_settings = database.server_settings();
                    let result = bench_backend(&ctx, &database);
                    drop(server);
                    result
                }
                Err(why) if !system::in_ci() => {
                    println!("bench: PostgreSQL NOT RUN: {why}");
                    Ok(json!({ "not_run": why }))
                }
                Err(why) => Err(why),
            },
        };
        match result {
            Ok(result) => backends.insert(backend.name().into(), result),
            Err(why) => {
                work.keep = true;
                return Err(format!("{why} (the bench's folder is kept: {})", work.path.display()));
            }
        };
    }
    drop(work);

    let mut results = json!({
        "machine": machine(postgres_version, postgres_settings, sqlite_filesystem, load_before),
        "settings": {
            "images": IMAGES,
            "tags": TAGS,
            "ingest_connections": INGEST_CONNECTIONS,
            "ingest_seconds": options.ingest.as_secs(),
            "list_connections": options.list_connections,
            "list_seconds": options.list.as_secs(),
            "wrk_threads": WRK_THREADS,
            "startup_runs": options.startup_runs,
        },
        "size_bytes": sizes,
        "backends": backends,
    });
    let targets = check_targets(&results);
    results["targets"] = Value::Array(targets);
    print_table(&results);
    let path = out.join("results.json");
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    fs::write(&path, text + "\n").map_err(|e| format!("bench: {}: {e}", path.display()))?;
    println!("\nbench: results written to {}", path.strip_prefix(root).unwrap_or(&path).display());
    Ok(())
}

struct Context<'a> {
    root: &'a Path,
    work: &'a Path,
    builds: &'a Builds,
    payloads: &'a Path,
    images: &'a [String],
    options: &'a Options,
}

// ---------------------------------------------------------------------------------------------
// Building

struct Builds {
    full: PathBuf,
    floor: PathBuf,
    slim_sqlite: PathBuf,
    slim_postgres: PathBuf,
}

/// The release binary, the floor example and both slim binaries. The binary and the example
/// are built by separate commands: built together, the example's dev-dependency features
/// would be unified into the binary's dependencies, and the binary would not be the one users
/// get. The slim builds get target directories of their own so that nothing is rebuilt back
/// and forth (and cargo makes an unchanged one a no-op).
fn build(root: &Path) -> Result<Builds, String> {
    let exe = std::env::consts::EXE_SUFFIX;
    let release = root.join("target/release");
    // --locked, as the Dockerfiles build: the measured binary is the one users get, and a
    // bench never rewrites Cargo.lock.
    system::cargo(root, &["build", "--release", "--locked", "--bin", BINARY], &[])?;
    system::cargo(root, &["build", "--release", "--locked", "--example", "bench_floor"], &[])?;
    let slim = |feature: &str| -> Result<PathBuf, String> {
        let dir = format!("target/bench/slim-{feature}");
        let binary = root.join(&dir).join("release").join(format!("{BINARY}{exe}"));
        let args = [
            "build",
            "--release",
            "--locked",
            "--bin",
            BINARY,
            "--no-default-features",
            "--features",
            feature,
        ];
        system::cargo(root, &[&args[..], &["--target-dir", &dir]].concat(), &[])?;
        Ok(binary)
    };
    Ok(Builds {
        full: release.join(format!("{BINARY}{exe}")),
        floor: release.join("examples").join(format!("bench_floor{exe}")),
        slim_sqlite: slim("sqlite")?,
        slim_postgres: slim("postgres")?,
    })
}

/// Sizes of stripped copies (the release profile strips already; this makes sure).
fn sizes(out: &Path, builds: &Builds) -> Result<Value, String> {
    let dir = out.join("stripped");
    fs::create_dir_all(&dir).map_err(|e| format!("bench: {}: {e}", dir.display()))?;
    let mut sizes = serde_json::Map::new();
    for (name, path) in
        [("full", &builds.full), ("sqlite", &builds.slim_sqlite), ("postgres", &builds.slim_postgres)]
    {
        let copy = dir.join(name);
        fs::copy(path, &copy).map_err(|e| format!("bench: {}: {e}", path.display()))?;
        if system::on_path("strip") {
            let status = command("strip", &[]).arg(&copy).status();
            if !status.is_ok_and(|s| s.success()) {
                return Err(format!("bench: strip {} failed", copy.display()));
            }
        }
        let size = fs::metadata(&copy).map_err(|e| format!("bench: {}: {e}", copy.display()))?.len();
        sizes.insert(name.into(), size.into());
    }
    Ok(Value::Object(sizes))
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// A fixed pseudo-random sequence (a 31-bit LCG), so every run sends the same payloads.
struct Lcg(u64);

impl Lcg {
    /// 0..n
    fn below(&mut self, n: usize) -> usize {
        self.0 = (self.0 * 1_103_515_245 + 12_345) % (1 << 31);
        (self.0 % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn hex(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from(b"0123456789abcdef"[self.below(16)])).collect()
    }

    fn go_time(&mut self) -> String {
        format!(
            "2024-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
            1 + self.below(12),
            1 + self.below(28),
            self.below(24),
            self.below(60),
            self.below(60)
        )
    }
}

/// Writes `IMAGES` DIUN events (crazy-max/diun `internal/msg` RenderJSON: the 11 fields in
/// DIUN's order, each provider's own metadata keys) one per line; returns their images.
fn write_payloads(path: &Path) -> Result<Vec<String>, String> {
    let mut rng = Lcg(20_240_501);
    let mut text = String::new();
    let mut images = Vec::with_capacity(IMAGES);
    for i in 0..IMAGES {
        let (image, body) = payload(&mut rng, i);
        text.push_str(&body);
        text.push('\n');
        images.push(image);
    }
    fs::write(path, text).map_err(|e| format!("bench: {}: {e}", path.display()))?;
    Ok(images)
}

fn payload(rng: &mut Lcg, i: usize) -> (String, String) {
    const APPS: [&str; 35] = [
        "nginx",
        "postgres",
        "redis",
        "grafana",
        "home-assistant",
        "traefik",
        "nextcloud",
        "jellyfin",
        "plex",
        "sonarr",
        "radarr",
        "prowlarr",
        "vaultwarden",
        "gitea",
        "portainer",
        "prometheus",
        "node-exporter",
        "loki",
        "uptime-kuma",
        "immich-server",
        "paperless-ngx",
        "mariadb",
        "mosquitto",
        "zigbee2mqtt",
        "pihole",
        "adguardhome",
        "syncthing",
        "minio",
        "keycloak",
        "authelia",
        "caddy",
        "wireguard",
        "homepage",
        "bookstack",
        "freshrss",
    ];
    const REGISTRIES: [&str; 9] = [
        "docker.io",
        "docker.io",
        "docker.io",
        "ghcr.io",
        "ghcr.io",
        "lscr.io",
        "quay.io",
        "registry.gitlab.com",
        "registry.example.com:5000",
    ];
    const HOSTS: [&str; 10] = [
        "nas",
        "pi-kitchen",
        "pi-garage",
        "node-01",
        "node-02",
        "node-03",
        "edge-fra-1",
        "edge-ams-2",
        "homelab",
        "media-box",
    ];
    const PROVIDERS: [&str; 10] = [
        "docker",
        "docker",
        "docker",
        "docker",
        "swarm",
        "kubernetes",
        "kubernetes",
        "nomad",
        "containerd",
        "file",
    ];
    let app = rng.pick(&APPS);
    let registry = rng.pick(&REGISTRIES);
    // Every image is distinct: its index is part of the repository name.
    let (namespace, app) = if registry == "docker.io" && rng.below(3) == 0 {
        ("library".to_string(), format!("{app}-{i}"))
    } else {
        (format!("team-{i}"), app.to_string())
    };
    let mut image =
        format!("{registry}/{namespace}/{app}:{}.{}.{}", 1 + rng.below(30), rng.below(20), rng.below(10));
    if rng.below(20) == 0 {
        image = format!("{image}@sha256:{}", rng.hex(64));
    }
    let hub_link = match registry {
        "docker.io" => format!("https://hub.docker.com/r/{namespace}/{app}"),
        "registry.example.com:5000" => String::new(),
        other => format!("https://{other}/{namespace}/{app}"),
    };
    let provider = rng.pick(&PROVIDERS);
    let created = if rng.below(25) == 0 {
        Value::Null
    } else {
        Value::from(format!(
            "2024-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1_000_000_000)
        ))
    };
    let metadata = if rng.below(30) == 0 { Value::Null } else { metadata(rng, provider, &app) };
    let fields: [(&str, Value); 11] = [
        ("diun_version", "4.28.0".into()),
        ("hostname", rng.pick(&HOSTS).into()),
        ("status", if rng.below(3) == 0 { "new" } else { "update" }.into()),
        ("provider", provider.into()),
        ("image", image.clone().into()),
        ("hub_link", hub_link.into()),
        (
            "mime_type",
            rng.pick(&[
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ])
            .into(),
        ),
        ("digest", format!("sha256:{}", rng.hex(64)).into()),
        ("created", created),
        ("platform", rng.pick(&["linux/amd64", "linux/amd64", "linux/arm64", "linux/arm/v7"]).into()),
        ("metadata", metadata),
    ];
    (image, ordered_object(&fields))
}

fn metadata(rng: &mut Lcg, provider: &str, app: &str) -> Value {
    let pairs: Vec<(&str, String)> = match provider {
        "docker" => vec![
            ("ctn_command", format!("/docker-entrypoint.sh {app}")),
            ("ctn_createdat", rng.go_time()),
            ("ctn_id", rng.hex(64)),
            ("ctn_names", format!("{app}-{}", 1 + rng.below(9))),
            ("ctn_size", format!("{}MB", 1 + rng.below(900))),
            ("ctn_state", "running".into()),
            ("ctn_status", format!("Up {} hours (healthy)", 1 + rng.below(72))),
        ],
        "swarm" => vec![
            ("svc_id", rng.hex(25)),
            ("svc_createdat", rng.go_time()),
            ("svc_updatedat", rng.go_time()),
            ("ctn_name", app.into()),
        ],
        "kubernetes" => vec![
            ("pod_name", format!("{app}-{}-{}", rng.hex(10), rng.hex(5))),
            ("pod_status", "Running".into()),
            ("pod_namespace", rng.pick(&["default", "media", "monitoring", "home"]).into()),
            ("pod_createdat", rng.go_time()),
            ("ctn_name", app.into()),
            ("ctn_command", "[]".into()),
        ],
        "nomad" => vec![
            ("job_id", app.into()),
            ("job_name", app.into()),
            ("job_status", "running".into()),
            ("job_namespace", "default".into()),
            ("taskgroup_name", app.into()),
            ("task_name", app.into()),
            ("task_driver", "docker".into()),
            ("task_user", String::new()),
        ],
        "containerd" => vec![
            ("ctn_id", rng.hex(64)),
            ("ctn_name", app.into()),
            ("ctn_image", app.into()),
            ("ctn_namespace", "k8s.io".into()),
            ("ctn_createdat", rng.go_time()),
            ("ctn_updatedat", rng.go_time()),
            ("ctn_runtime", "io.containerd.runc.v2".into()),
            ("ctn_snapshotter", "overlayfs".into()),
            ("ctn_snapshot_key", rng.hex(64)),
            ("ctn_status", "RUNNING".into()),
        ],
        _ => vec![("owner", "ops-team".into()), ("env", rng.pick(&["prod", "staging", "lab"]).into())],
    };
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), Value::from(v))).collect())
}

/// A JSON object with its keys in the given order (serde_json's map would sort them).
fn ordered_object(fields: &[(&str, Value)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{value}", Value::from(*key));
    }
    out.push('}');
    out
}

// ---------------------------------------------------------------------------------------------
// One backend

/// Variables for the service under test.
type ServiceEnv = Vec<(&'static str, String)>;

enum Database {
    Sqlite,
    Postgres { url: String, psql: PathBuf },
}

impl Database {
    /// The service's environment for a fresh, empty database named `name`, and the guard that
    /// drops its schema (PostgreSQL).
    fn fresh(&self, work: &Path, name: &str) -> Result<(ServiceEnv, Option<ScratchSchema>), String> {
        match self {
            Database::Sqlite => {
                let dir = work.join(name);
                fs::create_dir_all(&dir).map_err(|e| format!("bench: {}: {e}", dir.display()))?;
                Ok((vec![("DB_PATH", dir.join("diun.db").display().to_string())], None))
            }
            Database::Postgres { url, psql } => {
                let schema =
                    ScratchSchema::create(url, psql, &format!("bench_{}_{name}", std::process::id()))?;
                Ok((vec![("DATABASE_URL", schema.url())], Some(schema)))
            }
        }
    }

    fn sql(&self, sql: &str) -> Result<String, String> {
        let Database::Postgres { url, psql } = self else { return Ok(String::new()) };
        schema::run(psql, url, sql)
    }

    fn server_version(&self) -> Option<String> {
        self.sql("SHOW server_version").ok()
    }

    /// The server's settings that change what a commit costs: a server without `fsync` or
    /// without `synchronous_commit` is faster than a user's, and `autovacuum` competes with the
    /// ingest on a stock one.
    fn server_settings(&self) -> Value {
        let mut settings = serde_json::Map::new();
        for name in ["fsync", "synchronous_commit", "full_page_writes", "autovacuum", "shared_buffers"] {
            if let Ok(value) = self.sql(&format!("SHOW {name}")) {
                settings.insert(name.into(), Value::from(value.trim()));
            }
        }
        // Readable when the server runs here (as root, or as its owner): a tmpfs would make
        // its flushes cost nothing.
        if let Ok(data) = self.sql("SHOW data_directory") {
            let filesystem = filesystem_of(Path::new(data.trim()));
            if !filesystem.is_empty() {
                settings.insert("data_directory_filesystem".into(), Value::from(filesystem));
            }
        }
        Value::Object(settings)
    }
}

fn bench_backend(ctx: &Context, database: &Database) -> Result<Value, String> {
    let Context { work, builds, options, .. } = *ctx;
    let label = match database {
        Database::Sqlite => "sqlite",
        Database::Postgres { .. } => "postgres",
    };

    // The floor right before and right after the ingest it is compared with: on a shared
    // machine the ceiling drifts by 10-20% within minutes, and the mean of the two brackets
    // the ingest run better than either alone.
    let floor_before = run_floor(ctx, label, "before")?;

    let (env, schema) = database.fresh(work, "main")?;
    let port = free_port()?;
    let log = work.join(format!("service-{label}.log"));
    let server = Server::start(&builds.full, &env, port, &log)?;
    sleep(Duration::from_secs(1));
    let idle = server.memory()?;
    let ingest = wrk_ingest(ctx, port, &log)?;
    let peak = server.memory()?;
    // The service stays up (the listing needs its data) but idle; a second for what the
    // ingest left to do (the SQLite checkpoint) before the machine is measured again. A
    // PostgreSQL checkpoint may still be running, which can only lower this floor.
    sleep(Duration::from_secs(1));
    let floor_after = run_floor(ctx, label, "after")?;
    let floor = (floor_before.rate() + floor_after.rate()) / 2.0;
    let for_the_bar = floor_for_the_bar(floor_before.rate(), floor_after.rate());
    let stolen = ingest.cpu.map_or(String::new(), |cpu| {
        format!(", {:.0}% of the CPU time stolen by other guests", cpu.steal_pct)
    });
    println!(
        "bench: {label}: ingest {:.0} req/s ({:.2}x the mean floor, {:.2}x the floor for the bar{stolen})",
        ingest.rate(),
        ingest.rate() / floor,
        ingest.rate() / for_the_bar
    );

    seed(ctx, port)?;
    let list = wrk_list(ctx, port, &log, false)?;
    let list_gzip = wrk_list(ctx, port, &log, true)?;
    let (_, headers, compressed) = http(port, "GET", "/api/updates", &[("Accept-Encoding", "gzip")], None)
        .map_err(|e| format!("bench: GET /api/updates: {e}"))?;
    let gzip = header(&headers, "content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let (_, _, plain) =
        http(port, "GET", "/api/updates", &[], None).map_err(|e| format!("bench: GET /api/updates: {e}"))?;
    server.stop()?;
    drop(schema);

    let startup = startup(ctx, database, label)?;

    Ok(json!({
        "floor": {
            "requests_per_second": round(floor, 0),
            "before": floor_before.to_json(),
            "after": floor_after.to_json(),
        },
        "ingest": merged(ingest.to_json(), json!({
            "ratio_to_floor": round(ingest.rate() / floor, 3),
            "ratio_for_the_bar": round(ingest.rate() / for_the_bar, 3),
            "non_2xx": ingest.status_errors,
        })),
        "list": {
            "connections": options.list_connections,
            "identity": merged(list.to_json(), json!({ "bytes": plain.len() })),
            "gzip": merged(list_gzip.to_json(), json!({ "content_encoding_gzip": gzip, "bytes": compressed.len() })),
        },
        "memory_kib": { "idle_rss": idle.rss_kib, "peak_hwm": peak.hwm_kib },
        "startup_ms": startup,
    }))
}

/// The floor the bar is judged against. The one after the ingest runs beside the idle service
/// and what its database still does (a checkpoint, say), which can only lower it, and a lower
/// floor flatters the ratio: when it is the lower, the one before counts alone. When it is the
/// higher, the host drifted, and the mean of the two brackets the ingest.
fn floor_for_the_bar(before: f64, after: f64) -> f64 {
    if before >= after { before } else { (before + after) / 2.0 }
}

/// One floor run (see `bench_floor.rs`) on a server of its own.
fn run_floor(ctx: &Context, label: &str, when: &str) -> Result<WrkResult, String> {
    let port = free_port()?;
    let log = ctx.work.join(format!("floor-{label}-{when}.log"));
    let server = Server::start(&ctx.builds.floor, &[], port, &log)?;
    sleep(Duration::from_millis(300));
    let result = wrk_ingest(ctx, port, &log)?;
    server.stop()?;
    println!("bench: {label}: floor {when} the ingest {:.0} req/s", result.rate());
    Ok(result)
}

/// `base` with the fields of `extra` added (both JSON objects).
fn merged(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    base
}

/// Makes the list scenario's data: all `IMAGES` images present (the ingest run normally sent
/// them all; any it did not reach are posted now), `TAGS` tags, every other image assigned.
fn seed(ctx: &Context, port: u16) -> Result<(), String> {
    let known = updates(port)?;
    let payloads = fs::read_to_string(ctx.payloads).map_err(|e| format!("bench: {e}"))?;
    let mut posted = 0;
    for (image, body) in ctx.images.iter().zip(payloads.lines()) {
        if !known.contains_key(image) {
            expect(http(port, "POST", "/webhook", &[], Some(body)), 200, "POST /webhook")?;
            posted += 1;
        }
    }
    if posted > 0 {
        println!("bench: the ingest run did not reach {posted} image(s); posted them");
    }
    let json_type = [("Content-Type", "application/json")];
    let mut tags = Vec::with_capacity(TAGS);
    for i in 0..TAGS {
        let body = json!({ "name": format!("group-{i:03}") }).to_string();
        let answer = expect(http(port, "POST", "/api/tags", &json_type, Some(&body)), 201, "POST /api/tags")?;
        let tag: Value = serde_json::from_slice(&answer).map_err(|e| format!("bench: tag: {e}"))?;
        tags.push(tag["id"].as_i64().ok_or("bench: POST /api/tags answered no id")?);
    }
    let mut images: Vec<&String> = ctx.images.iter().collect();
    images.sort();
    for (i, image) in images.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let body = json!({ "image": image, "tag_id": tags[(i / 2) % TAGS] }).to_string();
        expect(
            http(port, "PUT", "/api/tag-assignments", &json_type, Some(&body)),
            204,
            "PUT /api/tag-assignments",
        )?;
    }
    let listed = updates(port)?;
    let tagged = listed.values().filter(|entry| !entry["tag"].is_null()).count();
    if listed.len() != IMAGES || tagged != IMAGES / 2 {
        return Err(format!(
            "bench: after seeding, /api/updates lists {} images ({tagged} tagged); expected {IMAGES} ({})",
            listed.len(),
            IMAGES / 2
        ));
    }
    Ok(())
}

fn updates(port: u16) -> Result<serde_json::Map<String, Value>, String> {
    let body = expect(http(port, "GET", "/api/updates", &[], None), 200, "GET /api/updates")?;
    match serde_json::from_slice(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("bench: /api/updates is not a JSON object".into()),
        Err(err) => Err(format!("bench: /api/updates is not JSON: {err}")),
    }
}

fn expect(
    answer: std::io::Result<(u16, String, Vec<u8>)>,
    status: u16,
    what: &str,
) -> Result<Vec<u8>, String> {
    match answer {
        Ok((got, _, body)) if got == status => Ok(body),
        Ok((got, _, body)) => Err(format!(
            "bench: {what} answered {got}, expected {status}: {}",
            String::from_utf8_lossy(&body)
        )),
        Err(err) => Err(format!("bench: {what}: {err}")),
    }
}

/// Exec to the first 200 from `/healthz`, each run on a fresh empty database.
fn startup(ctx: &Context, database: &Database, label: &str) -> Result<Value, String> {
    let mut runs = Vec::new();
    for run in 0..ctx.options.startup_runs {
        let name = format!("start-{run}");
        let (env, schema) = database.fresh(ctx.work, &name)?;
        let port = free_port()?;
        let log = ctx.work.join(format!("startup-{label}-{run}.log"));
        let started = Instant::now();
        let server = Server::start(&ctx.builds.full, &env, port, &log)?;
        runs.push(started.elapsed().as_secs_f64() * 1000.0);
        server.stop()?;
        drop(schema);
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!("bench: {label}: start-up median {median:.1} ms");
    Ok(json!({
        "median": round(median, 1),
        "runs": runs.iter().map(|ms| round(*ms, 1)).collect::<Vec<_>>(),
    }))
}

// ---------------------------------------------------------------------------------------------
// wrk

struct WrkResult {
    requests: u64,
    duration_us: u64,
    status_errors: u64,
    socket_errors: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
    /// How the machine's CPU time went during the run, where the kernel tells.
    cpu: Option<CpuShare>,
}

/// Shares of the machine's CPU time over a run, in percent.
#[derive(Clone, Copy)]
struct CpuShare {
    /// Idle, waiting for I/O included (the kernel cannot tell them apart per process).
    idle_pct: f64,
    /// Taken by the hypervisor for other guests: high on an oversubscribed host, where every
    /// figure of the run is lower than the machine can do.
    steal_pct: f64,
}

/// The machine's CPU time so far, from the first line of `/proc/stat`, in clock ticks.
#[derive(Clone, Copy)]
struct CpuTimes {
    total: u64,
    idle: u64,
    steal: u64,
}

impl CpuTimes {
    fn now() -> Option<Self> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        parse_cpu_line(stat.lines().next()?)
    }

    fn share_since(self, start: CpuTimes) -> Option<CpuShare> {
        let total = self.total.checked_sub(start.total).filter(|&total| total > 0)? as f64;
        let pct = |end: u64, start: u64| round(end.saturating_sub(start) as f64 * 100.0 / total, 1);
        Some(CpuShare { idle_pct: pct(self.idle, start.idle), steal_pct: pct(self.steal, start.steal) })
    }
}

/// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`; guest time is
/// already counted in user time, so it is left out of the total.
fn parse_cpu_line(line: &str) -> Option<CpuTimes> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.take(8).map(|field| field.parse().ok()).collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks.try_into().ok()?;
    Some(CpuTimes {
        total: user + nice + system + idle + iowait + irq + softirq + steal,
        idle: idle + iowait,
        steal,
    })
}

impl WrkResult {
    fn rate(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    fn to_json(&self) -> Value {
        let ms = |us: u64| round(us as f64 / 1000.0, 2);
        json!({
            "requests": self.requests,
            "requests_per_second": round(self.rate(), 0),
            "p50_ms": ms(self.p50_us),
            "p90_ms": ms(self.p90_us),
            "p99_ms": ms(self.p99_us),
            "max_ms": ms(self.max_us),
            "status_errors": self.status_errors,
            "socket_errors": self.socket_errors,
            "cpu_idle_pct": self.cpu.map(|cpu| cpu.idle_pct),
            "cpu_steal_pct": self.cpu.map(|cpu| cpu.steal_pct),
        })
    }
}

fn wrk_ingest(ctx: &Context, port: u16, log: &Path) -> Result<WrkResult, String> {
    let payloads = ctx.payloads.to_string_lossy();
    wrk(ctx, port, log, "ingest.lua", INGEST_CONNECTIONS, ctx.options.ingest, &[], &[&payloads])
}

fn wrk_list(ctx: &Context, port: u16, log: &Path, gzip: bool) -> Result<WrkResult, String> {
    let headers: &[&str] = if gzip { &["Accept-Encoding: gzip"] } else { &[] };
    wrk(ctx, port, log, "list.lua", ctx.options.list_connections, ctx.options.list, headers, &[])
}

#[allow(clippy::too_many_arguments)]
fn wrk(
    ctx: &Context,
    port: u16,
    log: &Path,
    script: &str,
    connections: u32,
    duration: Duration,
    headers: &[&str],
    script_args: &[&str],
) -> Result<WrkResult, String> {
    let threads = WRK_THREADS.min(connections);
    let mut wrk = Command::new("wrk");
    wrk.current_dir(ctx.root.join("bench"))
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs()))
        .args(["--timeout", "10s", "-s", script]);
    for header in headers {
        wrk.args(["-H", header]);
    }
    wrk.arg(format!("http://127.0.0.1:{port}"));
    if !script_args.is_empty() {
        wrk.arg("--").args(script_args);
    }
    let cpu_before = CpuTimes::now();
    let output = wrk.output().map_err(|e| format!("bench: cannot run wrk: {e}"))?;
    let cpu = cpu_before.zip(CpuTimes::now()).and_then(|(before, after)| after.share_since(before));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|line| line.strip_prefix("BENCH_JSON "));
    let Some(line) = line.filter(|_| output.status.success()) else {
        return Err(format!(
            "bench: wrk {script} failed ({}): {stdout}{}\nserver log: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            log.display()
        ));
    };
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("bench: wrk's report {line:?}: {e}"))?;
    let field = |name: &str| value[name].as_u64().unwrap_or(0);
    Ok(WrkResult {
        requests: field("requests"),
        duration_us: field("duration_us"),
        status_errors: field("status_errors"),
        socket_errors: field("connect_errors")
            + field("read_errors")
            + field("write_errors")
            + field("timeouts"),
        p50_us: field("p50_us"),
        p90_us: field("p90_us"),
        p99_us: field("p99_us"),
        max_us: field("max_us"),
        cpu,
    })
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A started server; killed if it is still running when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

impl Server {
    /// Starts `program` on `port` with a clean environment plus `env`, its output in `log`,
    /// and returns once `/healthz` answers 200.
    fn start(program: &Path, env: &[(&str, String)], port: u16, log: &Path) -> Result<Self, String> {
        let file = fs::File::create(log).map_err(|e| format!("bench: {}: {e}", log.display()))?;
        let stderr = file.try_clone().map_err(|e| format!("bench: {e}"))?;
        let mut command = Command::new(program);
        // Nothing from the developer's shell (a DASHBOARD_PASSWORD, say) reaches the service.
        command
            .env_clear()
            .env("RUST_LOG", "info")
            .env("BIND", "127.0.0.1")
            .env("PORT", port.to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr);
        let child = command.spawn().map_err(|e| format!("bench: cannot start {}: {e}", program.display()))?;
        let mut server = Server { child, log: log.to_path_buf() };
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "bench: {} exited at start-up ({status}): {}",
                    program.display(),
                    server.tail()
                ));
            }
            if matches!(http(port, "GET", "/healthz", &[], None), Ok((200, _, _))) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("bench: /healthz did not answer 200 within {} s", START_LIMIT.as_secs()));
            }
            sleep(Duration::from_millis(1));
        }
    }

    fn memory(&self) -> Result<Memory, String> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = fs::read_to_string(&path).map_err(|e| format!("bench: {path}: {e}"))?;
        let kib = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| format!("bench: no {name} in {path}"))
        };
        Ok(Memory { rss_kib: kib("VmRSS:")?, hwm_kib: kib("VmHWM:")? })
    }

    /// SIGTERM, and a clean exit within [`STOP_LIMIT`].
    fn stop(mut self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let _ = command("kill", &["-TERM", &pid]).status();
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(format!("bench: server exited with {status}: {}", self.tail()));
                }
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(5)),
                _ => return Err(format!("bench: server did not stop within {} s", STOP_LIMIT.as_secs())),
            }
        }
    }

    fn tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("bench: cannot find a free port: {e}"))
}

/// One HTTP/1.1 request on 127.0.0.1 (`Connection: close`): status, head and body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    let body = body.unwrap_or_default();
    let _ = write!(request, "Content-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of the response head"))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    let mut body = response[split + 4..].to_vec();
    if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body).ok_or_else(|| std::io::Error::other("bad chunked body"))?;
    }
    Ok((status, head, body))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The type of the file system holding `path` (`stat -f`; "ext2/ext3" for ext4 too), or empty
/// when it cannot be read.
fn filesystem_of(path: &Path) -> String {
    command("stat", &["-f", "-c", "%T", &path.to_string_lossy()])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default()
}

fn first_line(program: &str, args: &[&str]) -> String {
    command(program, args)
        .output()
        .map(|out| {
            let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_default()
}

fn machine(
    postgres_version: Value,
    postgres_settings: Value,
    sqlite_filesystem: String,
    load_before: String,
) -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, v)| v.trim())
        })
        .unwrap_or("unknown");
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    json!({
        "date": first_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "memory_mib": memory_mib,
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "arch": std::env::consts::ARCH,
        "rustc": first_line("rustc", &["--version"]),
        "wrk": first_line("wrk", &["--version"]).split(" Copyright").next().unwrap_or_default(),
        "postgres": postgres_version,
        "postgres_settings": postgres_settings,
        "sqlite_filesystem": sqlite_filesystem,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    })
}

/// The bars of issue 5 §2, met or missed.
fn check_targets(results: &Value) -> Vec<Value> {
    let backends = &results["backends"];
    // The bars are in MB (10^6 bytes), a little under MiB.
    let mb = |kib: &Value| kib.as_f64().map(|kib| round(kib * 1024.0 / 1e6, 1));
    let bytes_mb = |bytes: &Value| bytes.as_f64().map(|bytes| round(bytes / 1e6, 2));
    let mut targets = Vec::new();
    for (backend, bar) in [("sqlite", 0.40), ("postgres", 0.25)] {
        let b = &backends[backend];
        // wrk counts every answer: a run that drew errors (fast 503s, say) measured no rate
        // and no latency of the real work. A floor run's errors would lower the ratio's
        // denominator as surely.
        let ratio = b["ingest"]["ratio_for_the_bar"].as_f64();
        let mut target = only_if_clean(
            at_least(&format!("{backend} ingest / floor"), ratio, bar, "×"),
            &[&b["ingest"], &b["floor"]],
        );
        if backend == "postgres" && b["ingest"].is_object() {
            only_if_durable(&mut target, &results["machine"]["postgres_settings"]);
        }
        targets.push(target);
        if b["ingest"].is_object() {
            let name = format!("{backend} requests answered other than 2xx");
            let failed = failed_requests(&b["ingest"]) + failed_requests(&b["list"]);
            targets.push(json!({ "target": name, "value": failed, "bar": "= 0", "met": failed == 0 }));
        }
    }
    for backend in ["sqlite", "postgres"] {
        let b = &backends[backend];
        for variant in ["identity", "gzip"] {
            let p50 = b["list"][variant]["p50_ms"].as_f64();
            let target = at_most(&format!("{backend} list p50 ({variant})"), p50, 25.0, " ms");
            targets.push(only_if_clean(target, &[&b["list"][variant]]));
        }
        if let Some(gzip) = b["list"]["gzip"]["content_encoding_gzip"].as_bool() {
            let name = format!("{backend} list gzip when accepted");
            targets.push(json!({ "target": name, "value": gzip, "bar": "yes", "met": gzip }));
        }
        targets.push(at_most(&format!("{backend} idle RSS"), mb(&b["memory_kib"]["idle_rss"]), 10.0, " MB"));
        targets.push(at_most(&format!("{backend} peak RSS"), mb(&b["memory_kib"]["peak_hwm"]), 40.0, " MB"));
    }
    targets.push(at_most(
        "sqlite start-up",
        backends["sqlite"]["startup_ms"]["median"].as_f64(),
        100.0,
        " ms",
    ));
    targets.push(at_most("full binary", bytes_mb(&results["size_bytes"]["full"]), 12.0, " MB"));
    targets.push(at_most("slim sqlite binary", bytes_mb(&results["size_bytes"]["sqlite"]), 8.0, " MB"));
    targets
}

/// `target`, missed whatever its value when one of `runs` drew any error.
fn only_if_clean(mut target: Value, runs: &[&Value]) -> Value {
    if runs.iter().map(|run| failed_requests(run)).sum::<u64>() > 0 {
        missed_unless(&mut target, "every request answered 2xx");
    }
    target
}

/// The PostgreSQL ingest's `target`, missed whatever its value unless the server flushed every
/// commit as deployed: a test server run without `fsync` (a common setting for one) answers
/// each webhook before its event is on disk, and the rate would not be the service's.
fn only_if_durable(target: &mut Value, settings: &Value) {
    let durable = ["fsync", "synchronous_commit", "full_page_writes"]
        .iter()
        .all(|name| settings[name].as_str() == Some("on"));
    if !durable {
        missed_unless(target, "with fsync, synchronous_commit and full_page_writes on");
    }
}

/// Marks a measured `target` missed, its bar saying under which `condition` it counts.
fn missed_unless(target: &mut Value, condition: &str) {
    if target["met"].is_boolean() {
        target["met"] = json!(false);
        target["bar"] = json!(format!("{}, {condition}", target["bar"].as_str().unwrap_or("")));
    }
}

/// Non-2xx answers and socket errors in a run's results, or in every run nested in it (the
/// listing's two).
fn failed_requests(run: &Value) -> u64 {
    let own = ["status_errors", "socket_errors"].iter().filter_map(|key| run[key].as_u64()).sum::<u64>();
    let nested = run.as_object().map_or(0, |fields| {
        fields.values().filter(|value| value.get("status_errors").is_some()).map(failed_requests).sum()
    });
    own + nested
}

fn at_least(name: &str, value: Option<f64>, bar: f64, unit: &str) -> Value {
    measured(name, value, format!("≥ {bar}{unit}"), |value| value >= bar)
}

fn at_most(name: &str, value: Option<f64>, bar: f64, unit: &str) -> Value {
    measured(name, value, format!("≤ {bar}{unit}"), |value| value <= bar)
}

/// A target; one whose run did not take place (`--only`, a backend not run) stays in the list
/// as not run, neither met nor missed, rather than leaving only the met ones to read.
fn measured(name: &str, value: Option<f64>, bar: String, meets: impl Fn(f64) -> bool) -> Value {
    match value {
        Some(value) => json!({ "target": name, "value": value, "bar": bar, "met": meets(value) }),
        None => json!({ "target": name, "value": "not run", "bar": bar, "met": null }),
    }
}

fn print_table(results: &Value) {
    let machine = &results["machine"];
    println!(
        "\ndiun-dashboard bench — {} ({} cores), {}, load {} → {}",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["date"].as_str().unwrap_or("?"),
        machine["load_average_before"].as_str().unwrap_or("?"),
        machine["load_average_after"].as_str().unwrap_or("?"),
    );
    print!("{}", table(results));
    println!();
    for note in steal_notes(results) {
        println!("note: {note}");
    }
    for target in results["targets"].as_array().into_iter().flatten() {
        println!(
            "{}  {:<32} {:>10}  (target {})",
            match target["met"].as_bool() {
                Some(true) => "met    ",
                Some(false) => "MISSED ",
                None => "NOT RUN",
            },
            target["target"].as_str().unwrap_or("?"),
            target["value"].to_string(),
            target["bar"].as_str().unwrap_or("?")
        );
    }
}

/// The runs during which the hypervisor took [`STOLEN_NOTE_PCT`] or more of the CPU time. A
/// floor run slowed by other guests inflates the ratio as surely as a slowed ingest deflates
/// it, so every run is looked at.
fn steal_notes(results: &Value) -> Vec<String> {
    let runs = [
        ("floor before the ingest", &["floor", "before"][..]),
        ("ingest", &["ingest"][..]),
        ("floor after the ingest", &["floor", "after"][..]),
        ("plain listing", &["list", "identity"][..]),
        ("gzip listing", &["list", "gzip"][..]),
    ];
    let mut notes = Vec::new();
    for (backend, values) in results["backends"].as_object().into_iter().flatten() {
        for (run, path) in runs {
            let stolen = path.iter().fold(values, |value, key| &value[*key])["cpu_steal_pct"].as_f64();
            if let Some(stolen) = stolen.filter(|&stolen| stolen >= STOLEN_NOTE_PCT) {
                notes.push(format!(
                    "{stolen:.0}% of the CPU time went to other guests of the host during the \
                     {backend} {run} run; its figures are below what the machine does on its own"
                ));
            }
        }
    }
    notes
}

/// One row of the table: its name and how a backend's results show in it.
type Row = (&'static str, fn(&Value) -> Option<String>);

const ROWS: [Row; 13] = [
    ("floor req/s, before / after ingest", |b| {
        pair(&b["floor"]["before"]["requests_per_second"], &b["floor"]["after"]["requests_per_second"], 0)
    }),
    ("ingest req/s", |b| Some(format!("{:.0}", b["ingest"]["requests_per_second"].as_f64()?))),
    ("ingest / mean floor", |b| Some(format!("{:.2}×", b["ingest"]["ratio_to_floor"].as_f64()?))),
    ("ingest / floor for the bar", |b| Some(format!("{:.3}×", b["ingest"]["ratio_for_the_bar"].as_f64()?))),
    ("ingest CPU idle / stolen %", |b| pair(&b["ingest"]["cpu_idle_pct"], &b["ingest"]["cpu_steal_pct"], 1)),
    ("ingest p50 / p99 ms", |b| pair(&b["ingest"]["p50_ms"], &b["ingest"]["p99_ms"], 2)),
    ("ingest non-2xx, socket errors", |b| {
        Some(format!("{}, {}", b["ingest"]["non_2xx"].as_u64()?, b["ingest"]["socket_errors"].as_u64()?))
    }),
    ("list p50 / p99 ms", |b| pair(&b["list"]["identity"]["p50_ms"], &b["list"]["identity"]["p99_ms"], 2)),
    ("list gzip p50 / p99 ms", |b| pair(&b["list"]["gzip"]["p50_ms"], &b["list"]["gzip"]["p99_ms"], 2)),
    ("list gzip CPU stolen %", |b| Some(format!("{:.1}", b["list"]["gzip"]["cpu_steal_pct"].as_f64()?))),
    ("list KiB, gzip KiB", |b| {
        let kib = |v: &Value| v.as_f64().map(|bytes| Value::from(bytes / 1024.0));
        pair(&kib(&b["list"]["identity"]["bytes"])?, &kib(&b["list"]["gzip"]["bytes"])?, 0)
    }),
    ("RSS idle / peak MiB", |b| {
        let mib = |v: &Value| v.as_f64().map(|kib| Value::from(kib / 1024.0));
        pair(&mib(&b["memory_kib"]["idle_rss"])?, &mib(&b["memory_kib"]["peak_hwm"])?, 1)
    }),
    ("start-up median ms", |b| Some(format!("{:.1}", b["startup_ms"]["median"].as_f64()?))),
];

fn pair(a: &Value, b: &Value, decimals: usize) -> Option<String> {
    Some(format!("{:.decimals$} / {:.decimals$}", a.as_f64()?, b.as_f64()?))
}

/// The results as a Markdown table (also what BENCHMARKS.md holds).
pub fn table(results: &Value) -> String {
    let cell = |backend: &str, show: fn(&Value) -> Option<String>| -> String {
        let value = &results["backends"][backend];
        if value.is_null() {
            "—".into()
        } else if value["not_run"].is_string() {
            "not run".into()
        } else {
            show(value).unwrap_or_else(|| "?".into())
        }
    };
    let mut out = String::from("| | SQLite | PostgreSQL |\n|---|---:|---:|\n");
    for (name, show) in ROWS {
        let _ = writeln!(out, "| {name} | {} | {} |", cell("sqlite", show), cell("postgres", show));
    }
    let mib = |name: &str| {
        results["size_bytes"][name].as_f64().map_or("?".into(), |b| format!("{:.2}", b / 1048576.0))
    };
    let _ = writeln!(
        out,
        "| stripped binary MiB: full / slim | {} / {} | {} / {} |",
        mib("full"),
        mib("sqlite"),
        mib("full"),
        mib("postgres")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_come_from_the_tick_counts_of_proc_stat() {
        let start = parse_cpu_line("cpu  100 5 50 800 20 3 7 15 40 0").unwrap();
        let end = parse_cpu_line("cpu  200 5 90 880 20 5 15 35 90 0").unwrap();
        // 250 ticks passed: idle 80 (with iowait), steal 20; guest time is inside user time.
        let share = end.share_since(start).unwrap();
        assert_eq!((share.idle_pct, share.steal_pct), (32.0, 8.0));
        assert!(start.share_since(start).is_none(), "no time passed");
        assert!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8").is_none(), "a single core's line");
        assert!(parse_cpu_line("cpu  1 2 3").is_none(), "a kernel without steal time");
    }

    #[test]
    fn the_floor_after_the_ingest_counts_only_when_it_is_the_higher() {
        assert_eq!(floor_for_the_bar(100.0, 80.0), 100.0, "lowered by what the ingest left");
        assert_eq!(floor_for_the_bar(80.0, 100.0), 90.0, "the host's drift: the mean");
        let ingest = json!({ "status_errors": 0, "socket_errors": 0, "ratio_to_floor": 0.42, "ratio_for_the_bar": 0.39 });
        let targets = check_targets(&json!({ "backends": { "sqlite": { "ingest": ingest } } }));
        let target = targets.iter().find(|t| t["target"] == "sqlite ingest / floor").unwrap();
        assert_eq!((target["value"].clone(), target["met"].clone()), (json!(0.39), json!(false)));
    }

    #[test]
    fn a_run_that_drew_errors_meets_no_rate_target() {
        let run = |errors: u64| json!({ "status_errors": errors, "socket_errors": 0, "p50_ms": 9.0 });
        let backend = |ingest_errors: u64, list_errors: u64| {
            json!({
                "floor": { "before": run(0), "after": run(0) },
                "ingest": merged(run(ingest_errors), json!({ "ratio_to_floor": 0.9, "ratio_for_the_bar": 0.8 })),
                "list": { "identity": run(0), "gzip": run(list_errors) },
            })
        };
        let verdict = |sqlite: Value| {
            let targets = check_targets(&json!({ "backends": { "sqlite": sqlite } }));
            let met = |name: &str| targets.iter().find(|t| t["target"] == name).map(|t| t["met"].clone());
            [
                met("sqlite ingest / floor"),
                met("sqlite list p50 (identity)"),
                met("sqlite list p50 (gzip)"),
                met("sqlite requests answered other than 2xx"),
            ]
        };
        let (yes, no) = (Some(json!(true)), Some(json!(false)));
        assert_eq!(verdict(backend(0, 0)), [yes.clone(), yes.clone(), yes.clone(), yes.clone()]);
        assert_eq!(verdict(backend(3, 0)), [no.clone(), yes.clone(), yes.clone(), no.clone()]);
        assert_eq!(verdict(backend(0, 2)), [yes.clone(), yes.clone(), no.clone(), no.clone()]);
        // A floor run's errors lower the ratio's denominator: the ratio does not count.
        let mut floor_failed = backend(0, 0);
        floor_failed["floor"]["after"]["socket_errors"] = json!(5);
        assert_eq!(verdict(floor_failed), [no, yes.clone(), yes.clone(), yes]);
    }

    #[test]
    fn a_postgresql_ratio_counts_only_on_a_server_that_flushes_every_commit() {
        let clean = json!({ "status_errors": 0, "socket_errors": 0 });
        let postgres = json!({ "ingest": merged(clean.clone(), json!({ "ratio_for_the_bar": 0.3 })) });
        let verdict = |settings: Value| {
            let results = json!({
                "machine": { "postgres_settings": settings },
                "backends": { "postgres": postgres.clone() },
            });
            let targets = check_targets(&results);
            let target = targets.iter().find(|t| t["target"] == "postgres ingest / floor").unwrap();
            (target["met"].clone(), target["bar"].as_str().unwrap_or_default().to_owned())
        };
        let deployed = json!({ "fsync": "on", "synchronous_commit": "on", "full_page_writes": "on" });
        assert_eq!(verdict(deployed.clone()), (json!(true), "≥ 0.25×".to_owned()));
        for (setting, off) in
            [("fsync", "off"), ("synchronous_commit", "off"), ("synchronous_commit", "local")]
        {
            let mut settings = deployed.clone();
            settings[setting] = json!(off);
            let (met, bar) = verdict(settings);
            assert_eq!(met, json!(false), "{setting} = {off}");
            assert!(bar.contains("fsync, synchronous_commit and full_page_writes on"), "{bar}");
        }
        assert_eq!(verdict(Value::Null).0, json!(false), "settings unknown");
    }

    #[test]
    fn targets_of_runs_that_did_not_take_place_are_listed_as_not_run() {
        let targets = check_targets(&json!({ "backends": { "postgres": { "not_run": "no server" } } }));
        let target = |name: &str| targets.iter().find(|t| t["target"] == name).cloned();
        let ratio = target("postgres ingest / floor").expect("listed");
        assert_eq!((ratio["value"].clone(), ratio["met"].clone()), (json!("not run"), Value::Null));
        assert_eq!(target("sqlite start-up").map(|t| t["met"].clone()), Some(Value::Null));
        assert!(target("postgres requests answered other than 2xx").is_none(), "nothing to count");
    }

    #[test]
    fn runs_slowed_by_other_guests_are_named() {
        let results = json!({ "backends": {
            "sqlite": {
                "floor": { "before": { "cpu_steal_pct": 0.2 }, "after": { "cpu_steal_pct": 7.5 } },
                "ingest": { "cpu_steal_pct": 4.9 },
                "list": { "identity": { "cpu_steal_pct": 0.0 }, "gzip": { "cpu_steal_pct": 12.0 } },
            },
            "postgres": { "not_run": "no server" },
        }});
        let notes = steal_notes(&results);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("8% ") && notes[0].contains("sqlite floor after the ingest run"));
        assert!(notes[1].starts_with("12% ") && notes[1].contains("sqlite gzip listing run"));
    }
}
