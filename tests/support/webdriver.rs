//! A minimal W3C WebDriver client for the browser tests: chromedriver speaks JSON over HTTP/1.1,
//! so a few lines of HTTP are all it takes. One `Browser` is one chromedriver process with one headless
//! Chromium session in a throwaway profile; dropping it ends the session and the driver.
//!
//! Waits poll until a condition holds or a timeout passes: the timeout only detects a hang, it is
//! not a speed assertion, so it is generous.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::TempDir;
use super::process::free_port;

/// The key under which WebDriver wraps element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a wait polls before it fails the test.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long one WebDriver command may take before the test fails as hung.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

const POLL: Duration = Duration::from_millis(50);

/// Special keys for `send_keys` (WebDriver's private-use code points).
pub mod keys {
    pub const TAB: &str = "\u{E004}";
    /// Shift, held to the end of a `send_keys`, and Tab.
    pub const SHIFT_TAB: &str = "\u{E008}\u{E004}";
    pub const ENTER: &str = "\u{E007}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const ARROW_UP: &str = "\u{E013}";
    pub const ARROW_DOWN: &str = "\u{E015}";
}

/// The chromedriver to use, from `CHROMEDRIVER`. Unset: `None` with a printed reason, except
/// under `CI=true`, where browser tests may not be skipped.
pub fn chromedriver() -> Option<String> {
    let path = std::env::var("CHROMEDRIVER").ok().filter(|path| !path.is_empty());
    if path.is_none() {
        super::skip("CHROMEDRIVER is not set (cargo xtask test sets it; e.g. CHROMEDRIVER=chromedriver)");
    }
    path
}

/// An error answer of the WebDriver protocol.
#[derive(Debug, Clone)]
pub struct WebDriverError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let first_line = self.message.lines().next().unwrap_or("");
        write!(f, "{} ({}): {first_line}", self.error, self.status)
    }
}

/// What kind of pointer an action sequence uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointer {
    Mouse,
    /// A finger: pressed and held before moving (a long press), as a person drags on a phone.
    Touch,
}

impl Pointer {
    fn name(self) -> &'static str {
        match self {
            Pointer::Mouse => "mouse",
            Pointer::Touch => "touch",
        }
    }
}

/// One entry of the browser's console log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

/// A WebDriver session: cheap to clone, used by `Browser` and by every `Element`.
#[derive(Clone)]
pub struct Session {
    addr: SocketAddr,
    id: Arc<str>,
    log: Arc<Mutex<Vec<LogEntry>>>,
}

/// A headless Chromium driven through its own chromedriver.
pub struct Browser {
    session: Session,
    driver: Child,
    _profile: TempDir,
}

impl std::ops::Deref for Browser {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Browser {
    /// Starts `chromedriver` on a free port and opens a session whose viewport is `width` ×
    /// `height` CSS pixels.
    pub async fn start(chromedriver: &str, width: u32, height: u32) -> Self {
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start `{chromedriver}`: {err}"));
        wait_ready(addr, &mut driver).await;

        let profile = TempDir::new();
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--mute-audio",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            "--lang=en-US",
        ]
        .map(String::from)
        .to_vec();
        args.push(format!("--user-data-dir={}", profile.0.display()));
        args.push(format!("--window-size={width},{height}"));
        let mut options = json!({ "args": args });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": options,
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "unhandledPromptBehavior": "ignore",
                }
            }
        });
        let created = call(addr, "POST", "/session", Some(&capabilities))
            .await
            .unwrap_or_else(|err| panic!("cannot open a Chromium session through chromedriver: {err}"));
        let id = created["sessionId"].as_str().expect("session id").to_string();
        let browser = Browser {
            session: Session { addr, id: id.into(), log: Arc::default() },
            driver,
            _profile: profile,
        };
        browser.set_viewport(width, height).await;
        browser
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver close Chromium; the driver itself is killed
        // when `driver` is dropped. Blocking here is brief and only happens at a test's end.
        end_session_blocking(self.session.addr, &self.session.id);
        let _ = self.driver.start_kill();
    }
}

async fn wait_ready(addr: SocketAddr, driver: &mut Child) {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            panic!("chromedriver exited at start-up ({status})");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok()
            && let Ok(status) = call(addr, "GET", "/status", None).await
            && status["ready"].as_bool() == Some(true)
        {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not become ready within 30 s");
        tokio::time::sleep(POLL).await;
    }
}

/// Sends one command; the answer's `value`, or its error.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, WebDriverError> {
    let body = match body {
        Some(body) => body.to_string(),
        None if method == "POST" => "{}".to_string(),
        None => String::new(),
    };
    let (status, text) = tokio::time::timeout(COMMAND_LIMIT, exchange(addr, method, path, &body))
        .await
        .unwrap_or_else(|_| panic!("WebDriver `{method} {path}` did not answer within {COMMAND_LIMIT:?}"))
        .unwrap_or_else(|err| panic!("WebDriver `{method} {path}`: {err}"));
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        Ok(value)
    } else {
        Err(WebDriverError {
            status,
            error: value["error"].as_str().unwrap_or("unknown error").to_string(),
            message: value["message"].as_str().unwrap_or(&text).to_string(),
        })
    }
}

/// One HTTP/1.1 request and its answer. `support::http` reads until the server closes the
/// connection, but chromedriver keeps it open despite `Connection: close`, so this one reads
/// exactly `Content-Length` bytes.
async fn exchange(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let content_type = if body.is_empty() { "" } else { "Content-Type: application/json; charset=utf-8\r\n" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .ok_or_else(|| bad("no status"))?;
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok());
            let start = end + 4;
            loop {
                if length.is_some_and(|length| raw.len() >= start + length) {
                    break;
                }
                let read = stream.read(&mut chunk).await?;
                if read == 0 {
                    break;
                }
                raw.extend_from_slice(&chunk[..read]);
            }
            let stop = length.map_or(raw.len(), |length| (start + length).min(raw.len()));
            return Ok((status, String::from_utf8_lossy(&raw[start..stop]).into_owned()));
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(bad("connection closed before the answer's head"));
        }
        raw.extend_from_slice(&chunk[..read]);
    }
}

fn end_session_blocking(addr: SocketAddr, id: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "DELETE /session/{id} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        // The answer's first bytes mean the session is gone (chromedriver keeps the connection).
        let mut answer = [0u8; 64];
        let _ = stream.read(&mut answer);
    }
}

impl Session {
    /// A command of this session; WebDriver errors fail the test.
    pub async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|err| panic!("WebDriver {method} {path}: {err}"))
    }

    pub async fn try_cmd(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        call(self.addr, method, &format!("/session/{}{path}", self.id), body.as_ref()).await
    }

    // ---- Window and navigation ---------------------------------------------------------------

    /// Sets the outer window size (the viewport is smaller by the browser's own frame); the
    /// window rectangle it got.
    pub async fn set_window_size(&self, width: u32, height: u32) -> Value {
        self.cmd("POST", "/window/rect", Some(json!({ "width": width, "height": height }))).await
    }

    /// Sizes the window so that the page's viewport is `width` × `height` CSS pixels. (The
    /// frame is measured against the window rectangle: headless Chromium reports an
    /// `outerWidth` of at least 500 whatever the window's real width.)
    pub async fn set_viewport(&self, width: u32, height: u32) {
        let rect = self.set_window_size(width, height).await;
        let inner = self.execute("return [innerWidth, innerHeight]", vec![]).await;
        let extra = |key: &str, i: usize| {
            (rect[key].as_i64().unwrap_or(0) - inner[i].as_i64().unwrap_or(0)).max(0) as u32
        };
        let (extra_width, extra_height) = (extra("width", 0), extra("height", 1));
        if extra_width > 0 || extra_height > 0 {
            self.set_window_size(width + extra_width, height + extra_height).await;
        }
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn reload(&self) {
        self.cmd("POST", "/refresh", None).await;
    }

    pub async fn title(&self) -> String {
        self.cmd("GET", "/title", None).await.as_str().unwrap_or_default().to_string()
    }

    pub async fn current_url(&self) -> String {
        self.cmd("GET", "/url", None).await.as_str().unwrap_or_default().to_string()
    }

    // ---- Elements ----------------------------------------------------------------------------

    fn element(&self, value: &Value) -> Element {
        let id = value[ELEMENT_KEY].as_str().unwrap_or_else(|| panic!("not an element reference: {value}"));
        Element { session: self.clone(), id: id.to_string() }
    }

    /// The first element matching a CSS selector, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        find_in(self, "", css).await
    }

    /// Every element matching a CSS selector, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        find_all_in(self, "", css).await
    }

    /// The element that has the keyboard focus.
    pub async fn active(&self) -> Element {
        let value = self.cmd("GET", "/element/active", None).await;
        self.element(&value)
    }

    /// Waits until an element matching `css` exists and is displayed.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_until(&format!("`{css}` to be shown"), async || {
            let element = self.find(css).await?;
            element.try_displayed().await.unwrap_or(false).then_some(element)
        })
        .await
    }

    /// Waits until nothing matching `css` is displayed.
    pub async fn wait_gone(&self, css: &str) {
        self.wait_until(&format!("`{css}` to go away"), async || {
            for element in self.find_all(css).await {
                if element.try_displayed().await.unwrap_or(false) {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    // ---- Scripts -----------------------------------------------------------------------------

    /// Runs `script` as a function body with `args` (elements as `Element::json`); its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// Like `execute`, but the script calls `arguments[arguments.length - 1]` with its result.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd("POST", "/execute/async", Some(json!({ "script": script, "args": args }))).await
    }

    /// A Chrome DevTools Protocol command through chromedriver (e.g.
    /// `Page.addScriptToEvaluateOnNewDocument` to change the page before its scripts run).
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        self.cmd("POST", "/goog/cdp/execute", Some(json!({ "cmd": command, "params": params }))).await
    }

    // ---- Actions -----------------------------------------------------------------------------

    /// Performs W3C input action sources and releases everything afterwards.
    pub async fn perform(&self, sources: Value) {
        self.cmd("POST", "/actions", Some(json!({ "actions": sources }))).await;
        self.cmd("DELETE", "/actions", None).await;
    }

    /// Presses and releases `key` wherever focus is (the page itself when nothing has it),
    /// unlike `Element::send_keys`, which focuses its element first.
    pub async fn press(&self, key: &str) {
        let action = |kind: &str| json!({ "type": kind, "value": key });
        self.perform(
            json!([{ "type": "key", "id": "keyboard", "actions": [action("keyDown"), action("keyUp")] }]),
        )
        .await;
    }

    /// Presses on `from` (at a point that is neither one of its controls nor its text, which a
    /// mouse selects: dnd.js's TEXT_TO_COPY), moves in several steps
    /// onto the middle of `to` and releases there. A touch pointer is held still first, as a
    /// long press; a mouse moves right away. Both must be on screen.
    pub async fn drag(&self, from: &Element, to: &Element, pointer: Pointer) {
        let points = self
            .execute(
                r#"
                const [from, to] = arguments;
                from.scrollIntoView({ block: "nearest" });
                const controls = "button, a, input, select, textarea, [role='menu'], " +
                  ".card-name, .tag-chip, [data-testid='card-registry'], .card-meta dd";
                const r = from.getBoundingClientRect();
                let start = null;
                for (const [fx, fy] of [[0.5, 0.55], [0.3, 0.5], [0.7, 0.5], [0.5, 0.35], [0.2, 0.2], [0.8, 0.3]]) {
                  const x = r.left + r.width * fx, y = r.top + r.height * fy;
                  const hit = document.elementFromPoint(x, y);
                  if (hit && from.contains(hit) && !hit.closest(controls)) { start = [x, y]; break; }
                }
                const t = to.getBoundingClientRect();
                const h = document.documentElement.clientHeight, w = document.documentElement.clientWidth;
                const top = Math.max(t.top, 0), bottom = Math.min(t.bottom, h);
                const end = [t.left + t.width / 2, (top + bottom) / 2];
                const visible = bottom - top > 4 && t.left >= 0 && t.right <= w + 1;
                return { start, end, visible };
                "#,
                vec![from.json(), to.json()],
            )
            .await;
        let start = points["start"]
            .as_array()
            .unwrap_or_else(|| panic!("no free spot to press on the card: {points}"));
        assert!(points["visible"].as_bool() == Some(true), "the drop target is not on screen: {points}");
        let (x0, y0) = (start[0].as_f64().unwrap(), start[1].as_f64().unwrap());
        let (x1, y1) = (points["end"][0].as_f64().unwrap(), points["end"][1].as_f64().unwrap());
        let mut actions = vec![
            json!({ "type": "pointerMove", "duration": 0, "x": x0.round() as i64, "y": y0.round() as i64, "origin": "viewport" }),
            json!({ "type": "pointerDown", "button": 0 }),
            json!({ "type": "pause", "duration": if pointer == Pointer::Touch { 700 } else { 100 } }),
        ];
        const STEPS: usize = 10;
        for step in 1..=STEPS {
            let f = step as f64 / STEPS as f64;
            let (x, y) = (x0 + (x1 - x0) * f, y0 + (y1 - y0) * f);
            actions.push(json!({ "type": "pointerMove", "duration": 40, "x": x.round() as i64, "y": y.round() as i64, "origin": "viewport" }));
        }
        actions.push(json!({ "type": "pause", "duration": 100 }));
        actions.push(json!({ "type": "pointerUp", "button": 0 }));
        self.perform(json!([{
            "type": "pointer",
            "id": format!("{}-drag", pointer.name()),
            "parameters": { "pointerType": pointer.name() },
            "actions": actions,
        }]))
        .await;
    }

    // ---- Screenshots and logs ----------------------------------------------------------------

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.cmd("GET", "/screenshot", None).await;
        base64_decode(encoded.as_str().expect("screenshot is a base64 string"))
    }

    /// Everything the browser logged since the session started (chromedriver hands out each
    /// entry once, so they are kept here).
    pub async fn console(&self) -> Vec<LogEntry> {
        let fresh = self.cmd("POST", "/se/log", Some(json!({ "type": "browser" }))).await;
        // Anything but a list would read as "nothing logged", and every console check would pass.
        let fresh = fresh.as_array().unwrap_or_else(|| panic!("the browser's log is not a list: {fresh}"));
        let mut log = self.log.lock().unwrap();
        for entry in fresh {
            log.push(LogEntry {
                level: entry["level"].as_str().unwrap_or_default().to_string(),
                source: entry["source"].as_str().unwrap_or_default().to_string(),
                message: entry["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        log.clone()
    }

    /// The console errors so far (level SEVERE: `console.error`, uncaught exceptions, failed
    /// loads).
    pub async fn console_errors(&self) -> Vec<LogEntry> {
        self.console().await.into_iter().filter(|entry| entry.level == "SEVERE").collect()
    }

    pub async fn assert_no_console_errors(&self) {
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "console errors: {errors:#?}");
    }

    // ---- Waiting -----------------------------------------------------------------------------

    /// Polls `check` until it gives a value; after `WAIT`, fails the test naming `what`.
    pub async fn wait_until<T>(&self, what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
        wait_until_for(what, WAIT, check).await
    }
}

/// Polls `check` until it gives a value; after `limit`, fails the test naming `what`.
pub async fn wait_until_for<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

async fn find_in(session: &Session, scope: &str, css: &str) -> Option<Element> {
    let body = json!({ "using": "css selector", "value": css });
    match session.try_cmd("POST", &format!("{scope}/element"), Some(body)).await {
        Ok(value) => Some(session.element(&value)),
        Err(err) if err.error == "no such element" => None,
        Err(err) => panic!("find `{css}`: {err}"),
    }
}

async fn find_all_in(session: &Session, scope: &str, css: &str) -> Vec<Element> {
    let body = json!({ "using": "css selector", "value": css });
    let found = session.cmd("POST", &format!("{scope}/elements"), Some(body)).await;
    found.as_array().into_iter().flatten().map(|value| session.element(value)).collect()
}

/// `[data-testid="name"]`: the UI's stable test hooks.
pub fn testid(name: &str) -> String {
    format!(r#"[data-testid="{name}"]"#)
}

/// A reference to an element of the page.
#[derive(Clone)]
pub struct Element {
    session: Session,
    id: String,
}

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({})", self.id)
    }
}

impl Element {
    /// The reference as a script argument.
    pub fn json(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    pub async fn find(&self, css: &str) -> Option<Element> {
        find_in(&self.session, &self.path(""), css).await
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        find_all_in(&self.session, &self.path(""), css).await
    }

    /// The first descendant with this test id; fails the test when there is none.
    pub async fn get(&self, id: &str) -> Element {
        self.find(&testid(id)).await.unwrap_or_else(|| panic!("no [data-testid={id}] in {self:?}"))
    }

    /// Clicks the element as a user would (scrolled into view; fails if something covers it).
    pub async fn click(&self) {
        self.session.cmd("POST", &self.path("/click"), None).await;
    }

    pub async fn try_click(&self) -> Result<(), WebDriverError> {
        self.session.try_cmd("POST", &self.path("/click"), None).await.map(drop)
    }

    pub async fn clear(&self) {
        self.session.cmd("POST", &self.path("/clear"), None).await;
    }

    /// Types `text` into the element (see `keys` for special keys).
    pub async fn send_keys(&self, text: &str) {
        self.session.cmd("POST", &self.path("/value"), Some(json!({ "text": text }))).await;
    }

    /// The rendered text, as a user reads it (CSS text-transform applied).
    pub async fn text(&self) -> String {
        self.session.cmd("GET", &self.path("/text"), None).await.as_str().unwrap_or_default().to_string()
    }

    /// The DOM's textContent, whitespace collapsed and trimmed.
    pub async fn text_content(&self) -> String {
        let raw = self.prop("textContent").await;
        raw.as_str().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ")
    }

    pub async fn attr(&self, name: &str) -> Option<String> {
        self.try_attr(name).await.unwrap_or_else(|err| panic!("attribute {name}: {err}"))
    }

    pub async fn try_attr(&self, name: &str) -> Result<Option<String>, WebDriverError> {
        let value = self.session.try_cmd("GET", &self.path(&format!("/attribute/{name}")), None).await?;
        Ok(value.as_str().map(str::to_string))
    }

    pub async fn prop(&self, name: &str) -> Value {
        self.session.cmd("GET", &self.path(&format!("/property/{name}")), None).await
    }

    pub async fn displayed(&self) -> bool {
        self.try_displayed().await.unwrap_or_else(|err| panic!("displayed: {err}"))
    }

    /// Whether it is shown; an error (a stale reference) is reported, not a failure.
    pub async fn try_displayed(&self) -> Result<bool, WebDriverError> {
        Ok(self.session.try_cmd("GET", &self.path("/displayed"), None).await?.as_bool().unwrap_or(false))
    }

    pub async fn enabled(&self) -> bool {
        self.session.cmd("GET", &self.path("/enabled"), None).await.as_bool().unwrap_or(false)
    }

    /// Whether the reference still points into the page (not replaced by a re-render).
    pub async fn is_connected(&self) -> bool {
        self.session
            .try_cmd("GET", &self.path("/property/isConnected"), None)
            .await
            .is_ok_and(|value| value.as_bool() == Some(true))
    }
}

/// Standard base64 (with or without padding) to bytes; screenshots come this way.
pub fn base64_decode(text: &str) -> Vec<u8> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter_map(sextet) {
        buffer = (buffer << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// Width and height of a PNG, from its IHDR chunk; `None` if it is not a PNG.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((width, height))
}
