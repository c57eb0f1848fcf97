//! The dashboard in a real browser (issue 3 §7): headless Chromium through chromedriver against
//! the real binary on a throwaway SQLite database, seeded through `POST /webhook` as DIUN would.
//!
//! The tests are `#[ignore]`d in plain `cargo test` runs, which need no browser; `cargo xtask
//! test` runs them (`-- --ignored --test-threads=1`) with `CHROMEDRIVER` set, installing Chromium
//! when missing. Run by hand with `--ignored` but without `CHROMEDRIVER`, each test says it is
//! skipped, except under `CI=true`, where that is a failure.
//!
//! The page is found through its `data-testid` hooks (listed at the top of assets/js/app.js),
//! never through CSS classes. The README's screenshot comes from `screenshot_for_the_readme`
//! (`cargo xtask screenshot`).
#![cfg(feature = "sqlite")]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TempDir;
use support::process::{Service, command};
use support::webdriver::{self, Browser, Element, Pointer, keys, testid};

// ---- Fixture -----------------------------------------------------------------------------------

/// The service on a fresh database and a browser session, dropped browser first.
struct Page {
    browser: Browser,
    service: Service,
    db: TempDir,
}

impl std::ops::Deref for Page {
    type Target = Browser;

    fn deref(&self) -> &Browser {
        &self.browser
    }
}

impl Page {
    /// `None` (the test is skipped) when no chromedriver is given.
    async fn start(width: u32, height: u32) -> Option<Self> {
        let chromedriver = webdriver::chromedriver()?;
        let db = TempDir::new();
        let service = Service::start(&Self::env(&db)).await;
        let browser = Browser::start(&chromedriver, width, height).await;
        Some(Self { browser, service, db })
    }

    fn env(db: &TempDir) -> Vec<(&'static str, String)> {
        vec![("DB_PATH", db.0.join("diun.db").display().to_string())]
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.service.addr)
    }

    /// POST /webhook as DIUN does (no Content-Type).
    async fn webhook(&self, event: &Value) {
        let response = self.service.request("POST", "/webhook").body(event.to_string()).send().await;
        assert_eq!(response.status, 200, "webhook: {}", response.text());
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> support::Response {
        let mut request = self.service.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await
    }

    async fn updates(&self) -> Value {
        let response = self.api("GET", "/api/updates", None).await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }

    async fn create_tag(&self, name: &str) -> i64 {
        let response = self.api("POST", "/api/tags", Some(json!({ "name": name }))).await;
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()["id"].as_i64().expect("tag id")
    }

    async fn assign(&self, image: &str, tag_id: i64) {
        let response =
            self.api("PUT", "/api/tag-assignments", Some(json!({ "image": image, "tag_id": tag_id }))).await;
        assert_eq!(response.status, 204, "{}", response.text());
    }

    async fn acknowledge(&self, image: &str) {
        let path = format!("/api/updates/{}", percent_encode(image));
        let response = self.api("PATCH", &path, None).await;
        assert_eq!(response.status, 204, "{}", response.text());
    }

    /// Runs `script` in every document this page loads, before the page's own scripts.
    async fn before_scripts(&self, script: &str) {
        self.cdp("Page.addScriptToEvaluateOnNewDocument", json!({ "source": script })).await;
    }

    /// Writes the page's setting `key` (JSON text; `None` removes it) as another tab would: a
    /// same-origin frame is another document on the same storage, and the browser tells this one
    /// of its writes as it tells another tab's.
    async fn store_from_another_tab(&self, key: &str, value: Option<&str>) {
        let script = r#"const frame = document.createElement("iframe");
            document.body.append(frame);
            const storage = frame.contentWindow.localStorage;
            if (arguments[1] === null) storage.removeItem(arguments[0]);
            else storage.setItem(arguments[0], arguments[1]);
            frame.remove();"#;
        self.execute(script, vec![json!(format!("diun-dashboard:{key}")), json!(value)]).await;
    }

    /// Loads the dashboard and waits for its first snapshot to be drawn.
    async fn open(&self) {
        self.goto(&self.url("/")).await;
        self.wait_loaded().await;
    }

    async fn wait_loaded(&self) {
        self.wait_for(&format!("{}[data-count]", testid("pending-badge"))).await;
        self.wait_gone(&testid("loading")).await;
    }

    /// The newest toast once it holds still: until then its buttons let the pointer through to
    /// the page (feedback.js).
    async fn settled_toast(&self) -> Element {
        self.wait_for(&format!("#toasts > {}:last-child:not([data-settling])", testid("toast"))).await
    }

    async fn by_testid(&self, id: &str) -> Element {
        self.find(&testid(id)).await.unwrap_or_else(|| panic!("no [data-testid={id}] on the page"))
    }

    /// The card of `image`, once it is shown.
    async fn card(&self, image: &str) -> Element {
        self.wait_for(&card_css(image)).await
    }

    async fn section(&self, key: &str) -> Element {
        self.wait_for(&format!(r#"{}[data-tag-id="{key}"]"#, testid("group"))).await
    }

    /// What every card on the page shows, read in one go (textContent, whitespace collapsed).
    async fn cards(&self) -> Vec<Value> {
        let value = self
            .execute(
                r#"
                const text = (el) => (el ? el.textContent.replace(/\s+/g, " ").trim() : null);
                return [...document.querySelectorAll('[data-testid="card"]')].map((card) => {
                  const field = (id) => text(card.querySelector(`[data-testid="${id}"]`));
                  const link = card.querySelector('[data-testid="hub-link"]');
                  const received = card.querySelector('[data-testid="card-received"] time');
                  const fields = {};
                  for (const id of ["card-name", "card-tag", "card-registry", "card-status", "card-host",
                                    "card-container", "card-containers", "card-pod", "card-job",
                                    "card-task", "card-platform"]) {
                    fields[id] = field(id);
                  }
                  return {
                    image: card.dataset.image,
                    state: card.dataset.state,
                    new: card.dataset.new,
                    tag_id: card.dataset.tagId,
                    section: card.closest('[data-testid="group"]')?.dataset.tagId ?? null,
                    fields,
                    link: link ? link.getAttribute("href") : null,
                    ack: Boolean(card.querySelector('[data-testid="ack"]')),
                    acked: Boolean(card.querySelector('[data-testid="acked"]')),
                    acknowledged_at: Boolean(card.querySelector('[data-testid="card-acknowledged"] time')),
                    new_badge: Boolean(card.querySelector('[data-testid="new-badge"]')),
                    received: received ? { text: text(received), datetime: received.dateTime, title: received.title } : null,
                  };
                });
                "#,
                vec![],
            )
            .await;
        value.as_array().cloned().unwrap_or_default()
    }

    /// When the shown card of `image` says its report arrived (its data-received-at), or null.
    async fn card_received_at(&self, image: &str) -> Value {
        self.execute(
            "return document.querySelector(arguments[0])?.dataset.receivedAt ?? null",
            vec![json!(card_css(image))],
        )
        .await
    }

    async fn card_info(&self, image: &str) -> Option<Value> {
        self.cards().await.into_iter().find(|card| card["image"] == image)
    }

    /// Images on the page, in document order.
    async fn images(&self) -> Vec<String> {
        self.cards().await.iter().map(|card| card["image"].as_str().unwrap_or_default().to_string()).collect()
    }

    /// Waits until the card of `image` sits in the section `key` ("untagged" or a tag id).
    async fn wait_in_section(&self, image: &str, key: &str) {
        self.wait_until(&format!("{image} to be shown in section {key}"), async || {
            let card = self.card_info(image).await?;
            (card["section"] == key && card["tag_id"] == key).then_some(())
        })
        .await
    }

    async fn wait_state(&self, image: &str, state: &str) {
        self.wait_until(&format!("{image} to be {state}"), async || {
            (self.card_info(image).await?["state"] == state).then_some(())
        })
        .await
    }

    async fn wait_title(&self, title: &str) {
        let mut last = String::new();
        let what = format!("the tab title to be {title:?}");
        self.wait_until(&what, async || {
            last = self.title().await;
            (last == title).then_some(())
        })
        .await
    }

    /// Waits until the page's announcer (its polite live region) says `text`.
    async fn wait_said(&self, text: &str) {
        self.wait_until(&format!("the page to say {text:?}"), async || {
            let said = self.execute("return document.getElementById('announcer').textContent", vec![]).await;
            (said == text).then_some(())
        })
        .await;
    }

    /// Waits until the server's updates satisfy `check` (they may lag the page by a request in
    /// flight).
    async fn wait_api(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.wait_until(what, async || {
            let updates = self.updates().await;
            check(&updates).then_some(updates)
        })
        .await
    }

    /// Picks `value` in the `<select>` with test id `id`, as a user would (a click on the option).
    async fn choose(&self, id: &str, value: &str) {
        let select = self.by_testid(id).await;
        select.click().await;
        let option = select
            .find(&format!(r#"option[value="{value}"]"#))
            .await
            .unwrap_or_else(|| panic!("no option {value} in {id}"));
        option.click().await;
        self.wait_until(&format!("{id} to be {value}"), async || {
            (select.prop("value").await == value).then_some(())
        })
        .await;
    }

    /// Horizontal overflow of the document: (scrollWidth, clientWidth).
    async fn widths(&self) -> (i64, i64) {
        let value = self
            .execute(
                "const d = document.documentElement; return [d.scrollWidth, d.clientWidth, document.body.scrollWidth];",
                vec![],
            )
            .await;
        let width = |i: usize| value[i].as_i64().unwrap_or_default();
        (width(0).max(width(2)), width(1))
    }

    async fn assert_no_horizontal_scroll(&self, context: &str) {
        let (scroll, client) = self.widths().await;
        if scroll > client {
            let culprits = self
                .execute(
                    r#"
                    const w = document.documentElement.clientWidth;
                    return [...document.querySelectorAll("body *")]
                      .filter((el) => el.getBoundingClientRect().right > w + 0.5)
                      .slice(0, 8)
                      .map((el) => `${el.tagName.toLowerCase()}${el.dataset.testid ? `[${el.dataset.testid}]` : ""}.${el.className} right=${Math.round(el.getBoundingClientRect().right)}`);
                    "#,
                    vec![],
                )
                .await;
            panic!(
                "{context}: the page scrolls sideways (scrollWidth {scroll} > clientWidth {client}); wider elements: {culprits}"
            );
        }
    }
}

impl Page {
    /// Records, from now on, every request the page's scripts start, as "METHOD path", when
    /// they start it: what a gesture sent is known as soon as the gesture ends.
    async fn record_requests(&self) {
        let script = "window.requestsSent = [];
            const realFetch = window.fetch;
            window.fetch = (input, init) => {
              const url = new URL(input instanceof Request ? input.url : String(input), location.href);
              requestsSent.push(`${(init && init.method) || 'GET'} ${url.pathname}`);
              return realFetch(input, init);
            };";
        self.execute(script, vec![]).await;
    }

    /// The requests sent since [`Self::record_requests`] other than reads.
    async fn writes_sent(&self) -> Vec<String> {
        let sent = self.execute("return window.requestsSent", vec![]).await;
        let sent: Vec<String> = serde_json::from_value(sent).expect("recording requests");
        sent.into_iter().filter(|request| !request.starts_with("GET ")).collect()
    }

    /// The hosts a card lists: `card-hosts` (its data-count) and its `card-host-item`s, every
    /// `card-host` text, and how many single-host container rows it has.
    async fn card_hosts(&self, image: &str) -> Option<Value> {
        let value = self
            .execute(
                r#"
                const text = (el) => (el ? el.textContent.replace(/\s+/g, " ").trim() : null);
                const card = [...document.querySelectorAll('[data-testid="card"]')]
                  .find((c) => c.dataset.image === arguments[0]);
                if (!card) return null;
                const list = card.querySelector('[data-testid="card-hosts"]');
                return {
                  count: list ? list.dataset.count : null,
                  items: [...card.querySelectorAll('[data-testid="card-host-item"]')].map((item) => ({
                    hostname: item.dataset.hostname,
                    host: text(item.querySelector('[data-testid="card-host"]')),
                    place: text(item.querySelector('[data-testid="card-host-place"]')),
                  })),
                  hosts: [...card.querySelectorAll('[data-testid="card-host"]')].map(text),
                  container: text(card.querySelector('[data-testid="card-container"]')),
                  container_rows: card.querySelectorAll(
                    '[data-testid="card-container"], [data-testid="card-containers"]').length,
                };
                "#,
                vec![json!(image)],
            )
            .await;
        (!value.is_null()).then_some(value)
    }

    /// Chooses the option of `id` that reads `label`, whatever its value.
    async fn choose_labelled(&self, id: &str, label: &str) {
        let script = format!(
            r#"const o = [...document.querySelector('{}').options].find((o) => o.textContent === arguments[0]);
               return o ? o.value : null;"#,
            testid(id)
        );
        let value = self.execute(&script, vec![json!(label)]).await;
        let value = value.as_str().unwrap_or_else(|| panic!("no option reading {label} in {id}"));
        self.choose(id, value).await;
    }

    /// The options' text of the `<select>` with test id `id`, in order.
    async fn labels(&self, id: &str) -> Vec<String> {
        let script = format!(
            r#"return [...document.querySelector('{}').options].map((o) => o.textContent);"#,
            testid(id)
        );
        let value = self.execute(&script, vec![]).await;
        value.as_array().into_iter().flatten().map(|v| v.as_str().unwrap_or_default().to_string()).collect()
    }

    /// The values the `<select>` with test id `id` offers, in order.
    async fn options(&self, id: &str) -> Vec<String> {
        let script =
            format!(r#"return [...document.querySelector('{}').options].map((o) => o.value);"#, testid(id));
        let value = self.execute(&script, vec![]).await;
        value.as_array().into_iter().flatten().map(|v| v.as_str().unwrap_or_default().to_string()).collect()
    }

    /// Waits until exactly `want` (any order) are the cards shown.
    async fn wait_shown(&self, want: &[&str], what: &str) {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        self.wait_until(what, async || {
            let mut shown = self.images().await;
            shown.sort();
            (shown == want).then_some(())
        })
        .await
    }

    /// The history dialog's digest groups with their events, as shown.
    async fn history_groups(&self) -> Vec<Value> {
        let value = self
            .execute(
                r#"
                const text = (el) => (el ? el.textContent.replace(/\s+/g, " ").trim() : null);
                const dialog = document.querySelector('[data-testid="history-dialog"]');
                return [...dialog.querySelectorAll('[data-testid="history-digest-group"]')].map((g) => ({
                  digest: g.dataset.digest,
                  current: g.dataset.current,
                  events: [...g.querySelectorAll('[data-testid="history-event"]')].map((e) => {
                    const digest = e.querySelector('[data-testid="history-digest"]');
                    return {
                      id: Number(e.dataset.id),
                      digest: e.dataset.digest,
                      hostname: e.dataset.hostname,
                      acknowledged: e.dataset.acknowledged,
                      host: text(e.querySelector('[data-testid="history-host"]')),
                      short: text(digest),
                      title: digest ? digest.title : null,
                      acknowledged_shown: Boolean(e.querySelector('[data-testid="history-acknowledged"]')),
                    };
                  }),
                }));
                "#,
                vec![],
            )
            .await;
        value.as_array().cloned().unwrap_or_default()
    }

    /// `data-testid` of the focused element and the image of the card it is in.
    async fn focus(&self) -> (Option<String>, Option<String>) {
        let value = self
            .execute(
                r#"const a = document.activeElement;
                   return [a?.dataset?.testid ?? null, a?.closest('[data-testid="card"]')?.dataset.image ?? null];"#,
                vec![],
            )
            .await;
        (value[0].as_str().map(str::to_string), value[1].as_str().map(str::to_string))
    }

    /// Keyboard focus is on a usable control, not fallen back to `<body>` (where a keyboard user
    /// starts again from the top) nor left on a disabled control.
    async fn assert_focus_kept(&self, when: &str) {
        let lost = self
            .execute(
                "const a = document.activeElement; return !a || a === document.body || a.disabled === true;",
                vec![],
            )
            .await;
        assert_eq!(lost, json!(false), "focus was lost {when}: {:?}", self.focus().await);
    }

    async fn live_status(&self, attr: &str) -> Option<String> {
        self.by_testid("live-status").await.attr(attr).await
    }

    /// Waits for the live-status indicator's `attr` (`data-state` or `data-transport`) to read
    /// `value`.
    async fn wait_live_status(&self, attr: &str, value: &str) {
        self.wait_until(&format!("the live status's {attr} to be {value:?}"), async || {
            (self.live_status(attr).await.as_deref() == Some(value)).then_some(())
        })
        .await
    }

    /// No console errors but those of requests that failed (which a test made fail).
    async fn assert_no_console_errors_besides_failed_requests(&self) {
        let errors: Vec<_> =
            self.console_errors().await.into_iter().filter(|entry| entry.source != "network").collect();
        assert!(errors.is_empty(), "console errors besides failed requests: {errors:#?}");
    }
}

fn card_css(image: &str) -> String {
    format!(r#"{}[data-image="{image}"]"#, testid("card"))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- DIUN events ---------------------------------------------------------------------------------

/// A DIUN event with all 11 fields.
fn event(
    image: &str,
    provider: &str,
    hostname: &str,
    status: &str,
    hub_link: &str,
    metadata: Value,
) -> Value {
    json!({
        "diun_version": "4.28.0",
        "hostname": hostname,
        "status": status,
        "provider": provider,
        "image": image,
        "hub_link": hub_link,
        "mime_type": "application/vnd.oci.image.index.v1+json",
        "digest": "sha256:5f2e1c3b9a0d4e6f8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f",
        "created": "2024-05-14T18:21:39Z",
        "platform": "linux/amd64",
        "metadata": metadata,
    })
}

fn docker(image: &str, hostname: &str, containers: &str, hub_link: &str) -> Value {
    event(
        image,
        "docker",
        hostname,
        "update",
        hub_link,
        json!({
            "ctn_id": "4a5b6c7d8e9f",
            "ctn_names": containers,
            "ctn_command": "/entrypoint.sh",
            "ctn_createdat": "2024-05-01 10:00:00 +0000 UTC",
            "ctn_state": "running",
            "ctn_status": "Up 2 days",
            "ctn_size": "0B",
        }),
    )
}

/// Cards alike, `reg.example/app<n>:1` on one host and container, for tests about places on the
/// page rather than what a card says.
fn apps(numbers: impl IntoIterator<Item = u32>) -> Vec<Value> {
    numbers.into_iter().map(|n| docker(&format!("reg.example/app{n}:1"), "nas", "app", "")).collect()
}

const NGINX: &str = "docker.io/library/nginx:1.27.0";
const HASS: &str = "ghcr.io/home-assistant/home-assistant:2024.5.4";
const PROMETHEUS: &str = "quay.io/prometheus/prometheus:v2.52.0";
const JELLYFIN: &str = "lscr.io/linuxserver/jellyfin:10.9.6";
const BUILDER: &str = "registry.gitlab.com/acme/builder:2.1";
const VAULTWARDEN: &str = "docker.io/vaultwarden/server:1.30.5";

/// Six images from every kind of provider and five registries.
fn varied_events() -> Vec<Value> {
    let mut nginx = docker(NGINX, "nas", "web", "https://hub.docker.com/_/nginx");
    nginx["status"] = json!("new");
    let mut hass = event(
        HASS,
        "swarm",
        "pi",
        "update",
        "https://github.com/home-assistant/core/pkgs/container/home-assistant",
        json!({ "svc_id": "x1y2z3", "svc_createdat": "2024-04-01", "svc_updatedat": "2024-05-01", "ctn_name": "homeassistant" }),
    );
    hass["platform"] = json!("linux/arm64/v8");
    let prometheus = event(
        PROMETHEUS,
        "kubernetes",
        "k8s-node-1",
        "update",
        "",
        json!({ "pod_name": "prometheus-0", "pod_status": "Running", "pod_namespace": "monitoring",
                "pod_createdat": "2024-05-01", "ctn_name": "prometheus", "ctn_command": "/bin/prometheus" }),
    );
    let jellyfin = event(
        JELLYFIN,
        "nomad",
        "media",
        "new",
        "https://fleet.linuxserver.io/image?name=linuxserver/jellyfin",
        json!({ "job_id": "jellyfin", "job_name": "jellyfin", "job_status": "running", "job_namespace": "default",
                "taskgroup_name": "media", "task_name": "server", "task_driver": "docker", "task_user": "" }),
    );
    // A link that is not http(s) must not become one.
    let builder = event(BUILDER, "file", "ci-runner", "update", "javascript:alert(1)", Value::Null);
    let vaultwarden = docker(
        VAULTWARDEN,
        "nas",
        "vaultwarden,/vaultwarden-backup",
        "https://hub.docker.com/r/vaultwarden/server",
    );
    vec![nginx, hass, prometheus, jellyfin, builder, vaultwarden]
}

async fn seed(page: &Page, events: &[Value]) {
    for event in events {
        page.webhook(event).await;
    }
}

/// Submits each of `names` as a new group, each refused with an error banner, and waits for
/// that banner before the next (a banner moves what is below it).
async fn refuse_group_names(page: &Page, names: &[&str]) {
    let input = page.by_testid("new-group-name").await;
    for (shown, name) in names.iter().enumerate() {
        input.clear().await;
        input.click().await;
        input.send_keys(name).await;
        page.by_testid("new-group-submit").await.click().await;
        page.wait_until("the refusal's banner", async || {
            (page.find_all(&testid("error-banner")).await.len() == shown + 1).then_some(())
        })
        .await;
    }
}

/// A page open on the first `count` of [`varied_events`], `script` run before the page's own.
async fn page_with(script: &str, count: usize) -> Option<Page> {
    let page = Page::start(1280, 900).await?;
    page.before_scripts(script).await;
    seed(&page, &varied_events()[..count]).await;
    page.open().await;
    Some(page)
}

/// A 1280×900 page that runs `script` before its own, with the first `count` of
/// `varied_events` and the group `name` holding `members`, opened with the group drawn; the
/// group's id.
async fn page_with_group(script: &str, count: usize, name: &str, members: &[&str]) -> Option<(Page, i64)> {
    let page = Page::start(1280, 900).await?;
    page.before_scripts(script).await;
    seed(&page, &varied_events()[..count]).await;
    let tag = page.create_tag(name).await;
    for image in members {
        page.assign(image, tag).await;
    }
    page.open().await;
    if let Some(last) = members.last() {
        page.wait_in_section(last, &tag.to_string()).await;
    }
    Some((page, tag))
}

// ---- Tests -----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn cards_show_what_diun_reported() {
    let Some(page) = Page::start(1440, 1200).await else { return };
    seed(&page, &varied_events()).await;
    page.open().await;

    let cards = page.cards().await;
    assert_eq!(cards.len(), 6, "{cards:#?}");
    let card =
        |image: &str| cards.iter().find(|c| c["image"] == image).unwrap_or_else(|| panic!("no card {image}"));
    let check = |image: &str, expected: Value, link: Option<&str>| {
        let card = card(image);
        for (field, want) in expected.as_object().unwrap() {
            assert_eq!(&card["fields"][field], want, "{image}: {field} in {card:#}");
        }
        assert_eq!(card["link"].as_str(), link, "{image}: hub link");
        assert_eq!(card["state"], "pending", "{image}");
        assert_eq!(card["section"], "untagged", "{image}");
        assert!(card["ack"].as_bool().unwrap() && !card["acked"].as_bool().unwrap(), "{image}: {card:#}");
    };
    check(
        NGINX,
        json!({ "card-name": "nginx", "card-tag": "1.27.0", "card-registry": "docker.io", "card-status": "new",
                "card-host": "nas", "card-container": "web", "card-platform": "linux/amd64" }),
        Some("https://hub.docker.com/_/nginx"),
    );
    check(
        HASS,
        json!({ "card-name": "home-assistant", "card-tag": "2024.5.4", "card-registry": "ghcr.io/home-assistant",
                "card-status": "update", "card-host": "pi", "card-container": "homeassistant",
                "card-platform": "linux/arm64/v8" }),
        Some("https://github.com/home-assistant/core/pkgs/container/home-assistant"),
    );
    check(
        PROMETHEUS,
        json!({ "card-name": "prometheus", "card-tag": "v2.52.0", "card-registry": "quay.io/prometheus",
                "card-host": "k8s-node-1", "card-pod": "monitoring/prometheus-0", "card-container": "prometheus" }),
        None,
    );
    check(
        JELLYFIN,
        json!({ "card-name": "jellyfin", "card-tag": "10.9.6", "card-registry": "lscr.io/linuxserver",
                "card-status": "new", "card-host": "media", "card-job": "jellyfin", "card-task": "server" }),
        Some("https://fleet.linuxserver.io/image?name=linuxserver/jellyfin"),
    );
    check(
        BUILDER,
        json!({ "card-name": "builder", "card-tag": "2.1", "card-registry": "registry.gitlab.com/acme",
                "card-host": "ci-runner", "card-container": null }),
        None,
    );
    check(
        VAULTWARDEN,
        json!({ "card-name": "vaultwarden/server", "card-tag": "1.30.5", "card-registry": "docker.io/vaultwarden",
                "card-containers": "vaultwarden, vaultwarden-backup" }),
        Some("https://hub.docker.com/r/vaultwarden/server"),
    );

    // Received: a relative time, the exact one on hover, the instant the server recorded.
    let updates = page.updates().await;
    for card in &cards {
        let image = card["image"].as_str().unwrap();
        let received = &card["received"];
        assert_eq!(received["text"], "just now", "{image}: {received}");
        assert!(
            !received["title"].as_str().unwrap_or_default().is_empty(),
            "{image}: no exact time on hover"
        );
        let shown = received["datetime"].as_str().unwrap_or_default();
        let stored = updates[image]["received_at"].as_str().unwrap();
        assert_eq!(shown.get(..19), stored.get(..19), "{image}: received_at");
    }

    // The links open the registry page in a new tab, safely.
    let link = page.card(NGINX).await.get("hub-link").await;
    assert_eq!(link.attr("target").await.as_deref(), Some("_blank"));
    // Its hover names where it goes: the label is the image's registry, the link the sender's.
    let hass_link = page.card(HASS).await.get("hub-link").await;
    assert_eq!(hass_link.attr("title").await.as_deref(), Some("Open home-assistant on github.com (new tab)"));
    assert!(link.attr("rel").await.unwrap_or_default().contains("noopener"));

    // Header and stats count them; the tab title too.
    assert_eq!(page.by_testid("pending-badge").await.text_content().await, "6");
    for (id, want) in
        [("stat-total", "6"), ("stat-pending", "6"), ("stat-acknowledged", "0"), ("stat-groups", "0")]
    {
        assert_eq!(page.by_testid(id).await.text_content().await, want, "{id}");
    }
    page.wait_title("Diun Dashboard (6)").await;
    let untagged = page.section("untagged").await;
    assert_eq!(untagged.get("group-count").await.text_content().await, "6");
    page.assert_no_horizontal_scroll("1440 px").await;
    // A card redrawn while its link has keyboard focus (acknowledged elsewhere, here) keeps the
    // focus on its link.
    page.execute(
        r#"[...document.querySelectorAll('[data-testid="card"]')].find((c) => c.dataset.image === arguments[0])
             .querySelector('[data-testid="hub-link"]').focus();"#,
        vec![json!(NGINX)],
    )
    .await;
    assert_eq!(page.focus().await, (Some("hub-link".to_string()), Some(NGINX.to_string())));
    page.acknowledge(NGINX).await;
    page.wait_state(NGINX, "acknowledged").await;
    assert_eq!(
        page.focus().await,
        (Some("hub-link".to_string()), Some(NGINX.to_string())),
        "the redrawn card's link lost the focus"
    );
    page.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn acknowledging_settles_the_card_and_persists() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    seed(&page, &varied_events()[..3]).await;
    page.open().await;
    page.wait_title("Diun Dashboard (3)").await;

    let ack = page.card(HASS).await.get("ack").await;
    assert!(ack.displayed().await && ack.enabled().await);
    ack.click().await;
    page.wait_state(HASS, "acknowledged").await;
    let card = page.card_info(HASS).await.unwrap();
    assert!(card["acked"].as_bool().unwrap() && !card["ack"].as_bool().unwrap(), "{card:#}");
    page.wait_title("Diun Dashboard (2)").await;
    assert_eq!(page.by_testid("pending-badge").await.text_content().await, "2");
    assert_eq!(page.by_testid("stat-acknowledged").await.text_content().await, "1");
    assert!(card["acknowledged_at"].as_bool().unwrap(), "the acknowledgement time is shown: {card:#}");

    // The server has it, and only it.
    let updates =
        page.wait_api("the acknowledgement to reach the server", |u| u[HASS]["acknowledged"] == true).await;
    assert!(updates[HASS]["acknowledged_at"].is_string());
    assert_eq!(updates[NGINX]["acknowledged"], false);
    assert_eq!(updates[PROMETHEUS]["acknowledged"], false);

    // And so has the page after a reload.
    page.reload().await;
    page.wait_loaded().await;
    assert_eq!(page.card_info(HASS).await.unwrap()["state"], "acknowledged");
    assert_eq!(page.card_info(NGINX).await.unwrap()["state"], "pending");
    page.wait_title("Diun Dashboard (2)").await;
    page.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn groups_are_created_and_cards_moved_by_drag_and_menu() {
    let Some(page) = Page::start(1280, 1600).await else { return };
    seed(&page, &varied_events()[..4]).await;
    page.open().await;

    // Create two groups through the form.
    for name in ["production", "media"] {
        let input = page.by_testid("new-group-name").await;
        input.click().await;
        input.send_keys(name).await;
        page.by_testid("new-group-submit").await.click().await;
        page.wait_for(&format!(r#"{}[data-tag-name="{name}"]"#, testid("group"))).await;
        page.wait_until("the name field to be emptied", async || {
            (input.prop("value").await == "").then_some(())
        })
        .await;
    }
    let tags = page.api("GET", "/api/tags", None).await.json();
    let id_of = |name: &str| {
        tags.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no tag {name}: {tags}"))["id"]
            .as_i64()
            .unwrap()
            .to_string()
    };
    let (production, media) = (id_of("production"), id_of("media"));
    assert_eq!(page.by_testid("stat-groups").await.text_content().await, "2");
    let production_section = page.section(&production).await;
    assert!(production_section.get("group-empty").await.displayed().await, "a new group says it is empty");

    // Mouse drag: nginx into production.
    page.drag(&page.card(NGINX).await, &page.section(&production).await, Pointer::Mouse).await;
    page.wait_in_section(NGINX, &production).await;
    page.wait_api("nginx assigned to production", |u| u[NGINX]["tag"]["name"] == "production").await;
    assert_eq!(page.section(&production).await.get("group-count").await.text_content().await, "1");

    // The "Move to…" menu: jellyfin into media.
    let menu = page.card(JELLYFIN).await.get("move-menu").await;
    menu.click().await;
    assert_eq!(menu.attr("aria-expanded").await.as_deref(), Some("true"));
    let options = page.wait_for(&testid("move-options")).await;
    let targets = {
        let mut targets = Vec::new();
        for option in options.find_all(&testid("move-option")).await {
            targets.push(option.attr("data-tag-id").await.unwrap_or_default());
        }
        targets
    };
    assert_eq!(targets.len(), 3, "two groups and Untagged: {targets:?}");
    assert!(targets.contains(&"untagged".to_string()) && targets.contains(&media), "{targets:?}");
    options
        .find(&format!(r#"{}[data-tag-id="{media}"]"#, testid("move-option")))
        .await
        .unwrap()
        .click()
        .await;
    page.wait_gone(&testid("move-options")).await;
    page.wait_in_section(JELLYFIN, &media).await;
    page.wait_api("jellyfin assigned to media", |u| u[JELLYFIN]["tag"]["name"] == "media").await;

    // The keyboard works the menu too. ArrowUp opens it on its last item (the WAI-ARIA menu
    // button's way): nginx's opened on its checked group, as ArrowDown does.
    page.card(NGINX).await.get("move-menu").await.send_keys(keys::ARROW_UP).await;
    page.wait_for(&testid("move-options")).await;
    assert_eq!(page.active().await.attr("data-tag-id").await.as_deref(), Some("untagged"));
    page.active().await.send_keys(keys::ESCAPE).await;
    page.wait_gone(&testid("move-options")).await;
    // Tab closes it and goes on to what follows its button, as Tab from the button itself does.
    let nginx_menu = page.card(NGINX).await.get("move-menu").await;
    nginx_menu.send_keys(keys::ARROW_DOWN).await;
    page.wait_for(&testid("move-options")).await;
    page.press(keys::TAB).await;
    page.wait_gone(&testid("move-options")).await;
    let after_the_menu = page.focus().await;
    page.execute("arguments[0].focus()", vec![nginx_menu.json()]).await;
    page.press(keys::TAB).await;
    assert_eq!(after_the_menu, page.focus().await, "Tab from the menu went elsewhere than from its button");
    assert_ne!(after_the_menu.0.as_deref(), Some("move-menu"), "Tab stayed on the button");
    // Prometheus into production.
    let menu = page.card(PROMETHEUS).await.get("move-menu").await;
    menu.send_keys(keys::ARROW_DOWN).await;
    let options = page.wait_for(&testid("move-options")).await;
    options.find(&testid("move-option")).await.expect("menu items");
    // Arrow down to the wanted item (focus moves within the menu), then Enter.
    for _ in 0..6 {
        let active = page.active().await;
        if active.attr("data-tag-id").await.as_deref() == Some(production.as_str()) {
            break;
        }
        assert_eq!(active.attr("role").await.as_deref(), Some("menuitemradio"), "focus stays in the menu");
        active.send_keys(keys::ARROW_DOWN).await;
    }
    let option = page.active().await;
    assert_eq!(option.attr("data-tag-id").await.as_deref(), Some(production.as_str()));
    option.send_keys(keys::ENTER).await;
    page.wait_in_section(PROMETHEUS, &production).await;
    page.wait_api("prometheus assigned to production", |u| u[PROMETHEUS]["tag"]["name"] == "production")
        .await;

    // Focus moved elsewhere without a pointer (a script here, a screen reader's own navigation
    // in life) closes the menu, which would otherwise hold the page's redraws.
    page.card(NGINX).await.get("move-menu").await.click().await;
    page.wait_for(&testid("move-options")).await;
    page.execute("document.querySelector('[data-testid=search]').focus()", vec![]).await;
    page.wait_gone(&testid("move-options")).await;
    // So does leaving the window for another application, where the page may stay in sight.
    page.card(NGINX).await.get("move-menu").await.click().await;
    page.wait_for(&testid("move-options")).await;
    page.execute("window.dispatchEvent(new Event('blur'))", vec![]).await;
    page.wait_gone(&testid("move-options")).await;
    assert_eq!(page.focus().await.0.as_deref(), Some("move-menu"), "back on the menu's button");

    // Everything stays where it was put after a reload.
    page.reload().await;
    page.wait_loaded().await;
    page.wait_in_section(NGINX, &production).await;
    page.wait_in_section(PROMETHEUS, &production).await;
    page.wait_in_section(JELLYFIN, &media).await;
    page.wait_in_section(HASS, "untagged").await;
    assert_eq!(page.section(&production).await.get("group-count").await.text_content().await, "2");

    // Dragging onto Untagged removes the assignment.
    page.drag(&page.card(NGINX).await, &page.section("untagged").await, Pointer::Mouse).await;
    page.wait_in_section(NGINX, "untagged").await;
    let updates = page.wait_api("nginx unassigned", |u| u[NGINX]["tag"].is_null()).await;
    assert_eq!(updates[PROMETHEUS]["tag"]["name"], "production", "only the dragged card moved");

    // A drag that ends where it began changes nothing: nothing is sent.
    page.record_requests().await;
    page.drag(&page.card(HASS).await, &page.section("untagged").await, Pointer::Mouse).await;
    assert_eq!(page.writes_sent().await, Vec::<String>::new());
    assert!(page.updates().await[HASS]["tag"].is_null());

    // Deleting a group (inline confirm) leaves its images untagged.
    let media_section = page.section(&media).await;
    media_section.get("group-delete").await.click().await;
    page.section(&media).await.get("group-delete-confirm").await.click().await;
    page.wait_gone(&format!(r#"{}[data-tag-id="{media}"]"#, testid("group"))).await;
    page.wait_in_section(JELLYFIN, "untagged").await;
    page.wait_api("jellyfin untagged after its group went", |u| u[JELLYFIN]["tag"].is_null()).await;
    let focused = page
        .execute("return document.activeElement.dataset.focusKey ?? document.activeElement.id", vec![])
        .await;
    assert_eq!(focused, json!("group-toggle:untagged"), "the keyboard follows the cards to Untagged");
    page.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn touch_drag_moves_a_card_on_a_phone() {
    let Some(page) = Page::start(390, 1500).await else { return };
    seed(&page, &varied_events()[..2]).await;
    let home = page.create_tag("home").await.to_string();
    page.open().await;

    // A finger: press, hold (a long press), then move onto the group and lift.
    page.drag(&page.card(HASS).await, &page.section(&home).await, Pointer::Touch).await;
    page.wait_in_section(HASS, &home).await;
    page.wait_api("home-assistant assigned by touch", |u| u[HASS]["tag"]["name"] == "home").await;

    // And back to Untagged.
    page.drag(&page.card(HASS).await, &page.section("untagged").await, Pointer::Touch).await;
    page.wait_in_section(HASS, "untagged").await;
    page.wait_api("home-assistant unassigned by touch", |u| u[HASS]["tag"].is_null()).await;
    page.assert_no_horizontal_scroll("390 px").await;
    page.assert_no_console_errors().await;
}

/// On a phone the live status is a dot; "live" may stay one, but offline is written out: a red
/// dot for "offline" and an amber one for "paused" differed by colour alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn the_live_status_is_written_out_on_a_phone_unless_live() {
    let Some(mut page) = Page::start(375, 812).await else { return };
    seed(&page, &varied_events()[..2]).await;
    page.open().await;
    page.wait_live_status("data-state", "live").await;
    let shown = "const text = document.getElementById('live-text');
         return text.getBoundingClientRect().width > 1 ? text.textContent : null;";
    assert_eq!(page.execute(shown, vec![]).await, Value::Null, "the dot alone while live");
    page.service.child.kill().await.expect("stop the service");
    page.wait_live_status("data-state", "offline").await;
    assert_eq!(page.execute(shown, vec![]).await, json!("Offline"));
    page.assert_no_horizontal_scroll("375 px, offline").await;
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// A drag whose end the page never heard (the button let go in another window after Alt-Tab)
/// ends when the page notices: on leaving the window, or at the next move with no button held.
/// Before, the card stayed in hand, every redraw stayed held, and the next click dropped it.
/// A drag of a card's link, or one that ended elsewhere, never moves the card either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_drag_the_page_lost_track_of_moves_nothing() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()[..2]).await;
    let home = page.create_tag("home").await.to_string();
    page.open().await;
    page.section(&home).await;
    // Pointer events as a mouse sends them: `press` on the card, `to` the middle of the home
    // section with `buttons` held, `release` there. Says whether a drag is in hand.
    let pointer = async |steps: Value| -> bool {
        let in_hand = page
            .execute(
                r#"
                const [image, home, steps] = arguments;
                const card = document.querySelector(`[data-testid="card"][data-image="${image}"]`);
                const section = document.querySelector(`[data-testid="group"][data-tag-id="${home}"]`);
                const c = card.getBoundingClientRect(), t = section.getBoundingClientRect();
                const at = (r) => ({ clientX: r.left + r.width / 2, clientY: r.top + Math.min(r.height / 2, 40) });
                const send = (target, type, point, buttons) => target.dispatchEvent(new PointerEvent(type, {
                  bubbles: true, cancelable: true, isPrimary: true, pointerId: 9, pointerType: "mouse",
                  button: 0, buttons, ...point }));
                for (const [step, buttons] of steps) {
                  if (step === "press") send(card, "pointerdown", at(c), 1);
                  if (step === "to") send(window, "pointermove", at(t), buttons);
                  if (step === "release") send(window, "pointerup", at(t), 0);
                  if (step === "blur") window.dispatchEvent(new Event("blur"));
                }
                return Boolean(document.querySelector(".card-ghost"));
                "#,
                vec![json!(HASS), json!(home), steps],
            )
            .await;
        in_hand.as_bool().expect("a boolean")
    };
    let settle = async || tokio::time::sleep(Duration::from_millis(300)).await;

    // Left the window mid-drag: the drag ends, redraws go on, and a later release drops nothing.
    assert!(pointer(json!([["press", 0], ["to", 1]])).await, "the synthetic drag is in hand");
    assert!(!pointer(json!([["blur", 0]])).await, "leaving the window ends the drag");
    let held = page.execute("return document.body.classList.contains('is-dragging-card')", vec![]).await;
    assert_eq!(held, json!(false), "the page still holds its redraws for a drag");
    page.webhook(&docker(PROMETHEUS, "nas", "prometheus", "https://quay.io/prometheus/prometheus")).await;
    page.card(PROMETHEUS).await;
    pointer(json!([["release", 0]])).await;
    settle().await;
    assert!(page.updates().await[HASS]["tag"].is_null(), "a release after the drag ended moved the card");

    // Back with no button held: the first move ends the drag.
    assert!(pointer(json!([["press", 0], ["to", 1]])).await);
    assert!(!pointer(json!([["to", 0]])).await, "a move with no button held ends the drag");
    pointer(json!([["release", 0]])).await;
    settle().await;
    assert!(page.updates().await[HASS]["tag"].is_null(), "the release moved the card");

    // The card's link dragged onto a group, and a card drag that ended elsewhere followed by a
    // drop from outside: neither moves the card.
    page.execute(
        r#"
        const [image, home] = arguments;
        const card = document.querySelector(`[data-testid="card"][data-image="${image}"]`);
        const link = card.querySelector('[data-testid="hub-link"]');
        const section = document.querySelector(`[data-testid="group"][data-tag-id="${home}"]`);
        const drag = (target, type) => target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true }));
        drag(link, "dragstart");
        drag(section, "drop");
        drag(card, "dragstart");
        drag(card, "dragend");
        drag(section, "drop");
        "#,
        vec![json!(HASS), json!(home)],
    )
    .await;
    settle().await;
    assert!(page.updates().await[HASS]["tag"].is_null(), "a link's drag or a finished drag moved the card");

    // The same synthetic drag, held to its end, moves the card: the steps above did reach it.
    pointer(json!([["press", 0], ["to", 1], ["release", 0]])).await;
    page.wait_in_section(HASS, &home).await;
    page.wait_api("home-assistant moved by the held drag", |u| u[HASS]["tag"]["name"] == "home").await;
    page.assert_no_console_errors().await;
}

/// A card moved out of a group is still in it on the server until its move is answered: a
/// dismissal of the group in that moment (a slow network) waits for the move, and leaves the
/// card that went out pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn dismissing_a_group_leaves_a_card_just_moved_out_of_it_pending() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    // The first is the earlier report: within the group's newest, which the dismissal names.
    seed(&page, &apps(1..=2)).await;
    let (moved, stays) = ("reg.example/app1:1", "reg.example/app2:1");
    let prod = page.create_tag("prod").await;
    page.assign(moved, prod).await;
    page.assign(stays, prod).await;
    let prod = prod.to_string();
    page.open().await;
    page.wait_in_section(moved, &prod).await;
    // Moves take a while to leave the page.
    page.execute(
        "const realFetch = window.fetch;
         window.fetch = async (input, init) => {
           if (String(input).includes('tag-assignments')) await new Promise((r) => setTimeout(r, 800));
           return realFetch(input, init);
         };",
        vec![],
    )
    .await;
    page.drag(&page.card(moved).await, &page.section("untagged").await, Pointer::Mouse).await;
    page.wait_in_section(moved, "untagged").await;
    page.section(&prod).await.get("group-dismiss").await.click().await;
    page.section(&prod).await.get("group-dismiss-confirm").await.click().await;
    page.wait_state(stays, "acknowledged").await;
    let updates = page.wait_api("the group dismissed", |u| u[stays]["acknowledged"] == true).await;
    assert_eq!(updates[moved]["acknowledged"], false, "moved out before the dismissal: {updates:#}");
    assert!(updates[moved]["tag"].is_null(), "{updates:#}");
    page.wait_state(moved, "pending").await;
    page.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn dismissing_a_group_and_dismissing_all() {
    let Some(page) = Page::start(1280, 1400).await else { return };
    seed(&page, &varied_events()[..5]).await;
    let prod = page.create_tag("prod").await;
    page.assign(NGINX, prod).await;
    page.assign(HASS, prod).await;
    let prod = prod.to_string();
    page.open().await;
    page.wait_title("Diun Dashboard (5)").await;

    // Dismiss group: asks inline, then acknowledges only that group's cards.
    let section = page.section(&prod).await;
    section.get("group-dismiss").await.click().await;
    let confirm = page.section(&prod).await.get("group-dismiss-confirm").await;
    assert!(confirm.displayed().await);
    // Cancel first: nothing happens.
    page.section(&prod).await.get("group-dismiss-cancel").await.click().await;
    page.wait_gone(&testid("group-dismiss-confirm")).await;
    assert_eq!(page.card_info(NGINX).await.unwrap()["state"], "pending");
    page.section(&prod).await.get("group-dismiss").await.click().await;
    page.section(&prod).await.get("group-dismiss-confirm").await.click().await;
    page.wait_state(NGINX, "acknowledged").await;
    page.wait_state(HASS, "acknowledged").await;
    page.wait_title("Diun Dashboard (3)").await;
    let updates = page
        .wait_api("the group dismissed on the server", |u| {
            u[NGINX]["acknowledged"] == true && u[HASS]["acknowledged"] == true
        })
        .await;
    for image in [PROMETHEUS, JELLYFIN, BUILDER] {
        assert_eq!(updates[image]["acknowledged"], false, "{image} is not in the group");
        assert_eq!(page.card_info(image).await.unwrap()["state"], "pending", "{image}");
    }
    assert!(!page.section(&prod).await.get("group-dismiss").await.enabled().await, "nothing left to dismiss");
    page.assert_focus_kept("after dismissing a group").await;
    let (control, image) = page.focus().await;
    assert_eq!(control.as_deref(), Some("move-menu"), "focus goes to a card of the group: {image:?}");
    assert!(matches!(image.as_deref(), Some(NGINX | HASS)), "a card of the group: {image:?}");

    // Dismiss all: a dialog asks; Cancel keeps everything.
    let dismiss_all = page.by_testid("dismiss-all").await;
    dismiss_all.click().await;
    let dialog = page.wait_for(&testid("confirm-dialog")).await;
    assert!(dialog.attr("open").await.is_some());
    page.by_testid("confirm-cancel").await.click().await;
    page.wait_gone(&testid("confirm-dialog")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(page.updates().await[PROMETHEUS]["acknowledged"], false);
    assert_eq!(page.title().await, "Diun Dashboard (3)");

    // Escape cancels too.
    dismiss_all.click().await;
    page.wait_for(&testid("confirm-dialog")).await;
    page.by_testid("confirm-cancel").await.send_keys(keys::ESCAPE).await;
    page.wait_gone(&testid("confirm-dialog")).await;
    assert_eq!(page.updates().await[PROMETHEUS]["acknowledged"], false);

    // A report that arrives while the dialog is open was never seen: confirming asks again, saying
    // so, and dismisses nothing yet.
    const KUMA: &str = "docker.io/louislam/uptime-kuma:1.23.13";
    dismiss_all.click().await;
    page.wait_for(&testid("confirm-dialog")).await;
    page.webhook(&docker(KUMA, "nas", "uptime-kuma", "")).await;
    page.wait_title("Diun Dashboard (4)").await;
    page.by_testid("confirm-ok").await.click().await;
    page.wait_until("the dialog to ask again", async || {
        let text = page.execute("return document.getElementById('confirm-text').textContent", vec![]).await;
        let open = page.by_testid("confirm-dialog").await.attr("open").await.is_some();
        (open && text.as_str().is_some_and(|text| text.contains("1 new update arrived while this was open")))
            .then_some(())
    })
    .await;
    let text = page.execute("return document.getElementById('confirm-text').textContent", vec![]).await;
    assert!(text.as_str().unwrap().contains("all 4 pending updates"), "{text}");
    assert_eq!(page.updates().await[KUMA]["acknowledged"], false, "dismissed before it was seen");
    assert_eq!(page.updates().await[PROMETHEUS]["acknowledged"], false);

    // Confirmed again, everything is acknowledged.
    page.by_testid("confirm-ok").await.click().await;
    page.wait_gone(&testid("confirm-dialog")).await;
    for image in [PROMETHEUS, JELLYFIN, BUILDER, KUMA] {
        page.wait_state(image, "acknowledged").await;
    }
    page.wait_title("Diun Dashboard").await;
    page.wait_api("everything acknowledged on the server", |u| {
        u.as_object().unwrap().values().all(|entry| entry["acknowledged"] == true)
    })
    .await;
    assert_eq!(page.by_testid("pending-badge").await.text_content().await, "0");
    assert_eq!(page.by_testid("stat-acknowledged").await.text_content().await, "6");
    assert!(!page.by_testid("dismiss-all").await.enabled().await, "nothing left to dismiss");
    page.assert_focus_kept("after dismissing everything").await;
    page.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn search_and_filters_narrow_the_list() {
    let Some(page) = Page::start(1280, 1400).await else { return };
    seed(&page, &varied_events()).await;
    page.acknowledge(PROMETHEUS).await;
    page.acknowledge(BUILDER).await;
    let media = page.create_tag("media").await;
    page.assign(JELLYFIN, media).await;
    page.assign(PROMETHEUS, media).await;
    let media = media.to_string();
    page.open().await;
    assert_eq!(page.images().await.len(), 6);

    let shown = async || {
        let mut images = page.images().await;
        images.sort();
        images
    };
    let sorted = |list: &[&str]| {
        let mut list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        list.sort();
        list
    };
    let wait_shown = async |want: &[&str], what: &str| {
        let want = sorted(want);
        page.wait_until(what, async || (shown().await == want).then_some(())).await;
    };

    // Search by image name (any part of the reference).
    let search = page.by_testid("search").await;
    search.click().await;
    search.send_keys("vault").await;
    wait_shown(&[VAULTWARDEN], "search `vault`").await;
    search.send_keys(&"\u{E003}".repeat(5)).await; // backspace
    search.send_keys("ghcr.io").await;
    wait_shown(&[HASS], "search `ghcr.io`").await;

    // Nothing matches: a message and a way out.
    search.send_keys("zzz").await;
    wait_shown(&[], "no match").await;
    let clear = page.wait_for(&testid("clear-filters")).await;
    assert!(page.by_testid("no-results").await.displayed().await);
    clear.click().await;
    wait_shown(&[NGINX, HASS, PROMETHEUS, JELLYFIN, BUILDER, VAULTWARDEN], "cleared filters").await;
    assert_eq!(search.prop("value").await, "");

    // Status.
    page.choose("filter-status", "acknowledged").await;
    wait_shown(&[PROMETHEUS, BUILDER], "acknowledged only").await;
    page.choose("filter-status", "pending").await;
    wait_shown(&[NGINX, HASS, JELLYFIN, VAULTWARDEN], "pending only").await;
    page.choose("filter-status", "all").await;

    // Group, then group and status together, then Untagged.
    page.choose("filter-group", &media).await;
    wait_shown(&[JELLYFIN, PROMETHEUS], "the media group").await;
    let sections: Vec<Value> = page
        .execute(
            "return [...document.querySelectorAll('[data-testid=\"group\"]')].map(s => s.dataset.tagId)",
            vec![],
        )
        .await
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(sections, vec![json!(media)], "only the chosen group's section is shown");
    page.choose("filter-status", "pending").await;
    wait_shown(&[JELLYFIN], "pending in media").await;
    page.choose("filter-status", "all").await;
    page.choose("filter-group", "untagged").await;
    wait_shown(&[NGINX, HASS, BUILDER, VAULTWARDEN], "untagged").await;

    // Search within a group, and the count says how many are shown.
    search.send_keys("docker.io").await;
    wait_shown(&[NGINX, VAULTWARDEN], "docker.io in untagged").await;
    let count = page.section("untagged").await.get("group-count").await.text_content().await;
    assert_eq!(count, "2/4", "filtered count of the section");
    page.choose("filter-group", "all").await;
    search.send_keys(&"\u{E003}".repeat(9)).await;
    wait_shown(&[NGINX, HASS, PROMETHEUS, JELLYFIN, BUILDER, VAULTWARDEN], "search emptied").await;

    // Sort by name orders the cards in a section alphabetically.
    page.choose("sort", "name").await;
    let untagged = [NGINX, HASS, BUILDER, VAULTWARDEN];
    page.wait_until("untagged sorted by name", async || {
        let names: Vec<String> = page
            .cards()
            .await
            .iter()
            .filter(|c| untagged.contains(&c["image"].as_str().unwrap()))
            .map(|c| c["fields"]["card-name"].as_str().unwrap().to_string())
            .collect();
        (names == ["builder", "home-assistant", "nginx", "vaultwarden/server"]).then_some(())
    })
    .await;
    page.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_webhook_shows_up_live_with_a_toast() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()[..2]).await;
    let prod = page.create_tag("prod").await;
    page.assign(HASS, prod).await;
    page.acknowledge(HASS).await;
    page.open().await;
    page.wait_title("Diun Dashboard (1)").await;
    assert!(page.find(&testid("toast")).await.is_none(), "no toast for what was already there");
    let cards = page.cards().await;
    assert_eq!(cards.len(), 2, "{cards:#?}");
    assert!(cards.iter().all(|c| c["new"] == "false"), "first visit: nothing is new: {cards:#?}");

    // A new image arrives while the page is open.
    const KUMA: &str = "docker.io/louislam/uptime-kuma:1.23.13";
    page.webhook(&docker(KUMA, "nas", "uptime-kuma", "https://hub.docker.com/r/louislam/uptime-kuma")).await;
    page.card(KUMA).await;
    let card = page.card_info(KUMA).await.unwrap();
    assert_eq!(card["new"], "true", "a new card is highlighted: {card:#}");
    assert!(card["new_badge"].as_bool().unwrap(), "with a badge: {card:#}");
    let toast = page.wait_for(&testid("toast")).await;
    let text = toast.text_content().await;
    assert!(text.contains("uptime-kuma"), "the toast names the image: {text:?}");
    page.wait_title("Diun Dashboard (2)").await;
    assert_eq!(page.by_testid("stat-total").await.text_content().await, "3");

    // The toast can be closed.
    page.settled_toast().await.get("toast-close").await.click().await;
    page.wait_gone(&testid("toast")).await;

    // DIUN reports an acknowledged image again: pending again, still in its group.
    let mut again = varied_events()[1].clone();
    again["image"] = json!(HASS);
    page.webhook(&again).await;
    page.wait_state(HASS, "pending").await;
    page.wait_in_section(HASS, &prod.to_string()).await;
    page.wait_title("Diun Dashboard (3)").await;
    page.wait_for(&testid("toast")).await;
    page.assert_no_console_errors().await;
}

/// What Firefox does to a form after a reload: earlier choices back in their boxes, here ones the
/// address does not name.
const FORM_CHOICES_RESTORED: &str = r#"
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filter-status").value = "acknowledged";
  document.getElementById("sort").value = "registry";
});
"#;

/// A filter chosen while the first snapshot is still on its way is kept, and so is the group the
/// address named, which the group box cannot list until the snapshot comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_filter_chosen_before_the_first_snapshot_keeps_the_address_group() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()).await;
    page.acknowledge(PROMETHEUS).await;
    let media = page.create_tag("media").await;
    page.assign(JELLYFIN, media).await;
    page.assign(PROMETHEUS, media).await;
    // The listing's answer is held until the test lets it through.
    page.before_scripts(
        "const realFetch = window.fetch;
         window.fetch = (input, init) => {
           const answer = realFetch(input, init);
           if (!String(input).endsWith('api/updates')) return answer;
           return answer.then((res) => new Promise((resolve) => {
             const wait = () => (window.releaseSnapshot ? resolve(res) : setTimeout(wait, 20));
             wait();
           }));
         };",
    )
    .await;
    page.goto(&page.url(&format!("/?group={media}"))).await;
    page.wait_for(&testid("loading")).await;
    page.choose("filter-status", "pending").await;
    assert!(page.find(&testid("loading")).await.is_some(), "chosen before the snapshot");
    page.execute("window.releaseSnapshot = true", vec![]).await;
    page.wait_loaded().await;
    page.wait_until("the group's pending card", async || (page.images().await == [JELLYFIN]).then_some(()))
        .await;
    assert_eq!(page.by_testid("filter-group").await.prop("value").await, json!(media.to_string()));
    assert_eq!(page.by_testid("filter-status").await.prop("value").await, json!("pending"));
    let address = page.execute("return location.search", vec![]).await;
    assert_eq!(address, json!(format!("?status=pending&group={media}")));
    page.assert_no_console_errors().await;
}

/// After a reload, the filter boxes say what the cards show: the filters the address keeps, not
/// what a browser that puts a form's earlier choices back (Firefox; here a script does it as the
/// page loads) put there; before, "Pending" and "Name" showed over every card in the newest first
/// order, and choosing "Pending" again did nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn after_a_reload_the_filter_boxes_match_the_cards() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()).await;
    page.acknowledge(HASS).await;
    page.open().await;
    let all = page.cards().await.len();
    // The sort first: the cards that show fewer then are sorted too (the other way round, a
    // frame between the two choices drew the filtered cards newest first, now and then).
    page.choose("sort", "name").await;
    page.choose("filter-status", "pending").await;
    page.wait_until("the acknowledged card hidden", async || (page.cards().await.len() < all).then_some(()))
        .await;
    let pending = page.images().await;
    page.before_scripts(FORM_CHOICES_RESTORED).await;
    page.reload().await;
    page.wait_loaded().await;
    assert_eq!(page.images().await, pending, "after a reload the same cards, in the same order");
    for (id, value) in [("filter-status", "pending"), ("sort", "name")] {
        assert_eq!(page.by_testid(id).await.prop("value").await, value, "{id} as the cards show");
    }
    page.assert_no_console_errors().await;
}

/// The filters live in the page's address: a link naming them opens the page filtered (its group
/// and host once they are known), a change writes them back, and the plain address is the
/// unfiltered page. What the address cannot mean is left out. Search finds an image by the host
/// or the container it runs on too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn the_filters_are_kept_in_the_address() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()).await;
    page.acknowledge(PROMETHEUS).await;
    let media = page.create_tag("media").await;
    page.assign(JELLYFIN, media).await;
    page.assign(PROMETHEUS, media).await;
    let address = async || page.execute("return location.search", vec![]).await;
    let boxes = async || {
        let mut values = vec![];
        for id in ["search", "filter-status", "filter-group", "filter-host", "sort"] {
            values.push(page.by_testid(id).await.prop("value").await);
        }
        values
    };

    page.goto(&page.url(&format!("/?status=pending&group={media}&sort=name"))).await;
    page.wait_loaded().await;
    page.wait_until("the address's group", async || (page.images().await == [JELLYFIN]).then_some(())).await;
    assert_eq!(boxes().await, ["", "pending", &media.to_string(), "all", "name"]);

    page.goto(&page.url("/?host=nas&status=bogus&group=0&sort=&q=vault")).await;
    page.wait_loaded().await;
    page.wait_until("the address's host", async || (page.images().await == [VAULTWARDEN]).then_some(()))
        .await;
    assert_eq!(boxes().await, ["vault", "all", "all", "host:nas", "newest"]);
    assert_eq!(address().await, json!("?q=vault&host=nas"), "what it cannot mean left out");

    // A change is written back; by host name or container name, search finds the image.
    let search = page.by_testid("search").await;
    let backspaces = |count: usize| "\u{E003}".repeat(count);
    search.click().await;
    search.send_keys(&backspaces("vault".len())).await;
    page.choose("filter-host", "all").await;
    search.click().await;
    search.send_keys("homeassistant").await;
    page.wait_until("found by its container", async || (page.images().await == [HASS]).then_some(())).await;
    page.wait_until("the search in the address", async || {
        (address().await == json!("?q=homeassistant")).then_some(())
    })
    .await;
    search.send_keys(&format!("{}k8s-node", backspaces("homeassistant".len()))).await;
    page.wait_until("found by its host", async || (page.images().await == [PROMETHEUS]).then_some(())).await;
    search.send_keys(&backspaces("k8s-node".len())).await;
    page.choose("filter-status", "acknowledged").await;
    page.wait_until("the status in the address", async || {
        (address().await == json!("?status=acknowledged")).then_some(())
    })
    .await;
    page.choose("filter-status", "all").await;
    page.wait_until("the plain address", async || (address().await == json!("")).then_some(())).await;

    // Back to an address of this page (the skip link's #updates made an entry): its filters.
    page.choose("filter-status", "pending").await;
    page.wait_until("pending in the address", async || {
        (address().await == json!("?status=pending")).then_some(())
    })
    .await;
    page.execute("location.hash = 'updates'", vec![]).await;
    page.choose("filter-status", "acknowledged").await;
    page.wait_until("the address without the skip link's mark", async || {
        let location = page.execute("return location.search + location.hash", vec![]).await;
        (location == json!("?status=acknowledged")).then_some(())
    })
    .await;
    page.execute("history.back()", vec![]).await;
    page.wait_until("Back's filters", async || {
        (page.by_testid("filter-status").await.prop("value").await == json!("pending")).then_some(())
    })
    .await;
    page.wait_until("Back's cards", async || (page.images().await.len() == 5).then_some(())).await;
    page.assert_no_console_errors().await;
}

/// Under filters, a dismissal's question says how many of the updates it dismisses the filters
/// hide: "Dismiss group" and "Dismiss all" act on every pending update, shown or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_dismissal_says_what_the_filters_hide() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()).await;
    page.goto(&page.url("/?host=nas")).await;
    page.wait_loaded().await;
    page.wait_until("nas's cards", async || (page.images().await.len() == 2).then_some(())).await;
    page.section("untagged").await.get("group-dismiss").await.click().await;
    let question = page.wait_for(&testid("group-dismiss-confirm-row")).await.text_content().await;
    assert!(question.contains("Dismiss 6 pending updates (4 not shown by the filters)?"), "{question}");
    page.by_testid("group-dismiss-cancel").await.click().await;

    // The question, and the second choice if one is shown.
    let dismiss_all = async || {
        page.by_testid("dismiss-all").await.click().await;
        let text = page.wait_for(&testid("confirm-dialog")).await.text_content().await;
        let other = page.by_testid("confirm-other").await;
        let other = if other.displayed().await { Some(other.text().await) } else { None };
        page.by_testid("confirm-cancel").await.click().await;
        page.wait_gone(&testid("confirm-dialog")).await;
        (text, other)
    };
    let (text, other) = dismiss_all().await;
    assert!(text.contains("all 6 pending updates (4 not shown by the filters)."), "{text}");
    assert_eq!(other.as_deref(), Some("Dismiss the 2 matching the filters"), "the shown ones offered alone");
    page.choose("filter-host", "all").await;
    page.wait_until("every card", async || (page.images().await.len() == 6).then_some(())).await;
    let (text, other) = dismiss_all().await;
    assert!(text.contains("all 6 pending updates. "), "{text}");
    assert_eq!(other, None, "nothing hidden, no second choice");
    // A folded section's cards are not drawn, but no filter hides them.
    page.section("untagged").await.get("group-toggle").await.click().await;
    page.wait_until("untagged folded", async || page.images().await.is_empty().then_some(())).await;
    let (text, other) = dismiss_all().await;
    assert!(text.contains("all 6 pending updates. "), "{text}");
    assert_eq!(other, None);
    page.assert_no_console_errors().await;
}

/// Under a filter (one host, after updating it), "Dismiss all" offers the updates shown alone:
/// each is acknowledged up to the report its card showed, so one reported anew behind the dialog
/// stays pending and is said; the ones the filter hides stay pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn dismissing_the_updates_shown_leaves_the_hidden_ones_pending() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()).await;
    page.goto(&page.url("/?host=nas")).await;
    page.wait_loaded().await;
    page.wait_until("nas's cards", async || (page.images().await.len() == 2).then_some(())).await;
    page.by_testid("dismiss-all").await.click().await;
    page.wait_for(&testid("confirm-dialog")).await;
    let mut vaultwarden = varied_events().into_iter().find(|event| event["image"] == VAULTWARDEN).unwrap();
    vaultwarden["digest"] = json!(format!("sha256:{}", "d".repeat(64)));
    page.webhook(&vaultwarden).await;
    let other = page.by_testid("confirm-other").await;
    assert_eq!(other.text().await, "Dismiss the 2 matching the filters");
    other.click().await;

    page.wait_api("nginx acknowledged", |u| u[NGINX]["acknowledged"] == true).await;
    page.wait_said("Dismissed 1 update; 1 update reported anew meanwhile stayed pending").await;
    let updates = page.api("GET", "/api/updates", None).await.json();
    let pending: Vec<&str> = updates
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, update)| update["acknowledged"] == false)
        .map(|(image, _)| image.as_str())
        .collect();
    assert_eq!(pending.len(), 5, "the reported anew and the four hidden: {pending:?}");
    assert!(pending.contains(&VAULTWARDEN) && !pending.contains(&NGINX), "{pending:?}");
    // The one reported anew answers 409.
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// A group's heading folds its section away and back: its cards are not drawn, its counts stay in
/// the heading, the keyboard stays on the heading, the choice is remembered across a reload, and
/// a toast's "Show" for a card in a folded section unfolds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_group_folds_away_and_is_remembered() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    // Folded in an earlier life of the database: a group that no longer is.
    page.before_scripts(
        r#"if (!sessionStorage.getItem("seeded")) {
             sessionStorage.setItem("seeded", "1");
             localStorage.setItem("diun-dashboard:collapsed-groups", '["987654"]');
           }"#,
    )
    .await;
    seed(&page, &varied_events()).await;
    let media = page.create_tag("media").await;
    page.assign(JELLYFIN, media).await;
    page.assign(PROMETHEUS, media).await;
    let media = media.to_string();
    page.open().await;
    let stored = async || {
        page.execute(r#"return localStorage.getItem("diun-dashboard:collapsed-groups")"#, vec![]).await
    };
    page.wait_until("the gone group forgotten", async || (stored().await == json!("[]")).then_some(())).await;
    let toggle = page.section(&media).await.get("group-toggle").await;
    assert_eq!(toggle.attr("aria-expanded").await.as_deref(), Some("true"));
    toggle.click().await;
    let folded = async || {
        let images = page.images().await;
        (images.len() == 4 && !images.iter().any(|image| image == JELLYFIN || image == PROMETHEUS))
            .then_some(())
    };
    page.wait_until("the media group folded", folded).await;
    let section = page.section(&media).await;
    assert_eq!(section.get("group-toggle").await.attr("aria-expanded").await.as_deref(), Some("false"));
    assert_eq!(section.get("group-count").await.text_content().await, "2", "the counts stay in view");
    let focused = page.execute("return document.activeElement.dataset.focusKey ?? null", vec![]).await;
    assert_eq!(focused, json!(format!("group-toggle:{media}")), "the keyboard stays on the heading");

    assert_eq!(stored().await, json!(format!(r#"["{media}"]"#)));
    page.reload().await;
    page.wait_loaded().await;
    page.wait_until("still folded after a reload", folded).await;

    // A new report of a folded card: its toast's "Show" unfolds the section and focuses it.
    let mut jellyfin = varied_events().into_iter().find(|event| event["image"] == JELLYFIN).unwrap();
    jellyfin["digest"] = json!(format!("sha256:{}", "c".repeat(64)));
    page.webhook(&jellyfin).await;
    page.wait_until("the heading says a card came", async || {
        let arrived = page.section(&media).await.find(&testid("group-new")).await?;
        (arrived.displayed().await && arrived.text_content().await == ", 1 just in").then_some(())
    })
    .await;
    page.settled_toast().await.get("toast-action").await.click().await;
    page.wait_until("the card shown", async || page.card_info(JELLYFIN).await.map(|_| ())).await;
    assert_eq!(
        page.section(&media).await.get("group-toggle").await.attr("aria-expanded").await.as_deref(),
        Some("true")
    );

    // Another tab folds it and unfolds it.
    page.store_from_another_tab("collapsed-groups", Some(&format!(r#"["{media}"]"#))).await;
    page.wait_until("folded by the other tab", folded).await;
    page.store_from_another_tab("collapsed-groups", Some("[]")).await;
    page.wait_until("unfolded by the other tab", async || page.card_info(PROMETHEUS).await.map(|_| ())).await;
    assert_eq!(
        page.section(&media).await.get("group-toggle").await.attr("aria-expanded").await.as_deref(),
        Some("true")
    );
    page.assert_no_console_errors().await;
}

/// A toast that comes while a dialog is open (it shows under the dialog, out of reach) waits for
/// the dialog to close: it closed on its own time before the user could read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_toast_under_a_dialog_waits_for_it_to_close() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    page.before_scripts(&shortened_timers(5000, 300)).await;
    seed(&page, &varied_events()[..2]).await;
    page.open().await;
    page.card(NGINX).await.get("history-open").await.click().await;
    page.wait_for(&testid("history-event")).await;
    const KUMA: &str = "docker.io/louislam/uptime-kuma:1.23.13";
    page.webhook(&docker(KUMA, "nas", "uptime-kuma", "")).await;
    page.wait_for(&testid("toast")).await;
    // Three times the toast's (shortened) time.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(page.find(&testid("toast")).await.is_some(), "the toast closed under the dialog");
    page.active().await.send_keys(keys::ESCAPE).await;
    page.wait_gone(&testid("history-dialog")).await;
    // Then it has its time on screen, and goes.
    page.wait_gone(&testid("toast")).await;
    page.assert_no_console_errors().await;
}

/// The console checks of every other test can fail: an error the page logs is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_console_error_is_seen() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.open().await;
    page.execute("console.error('logged by the test')", vec![]).await;
    page.wait_until("the error in the browser's log", async || {
        let errors = page.console_errors().await;
        errors.iter().any(|entry| entry.message.contains("logged by the test")).then_some(())
    })
    .await;
}

/// A report acknowledged elsewhere before this page heard of it (a tab in the background, say)
/// arrives without a toast: it is no news. Toasts once counted it among the new updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_report_acknowledged_before_the_page_saw_it_gets_no_toast() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    page.before_scripts(LISTING_FROZEN).await;
    seed(&page, &varied_events()[..2]).await;
    page.open().await;
    page.execute("window.listingFrozen = true", vec![]).await;
    const KUMA: &str = "docker.io/louislam/uptime-kuma:1.23.13";
    page.webhook(&docker(KUMA, "nas", "uptime-kuma", "")).await;
    page.acknowledge(KUMA).await;
    // Thawed, the next change (a new group) brings KUMA in, acknowledged.
    page.execute("window.listingFrozen = false", vec![]).await;
    page.create_tag("later").await;
    page.wait_state(KUMA, "acknowledged").await;
    assert!(page.find(&testid("toast")).await.is_none(), "a toast for an acknowledged report");

    // A pending one still has its toast.
    page.webhook(&docker(PROMETHEUS, "nas", "prometheus", "")).await;
    let toast = page.wait_for(&testid("toast")).await;
    let text = toast.text_content().await;
    assert!(text.contains("prometheus") && !text.contains("uptime-kuma"), "{text:?}");
    page.assert_no_console_errors().await;
}

/// Acknowledged from the keyboard under the Pending filter, a card leaves the view: focus goes to
/// the next card's Acknowledge, not back to the top of the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn acknowledging_under_the_pending_filter_keeps_the_keyboard_in_place() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()).await;
    page.open().await;
    page.choose("filter-status", "pending").await;
    let order = "return [...document.querySelectorAll('[data-testid=\"card\"]')].map(c => c.dataset.image)";
    let shown = page.execute(order, vec![]).await;
    let (first, second) = (shown[0].as_str().unwrap().to_string(), shown[1].as_str().unwrap().to_string());
    let ack = page.card(&first).await.get("ack").await;
    page.execute("arguments[0].focus()", vec![ack.json()]).await;
    ack.send_keys(keys::ENTER).await;
    page.wait_gone(&card_css(&first)).await;
    page.wait_until("focus on the next card's Acknowledge", async || {
        (page.focus().await == (Some("ack".to_string()), Some(second.clone()))).then_some(())
    })
    .await;
}

/// Two tabs keep the "Just in" marks of both: a tab saving its own copy of them erased what the
/// other had marked seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn seen_marks_of_another_tab_are_kept() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()[..2]).await;
    page.open().await;
    // Another tab (same origin, same storage) marks an image seen after this one loaded.
    let other_tab = r#"const key = "diun-dashboard:seen";
        const marks = JSON.parse(localStorage.getItem(key));
        marks["from:other-tab"] = "2099-01-01T00:00:00.000000Z";
        localStorage.setItem(key, JSON.stringify(marks));"#;
    page.execute(other_tab, vec![]).await;
    // This tab then marks a new card seen, and saves.
    const KUMA: &str = "docker.io/louislam/uptime-kuma:1.23.13";
    page.webhook(&docker(KUMA, "nas", "uptime-kuma", "")).await;
    page.card(KUMA).await;
    let read = "return JSON.parse(localStorage.getItem('diun-dashboard:seen'))";
    let marks = page
        .wait_until("this tab to mark the new card seen", async || {
            let marks = page.execute(read, vec![]).await;
            marks.get(KUMA).is_some().then_some(marks)
        })
        .await;
    assert_eq!(marks["from:other-tab"], json!("2099-01-01T00:00:00.000000Z"), "{marks:#}");
}

/// A new image's card goes to the top of its group, which may be far down a long page: the
/// toast's "Show" scrolls to it and puts focus on it, also when the filters hid it. The second
/// toast is reached from the keyboard ("N"), as toasts come after every card in tab order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn the_toast_shows_where_a_new_card_is() {
    let Some(page) = Page::start(1280, 800).await else { return };
    let grouped: Vec<Value> =
        (0..24).map(|n| docker(&format!("reg.example/app{n:02}:1"), "nas", "app", "")).collect();
    seed(&page, &grouped).await;
    let prod = page.create_tag("prod").await;
    for event in &grouped {
        page.assign(event["image"].as_str().unwrap(), prod).await;
    }
    page.open().await;
    let in_view = async |image: &str| {
        let script =
            "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight;";
        page.execute(script, vec![page.card(image).await.json()]).await == json!(true)
    };
    let focus_in = async |image: &str| {
        let script = "return document.activeElement.closest('[data-testid=card]')?.dataset.image ?? null;";
        page.execute(script, vec![]).await == json!(image)
    };

    for (image, filtered) in [("docker.io/louislam/uptime-kuma:1", false), ("ghcr.io/home/assistant:2", true)]
    {
        if filtered {
            // A search that hides the new card: "Show" clears it.
            let search = page.by_testid("search").await;
            search.click().await;
            search.send_keys("app0").await;
            page.wait_until("the search to apply", async || (page.images().await.len() == 10).then_some(()))
                .await;
        }
        page.webhook(&docker(image, "nas", "app", "")).await;
        page.wait_for(&testid("toast")).await;
        // Reached by a key, "Show" says which update it shows.
        let about = page
            .execute(
                "const b = document.querySelector(arguments[0]);
                 return b.getAttribute('aria-describedby').split(' ').map((id) => document.getElementById(id).textContent).join(' ');",
                vec![json!(testid("toast-action"))],
            )
            .await;
        let name = image.rsplit('/').next().and_then(|last| last.split(':').next()).unwrap_or(image);
        assert!(about.as_str().is_some_and(|about| about.contains(name)), "{name}: {about}");
        if !filtered {
            page.card(image).await;
            assert!(!in_view(image).await, "the new card starts off screen, under the group of 24");
        }
        if filtered {
            // Typing "n" in the search box is just typing.
            page.by_testid("search").await.send_keys("n").await;
            assert_eq!(page.active().await.attr("data-testid").await.as_deref(), Some("search"));
            page.by_testid("search").await.send_keys("\u{E003}").await; // backspace
            page.execute("document.activeElement.blur()", vec![]).await;
            page.press("n").await;
            assert_eq!(page.active().await.attr("data-testid").await.as_deref(), Some("toast-action"));
            page.active().await.send_keys(keys::ENTER).await;
        } else {
            page.settled_toast().await.get("toast-action").await.click().await;
        }
        page.wait_until("the new card to be scrolled into view", async || in_view(image).await.then_some(()))
            .await;
        assert!(focus_in(image).await, "focus is on the new card");
        page.wait_gone(&testid("toast")).await;
    }
    assert_eq!(page.by_testid("search").await.prop("value").await, "");
    page.assert_no_console_errors().await;
}

/// A DIUN scan reports image after image, each found by its own refetch: one toast counts them
/// (and is announced once), rather than a toast each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_burst_of_arrivals_shares_one_toast() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    for n in 0..3 {
        let image = format!("reg.example/burst{n}:1");
        page.webhook(&docker(&image, "nas", "app", "")).await;
        page.card(&image).await;
    }
    let text = page
        .wait_until("one toast counting the three", async || {
            let toasts = page.find_all(&testid("toast")).await;
            let text = toasts.first()?.text_content().await;
            (toasts.len() == 1 && text.contains("3 new image updates")).then_some(text)
        })
        .await;
    for n in 0..3 {
        assert!(text.contains(&format!("burst{n}")), "{text}");
    }
    page.assert_no_console_errors().await;
}

/// "N" takes focus to the newest toast and Escape closes it, focus going back where it was. The
/// single-key shortcuts can be turned off in the footer (WCAG 2.1.4), and stay off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn single_key_shortcuts_reach_toasts_and_can_be_turned_off() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    page.wait_title("Diun Dashboard (1)").await;
    let focus_refresh = async || {
        page.execute("document.querySelector('[data-testid=refresh]').focus()", vec![]).await;
    };
    let active = async || page.active().await.attr("data-testid").await;

    focus_refresh().await;
    page.webhook(&varied_events()[1]).await;
    page.wait_for(&testid("toast")).await;
    page.press("n").await;
    assert_eq!(active().await.as_deref(), Some("toast-action"));
    page.active().await.send_keys(keys::ESCAPE).await;
    page.wait_gone(&testid("toast")).await;
    assert_eq!(active().await.as_deref(), Some("refresh"), "focus goes back where it was");

    let toggle = page.by_testid("shortcuts-toggle").await;
    assert_eq!(toggle.attr("aria-pressed").await.as_deref(), Some("true"));
    toggle.click().await;
    assert_eq!(toggle.attr("aria-pressed").await.as_deref(), Some("false"));
    // The state is shown, and read once, as the button's pressed state: not in its name too.
    let (shown, spoken) = (
        page.execute(
            "return document.getElementById('shortcuts-toggle').innerText.replace(/\\s+/g, ' ')",
            vec![],
        )
        .await,
        page.execute(SPOKEN_TEXT, vec![json!("shortcuts-toggle")]).await,
    );
    assert_eq!((shown, spoken), (json!("Single-key shortcuts off"), json!("Single-key shortcuts")));
    page.reload().await;
    page.wait_title("Diun Dashboard (2)").await;
    let toggle = page.by_testid("shortcuts-toggle").await;
    assert_eq!(toggle.attr("aria-pressed").await.as_deref(), Some("false"), "remembered");
    focus_refresh().await;
    page.webhook(&varied_events()[2]).await;
    page.wait_for(&testid("toast")).await;
    page.press("n").await;
    page.press("/").await;
    assert_eq!(active().await.as_deref(), Some("refresh"), "no shortcut while they are off");
    page.assert_no_console_errors().await;
}

/// J and K move the keyboard from card to card (the Acknowledge button, else "Move to…"),
/// across sections, stopping at either end; not while typing in a box.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn j_and_k_move_the_keyboard_from_card_to_card() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..3]).await;
    page.acknowledge(PROMETHEUS).await;
    let media = page.create_tag("media").await;
    page.assign(PROMETHEUS, media).await;
    page.open().await;
    let order = page.images().await;
    assert_eq!(order.len(), 3);
    let focused = async || {
        page.execute("return document.activeElement.dataset.focusKey ?? null", vec![])
            .await
            .as_str()
            .map(str::to_string)
    };
    let control =
        |image: &str| if image == PROMETHEUS { format!("move:{image}") } else { format!("ack:{image}") };
    page.press("j").await;
    assert_eq!(focused().await, Some(control(&order[0])), "from outside the cards, the first");
    page.press("j").await;
    assert_eq!(focused().await, Some(control(&order[1])));
    page.press("j").await;
    assert_eq!(focused().await, Some(control(&order[2])), "into the next section");
    page.press("j").await;
    assert_eq!(focused().await, Some(control(&order[2])), "the last stays the last");
    page.press("k").await;
    assert_eq!(focused().await, Some(control(&order[1])));

    page.press("/").await;
    page.press("j").await;
    assert_eq!(page.by_testid("search").await.prop("value").await, json!("j"), "typed, not a shortcut");
    page.assert_no_console_errors().await;
}

/// A card J moves to down the page is scrolled clear of the toasts' stack at the window's
/// bottom, not left underneath it (a toast's height stands in for a few toasts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn j_keeps_the_card_it_moves_to_clear_of_the_toasts() {
    let Some(page) = Page::start(1280, 700).await else { return };
    seed(&page, &varied_events()).await;
    page.open().await;
    page.execute(
        "const toast = document.createElement('div');
         toast.className = 'toast';
         toast.style.height = '240px';
         document.getElementById('toasts').append(toast);",
        vec![],
    )
    .await;
    let cards = page.images().await.len();
    let mut scrolled = false;
    for step in 0..cards {
        page.press("j").await;
        // The card's place once the page has scrolled (again after the next frames).
        let place = async || {
            let place = page
                .execute(
                    "const card = document.activeElement.closest('[data-testid=\"card\"]');
                     const toasts = document.querySelector('#toasts .toast').getBoundingClientRect();
                     const rect = card.getBoundingClientRect();
                     return [rect.top, rect.bottom, toasts.top, window.scrollY];",
                    vec![],
                )
                .await;
            serde_json::from_value::<[f64; 4]>(place).ok()
        };
        let [_, _, _, scroll_y] = page
            .wait_until(&format!("card {step} in view, clear of the toasts"), async || {
                place().await.filter(|[top, bottom, toasts_top, _]| *top >= 0.0 && bottom <= toasts_top)
            })
            .await;
        scrolled |= scroll_y > 0.0;
    }
    assert!(scrolled, "the cards fit the window: nothing was tested");
    page.assert_no_console_errors().await;
}

/// Housekeeping that loses one of its requests on the way goes on with the others, and says how
/// many went and why one did not; the one left stays listed (the page asked the server, as the
/// loss left the outcome unsure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_housekeeping_removal_that_loses_a_request_says_so() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.before_scripts(
        "const realNow = Date.now;
         Date.now = () => realNow() + (window.daysLater ?? 0) * 86400000;",
    )
    .await;
    page.before_scripts(&losing_first("DELETE", r"api\/updates\/")).await;
    seed(&page, &varied_events()).await;
    for image in [PROMETHEUS, BUILDER, HASS] {
        page.acknowledge(image).await;
    }
    page.open().await;
    page.execute("window.daysLater = 91", vec![]).await;
    page.by_testid("remove-stale").await.click().await;
    page.wait_for(&testid("confirm-dialog")).await;
    page.by_testid("confirm-ok").await.click().await;
    wait_for_banner(&page, "Removed 2 images; 1 was not").await;
    wait_for_banner(&page, "Could not remove every image").await;
    let listed = page.api("GET", "/api/updates", None).await.json();
    let kept = [PROMETHEUS, BUILDER, HASS].iter().filter(|image| listed.get(**image).is_some()).count();
    assert_eq!(kept, 1, "two removed, the lost one kept: {listed:#}");
    let listed = listed.as_object().unwrap().len();
    page.wait_until("the page lists what the server has", async || {
        (page.images().await.len() == listed).then_some(())
    })
    .await;
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// Housekeeping: acknowledged images that no report has named for 90 days go together, after a
/// question that counts them; pending ones stay, and so does one reported anew while the
/// question was open. With none, a toast says so. (The page's clock is moved on 91 days; the
/// reports are from now.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn images_not_reported_for_90_days_are_removed_together() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.before_scripts(
        "const realNow = Date.now;
         Date.now = () => realNow() + (window.daysLater ?? 0) * 86400000;",
    )
    .await;
    seed(&page, &varied_events()).await;
    for image in [PROMETHEUS, BUILDER, HASS] {
        page.acknowledge(image).await;
    }
    page.open().await;
    page.by_testid("remove-stale").await.click().await;
    let toast = page.wait_for(&testid("toast")).await.text_content().await;
    assert!(toast.contains("Nothing to remove"), "{toast}");

    page.execute("window.daysLater = 91", vec![]).await;
    page.by_testid("remove-stale").await.click().await;
    let question = page.wait_for(&testid("confirm-dialog")).await.text_content().await;
    assert!(question.contains("3 acknowledged images, in any group"), "{question}");
    assert!(question.contains("neither a report nor an acknowledgement for 90 days"), "{question}");
    assert_eq!(page.by_testid("confirm-ok").await.text_content().await, "Remove 3");
    let prometheus = varied_events().into_iter().find(|event| event["image"] == PROMETHEUS).unwrap();
    page.webhook(&prometheus).await;
    page.by_testid("confirm-ok").await.click().await;
    page.wait_until("the stale cards gone", async || (page.images().await.len() == 4).then_some(())).await;
    let listed = page.api("GET", "/api/updates", None).await.json();
    let mut kept: Vec<&str> = listed.as_object().unwrap().keys().map(String::as_str).collect();
    kept.sort();
    let mut want = vec![NGINX, PROMETHEUS, JELLYFIN, VAULTWARDEN];
    want.sort();
    assert_eq!(kept, want, "the acknowledged ones went, not the one reported anew");
    page.wait_until("said", async || {
        let said = page.execute("return document.getElementById('announcer').textContent", vec![]).await;
        said.as_str().is_some_and(|said| said.starts_with("Removed 2 images")).then_some(())
    })
    .await;
    // The one reported anew answers 409 when its removal went out before the page heard of it.
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// The theme and the shortcuts setting chosen in another tab are this one's at once (as they
/// are after a reload), and go back to their defaults when another tab clears them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn settings_chosen_in_another_tab_apply_here() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.open().await;
    let settings = async || {
        let theme = page.by_testid("theme-toggle").await.attr("data-mode").await.unwrap_or_default();
        let root = page.execute("return document.documentElement.dataset.theme ?? null", vec![]).await;
        let shortcuts =
            page.by_testid("shortcuts-toggle").await.attr("aria-pressed").await.unwrap_or_default();
        (theme, root, shortcuts)
    };
    assert_eq!(settings().await, ("system".into(), Value::Null, "true".into()));

    page.store_from_another_tab("theme", Some(r#""dark""#)).await;
    page.store_from_another_tab("shortcuts", Some("false")).await;
    let want = ("dark".to_string(), json!("dark"), "false".to_string());
    page.wait_until("the other tab's settings", async || (settings().await == want).then_some(())).await;

    page.store_from_another_tab("theme", None).await;
    page.store_from_another_tab("shortcuts", None).await;
    let want = ("system".to_string(), Value::Null, "true".to_string());
    page.wait_until("the settings' defaults", async || (settings().await == want).then_some(())).await;
    page.assert_no_console_errors().await;
}

/// The compact list: one line per image, one image a row, chosen in the header, remembered across
/// a reload and shared with other tabs; a window too narrow for a line shows cards, and no toggle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn the_compact_list_is_one_line_per_image_and_remembered() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()).await;
    page.open().await;
    // [density, lefts of the cards, tallest card]
    let layout = async || {
        page.execute(
            "const cards = [...document.querySelectorAll('[data-testid=\"card\"]')].map((c) => c.getBoundingClientRect());
             return [document.documentElement.dataset.density ?? null,
                     [...new Set(cards.map((r) => Math.round(r.left)))].length,
                     Math.max(...cards.map((r) => r.height))];",
            vec![],
        )
        .await
    };
    let cards = layout().await;
    assert_eq!(cards[0], Value::Null);
    assert!(cards[1].as_u64().unwrap() > 1, "cards side by side: {cards}");
    let toggle = page.by_testid("density-toggle").await;
    assert_eq!(toggle.attr("aria-pressed").await.as_deref(), Some("false"));

    toggle.click().await;
    let compact = |layout: &Value| {
        layout[0] == "compact" && layout[1] == 1 && layout[2].as_f64().is_some_and(|height| height < 80.0)
    };
    page.wait_until("a compact list", async || compact(&layout().await).then_some(())).await;
    assert_eq!(toggle.attr("aria-pressed").await.as_deref(), Some("true"));
    page.reload().await;
    page.wait_loaded().await;
    assert!(compact(&layout().await), "kept across a reload: {}", layout().await);
    let host_label = page
        .execute(
            "const label = document.querySelector('[data-testid=\"card-host\"]').previousElementSibling;
             return [label.textContent, getComputedStyle(label).display];",
            vec![],
        )
        .await;
    assert_eq!(host_label[0], "Host");
    assert_ne!(host_label[1], "none", "the row's label is still read out");

    // Narrower than a line needs, the remembered choice waits: cards, and no toggle.
    let resize = async |width: u32| {
        page.set_viewport(width, 900).await;
        page.wait_until(&format!("a window {width} px wide"), async || {
            (page.execute("return window.innerWidth", vec![]).await == width).then_some(())
        })
        .await;
    };
    resize(800).await;
    let card_display = page
        .execute("return getComputedStyle(document.querySelector('[data-testid=\"card\"]')).display", vec![])
        .await;
    assert_eq!(card_display, "flex", "cards, not a row");
    assert!(!page.by_testid("density-toggle").await.displayed().await, "no choice where a line has no room");
    resize(1280).await;
    page.wait_until("the compact list again", async || compact(&layout().await).then_some(())).await;

    // Another tab goes back to cards.
    page.store_from_another_tab("density", Some(r#""cards""#)).await;
    page.wait_until("cards again", async || (layout().await[0] == Value::Null).then_some(())).await;
    assert_eq!(page.by_testid("density-toggle").await.attr("aria-pressed").await.as_deref(), Some("false"));
    page.assert_no_console_errors().await;
}

/// Cards off screen keep the size they were last drawn at (content-visibility): after a change of
/// density those sizes are let go, or the compact list kept the length of the cards it replaced
/// (a page three times too long, a scrollbar that lies, cards shrinking while scrolled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_change_of_density_lets_go_of_the_sizes_remembered_off_screen() {
    let Some(page) = Page::start(1280, 800).await else { return };
    const CARDS: usize = 60;
    let events: Vec<Value> =
        (0..CARDS).map(|n| docker(&format!("reg.example/app{n:02}:1"), "nas", "app", "")).collect();
    seed(&page, &events).await;
    page.open().await;
    // Every card drawn once, so that each remembers its size.
    let draw_every_card = async || {
        for place in ["document.body.scrollHeight", "document.body.scrollHeight / 2", "0"] {
            let script = format!(
                "const done = arguments[arguments.length - 1];
                 window.scrollTo(0, {place});
                 requestAnimationFrame(() => requestAnimationFrame(() => done(null)));"
            );
            page.execute_async(&script, vec![]).await;
        }
    };
    draw_every_card().await;
    page.by_testid("density-toggle").await.click().await;
    let first_card = async || {
        page.execute(
            "const cards = [...document.querySelectorAll('[data-testid=\"card\"]')];
             const first = cards[0].getBoundingClientRect();
             return [first.height, cards.filter((c) => c.getBoundingClientRect().top === first.top).length];",
            vec![],
        )
        .await
    };
    let row = first_card().await[0].as_f64().unwrap();
    let length = async || page.execute("return document.documentElement.scrollHeight", vec![]).await.as_f64();
    // The list's rows, with room for the header, the summary and the toolbar.
    let fitting = row * CARDS as f64 * 1.3 + 1000.0;
    page.wait_until("the page as long as its rows", async || length().await.filter(|len| *len < fitting))
        .await;

    // A window too narrow for the list shows cards whatever the choice: each as long as a card,
    // not as the row it was last drawn as.
    draw_every_card().await;
    let resize = async |width: u32| {
        page.set_viewport(width, 800).await;
        page.wait_until(&format!("a window {width} px wide"), async || {
            (page.execute("return window.innerWidth", vec![]).await == width).then_some(())
        })
        .await;
    };
    resize(900).await;
    let cards = first_card().await;
    let (card, columns) = (cards[0].as_f64().unwrap(), cards[1].as_f64().unwrap());
    assert!(card > row * 2.0, "cards again: {card} px against rows of {row}");
    let cards_long = card * CARDS as f64 / columns * 0.8;
    page.wait_until("the page as long as its cards", async || length().await.filter(|len| *len > cards_long))
        .await;
    draw_every_card().await;
    resize(1280).await;
    page.wait_until("the page as long as its rows again", async || {
        length().await.filter(|len| *len < fitting)
    })
    .await;
    page.assert_no_console_errors().await;
}

/// An action refreshes the page itself; the change stream's notice of that same change, arriving
/// while or after that refresh runs, costs no second fetch of the listing. Other changes still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn an_action_fetches_the_listing_once() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..3]).await;
    page.open().await;
    page.wait_title("Diun Dashboard (3)").await;
    let listing_fetches = async || {
        let script = "return performance.getEntriesByType('resource')
            .filter((e) => new URL(e.name).pathname.endsWith('/api/updates')).length;";
        page.execute(script, vec![]).await.as_u64().unwrap()
    };
    // A stream of the test's own, to know when the page has had the notice too.
    page.execute(
        "window.seen = []; const s = new EventSource('api/stream');
         s.addEventListener('hello', () => { window.streamOpen = true; });
         s.addEventListener('change', (e) => seen.push(JSON.parse(e.data)));",
        vec![],
    )
    .await;
    page.wait_until("the test's stream to open", async || {
        (page.execute("return window.streamOpen === true", vec![]).await == json!(true)).then_some(())
    })
    .await;
    // The page's stream opens after its first fetch and fetches once more (for what changed in
    // between): let that settle first.
    page.wait_live_status("data-transport", "stream").await;
    page.wait_until("the fetch after the stream opened", async || {
        (listing_fetches().await >= 2).then_some(())
    })
    .await;
    // And room for any later one, which the counts below would otherwise take for the action's.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = listing_fetches().await;

    page.card(HASS).await.get("ack").await.click().await;
    page.wait_state(HASS, "acknowledged").await;
    page.wait_until("the acknowledgement's notice", async || {
        let script = "return seen.some((c) => c.kind === 'acknowledge' && Number.isInteger(c.seq))";
        (page.execute(script, vec![]).await == json!(true)).then_some(())
    })
    .await;
    // Room for the refetch such a notice used to start (150 ms after it).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(listing_fetches().await, before + 1, "the action's own refresh only");

    page.webhook(&docker("ghcr.io/example/fresh:1", "nas", "fresh", "")).await;
    page.card("ghcr.io/example/fresh:1").await;
    assert_eq!(listing_fetches().await, before + 2, "a change from elsewhere is fetched");
    page.assert_no_console_errors().await;
}

/// The rules of sync.js, one case at a time: which notices a snapshot already includes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn notices_already_in_the_page_are_not_fetched_for() {
    let Some(page) = Page::start(800, 600).await else { return };
    page.open().await;
    let outcome = page
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
            import("./js/sync.js").then(({ Coverage, commonMark, parseMark }) => {
              const results = {};
              const c = new Coverage();
              c.streamOpened("e1");
              c.fetchStarted();
              c.fetchDone({ epoch: "e1", seq: 5 });
              results.coveredNotice = c.notice({ kind: "update", seq: 5 });
              results.newerNotice = c.notice({ kind: "update", seq: 6 });
              c.fetchStarted();
              results.duringFetch = c.notice({ kind: "tag", seq: 7 });
              c.fetchDone({ epoch: "e1", seq: 7 });
              results.behindAfterCoveringFetch = c.behind;
              c.notice({ kind: "tag", seq: 8 });
              c.fetchDone({ epoch: "e2", seq: 100 });
              results.behindAfterOtherEpoch = c.behind;
              c.fetchStarted();
              c.notice({ kind: "resync" });
              c.fetchDone({ epoch: "e1", seq: 100 });
              results.behindAfterResync = c.behind;
              const noticed = c.fetchStarted();
              c.fetchFailed(noticed);
              results.behindAfterFailure = c.behind;
              c.streamOpened("e3");
              results.oldEpochNotice = c.notice({ kind: "update", seq: 1 });
              results.mark = parseMark("e1/42");
              results.badMark = parseMark("42");
              results.common = commonMark([parseMark("e1/9"), parseMark("e1/7"), parseMark("e1/8")]);
              results.mixed = commonMark([parseMark("e1/9"), parseMark("e2/7")]);
              results.missing = commonMark([parseMark("e1/9"), null]);
              done(results);
            }, (err) => done({ error: String(err) }));"#,
            vec![],
        )
        .await;
    assert_eq!(
        outcome,
        json!({
            "coveredNotice": false, "newerNotice": true, "duringFetch": true,
            "behindAfterCoveringFetch": false, "behindAfterOtherEpoch": true,
            "behindAfterResync": true, "behindAfterFailure": true, "oldEpochNotice": true,
            "mark": { "epoch": "e1", "seq": 42 }, "badMark": null,
            "common": { "epoch": "e1", "seq": 7 }, "mixed": null, "missing": null,
        })
    );
}

/// Where the change stream cannot be had (a buffering proxy, an old browser), the page polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn without_the_change_stream_polling_keeps_the_page_live() {
    let Some(page) = page_with(NO_EVENT_SOURCE, 1).await else { return };
    assert_eq!(page.execute("return 'EventSource' in window", vec![]).await, false);
    page.wait_title("Diun Dashboard (1)").await;

    page.webhook(&varied_events()[1]).await;
    page.card(HASS).await;
    page.wait_for(&testid("toast")).await;
    page.wait_title("Diun Dashboard (2)").await;
    page.assert_no_console_errors().await;
}

/// A change stream that cannot open (a proxy refusing it) leaves the page "Live · polling", and
/// the status region, which a screen reader follows, says "Live" all the same: it spoke up at
/// every switch between push and polling, with nothing for its user to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn polling_is_shown_but_not_announced() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.before_scripts(
        "window.EventSource = class extends window.EventSource {
           constructor(url, options) { super('api/no-stream-here', options); }
         };",
    )
    .await;
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    let status = "const el = document.getElementById('live-status');
         const spoken = el.cloneNode(true);
         spoken.querySelectorAll('[aria-hidden=true], [hidden]').forEach((x) => x.remove());
         const shown = [...el.querySelectorAll('.live-text')].filter((x) => !x.hidden).map((x) => x.textContent).join(' ');
         return [spoken.textContent.trim(), shown];";
    page.wait_until("the page polling, and saying so", async || {
        (page.execute(status, vec![]).await == json!(["Live", "Live · polling"])).then_some(())
    })
    .await;
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// One image on three hosts: the card names each host with its containers, acknowledged too;
/// once reported anew by one host, only that host. The host filter offers every host in view and keeps
/// the images any of whose hosts is the chosen one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn every_host_reporting_an_image_is_on_its_card() {
    let Some(page) = Page::start(1280, 1400).await else { return };
    let varied = varied_events();
    seed(
        &page,
        &[
            docker(NGINX, "nas", "web", ""),
            docker(NGINX, "edge", "proxy,/proxy-2", ""),
            docker(NGINX, "pi", "nginx", ""),
            varied[1].clone(), // home-assistant on pi
            varied[2].clone(), // prometheus on k8s-node-1
        ],
    )
    .await;
    page.open().await;

    let hosts = page.card_hosts(NGINX).await.expect("the nginx card");
    assert_eq!(hosts["count"], "3", "{hosts:#}");
    assert_eq!(
        hosts["items"],
        json!([
            { "hostname": "edge", "host": "edge", "place": "proxy, proxy-2" },
            { "hostname": "nas", "host": "nas", "place": "web" },
            { "hostname": "pi", "host": "pi", "place": "nginx" },
        ]),
        "{hosts:#}"
    );
    assert_eq!(hosts["container_rows"], 0, "no single-host container rows beside the list: {hosts:#}");
    // A card with one host keeps the single-host rows.
    let hass = page.card_hosts(HASS).await.expect("the home-assistant card");
    assert_eq!((&hass["count"], &hass["hosts"]), (&Value::Null, &json!(["pi"])), "{hass:#}");
    assert_eq!(hass["container"], "homeassistant", "{hass:#}");

    // The host filter: every host, and an image matches when any of its hosts is the one chosen.
    assert_eq!(page.labels("filter-host").await, ["All", "edge", "k8s-node-1", "nas", "pi"]);
    page.choose_labelled("filter-host", "pi").await;
    page.wait_shown(&[NGINX, HASS], "the images on pi").await;
    page.choose_labelled("filter-host", "edge").await;
    page.wait_shown(&[NGINX], "the images on edge").await;
    page.choose_labelled("filter-host", "k8s-node-1").await;
    page.wait_shown(&[PROMETHEUS], "the images on k8s-node-1").await;
    page.choose("filter-host", "all").await;
    page.wait_shown(&[NGINX, HASS, PROMETHEUS], "every image").await;

    // Acknowledged, the card still lists the three hosts, also once the page has read them
    // anew (a change it is told of: another image's report); the host filter still has edge.
    page.card(NGINX).await.get("ack").await.click().await;
    page.wait_state(NGINX, "acknowledged").await;
    page.wait_api("nginx acknowledged on the server", |u| u[NGINX]["acknowledged"] == true).await;
    page.webhook(&docker(JELLYFIN, "edge", "media", "")).await;
    page.wait_shown(&[NGINX, HASS, PROMETHEUS, JELLYFIN], "jellyfin's card").await;
    let settled = page.card_hosts(NGINX).await.expect("the nginx card");
    assert_eq!((&settled["count"], &settled["items"]), (&hosts["count"], &hosts["items"]), "{settled:#}");
    page.choose_labelled("filter-host", "edge").await;
    page.wait_shown(&[NGINX, JELLYFIN], "the images on edge, nginx acknowledged").await;
    page.choose("filter-host", "all").await;

    // Reported again by nas only: the card lists nas alone.
    page.webhook(&docker(NGINX, "nas", "web", "")).await;
    page.wait_state(NGINX, "pending").await;
    let hosts = page
        .wait_until("the nginx card to list nas alone", async || {
            let hosts = page.card_hosts(NGINX).await?;
            (hosts["hosts"] == json!(["nas"])).then_some(hosts)
        })
        .await;
    assert_eq!(hosts["count"], Value::Null, "one host: no host list: {hosts:#}");
    assert_eq!(hosts["container"], "web", "{hosts:#}");
    page.choose_labelled("filter-host", "edge").await;
    page.wait_shown(&[JELLYFIN], "the images on edge after nginx was reported by nas alone").await;
    page.choose_labelled("filter-host", "pi").await;
    page.wait_shown(&[HASS], "the images on pi after nginx was reported by nas alone").await;
    page.choose_labelled("filter-host", "nas").await;
    page.wait_shown(&[NGINX], "the images on nas").await;

    // A host may be named "all", and is then filtered for like any other.
    page.choose("filter-host", "all").await;
    page.webhook(&docker(VAULTWARDEN, "all", "vault", "")).await;
    page.wait_shown(&[NGINX, HASS, PROMETHEUS, JELLYFIN, VAULTWARDEN], "every image").await;
    let labels = page.labels("filter-host").await;
    assert_eq!(
        labels,
        ["All", "all", "edge", "k8s-node-1", "nas", "pi"],
        "the host named all among the hosts"
    );
    page.choose_labelled("filter-host", "all").await;
    page.wait_shown(&[VAULTWARDEN], "the images on the host named all").await;
    page.assert_no_console_errors().await;
}

/// An acknowledgement covers every pending report of the image, older pages' included: an open
/// history that loaded them shows them all acknowledged, not only the newest page it reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn an_acknowledgement_settles_every_loaded_page_of_an_open_history() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    for i in 0..53 {
        page.webhook(&docker(NGINX, if i % 2 == 0 { "nas" } else { "edge" }, "web", "")).await;
    }
    page.open().await;
    page.card(NGINX).await.get("history-open").await.click().await;
    page.wait_until("the first page of history", async || {
        (page.find_all(&testid("history-event")).await.len() == 50).then_some(())
    })
    .await;
    page.wait_for(&testid("history-more")).await.click().await;
    page.wait_until("the older events", async || {
        (page.find_all(&testid("history-event")).await.len() == 53).then_some(())
    })
    .await;
    page.acknowledge(NGINX).await;
    page.wait_until("every loaded report to show as acknowledged", async || {
        let groups = page.history_groups().await;
        let events: Vec<&Value> =
            groups.iter().flat_map(|g| g["events"].as_array().unwrap().iter()).collect();
        (events.len() == 53 && events.iter().all(|event| event["acknowledged"] == "true")).then_some(())
    })
    .await;
    page.assert_no_console_errors().await;
}

/// "Load older" going away under the keyboard's focus (the image removed on another page) leaves
/// the focus in the dialog, not on the page's <body> behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn load_older_going_away_under_the_focus_leaves_it_in_the_history() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    for _ in 0..51 {
        page.webhook(&docker(NGINX, "nas", "web", "")).await;
    }
    page.open().await;
    page.card(NGINX).await.get("history-open").await.click().await;
    let more = page.wait_for(&testid("history-more")).await;
    page.execute("arguments[0].focus()", vec![more.json()]).await;
    let path = format!("/api/updates/{}", percent_encode(NGINX));
    assert_eq!(page.api("DELETE", &path, None).await.status, 204);
    page.wait_gone(&card_css(NGINX)).await;
    page.wait_until("Load older gone", async || {
        let hidden = "return document.getElementById('history-foot').hidden";
        (page.execute(hidden, vec![]).await == json!(true)).then_some(())
    })
    .await;
    let focus = page
        .execute(
            "return document.getElementById('history-dialog').contains(document.activeElement) ? document.activeElement.id : 'out: ' + document.activeElement.tagName",
            vec![],
        )
        .await;
    assert_eq!(focus, json!("history-close"), "the focus stays in the dialog");
    page.assert_no_console_errors().await;
}

/// The history dialog: newest first, in runs of one digest (the current one marked), a page at a
/// time; Esc closes it and gives the focus back to the card's History button.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn history_dialog_lists_reports_by_digest_a_page_at_a_time() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    let old = format!("sha256:{}", "a1".repeat(32));
    let new = format!("sha256:{}", "b2".repeat(32));
    let report = |host: &str, digest: &str| {
        let mut event = docker(NGINX, host, "web", "");
        event["digest"] = json!(digest);
        event
    };
    // 51 reports of the old digest, alternately from nas and edge, all acknowledged; then the new
    // digest from pi and nas, pending. 53 in all: more than one page of 50.
    for i in 0..51 {
        page.webhook(&report(if i % 2 == 0 { "nas" } else { "edge" }, &old)).await;
    }
    page.acknowledge(NGINX).await;
    page.webhook(&report("pi", &new)).await;
    page.webhook(&report("nas", &new)).await;
    page.webhook(&varied_events()[1]).await; // another card, another history
    let stored =
        page.api("GET", &format!("/api/updates/{}/history?limit=500", percent_encode(NGINX)), None).await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    let ids: Vec<i64> =
        stored.json()["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 53);
    page.open().await;

    page.card(NGINX).await.get("history-open").await.click().await;
    let dialog = page.wait_for(&testid("history-dialog")).await;
    assert!(dialog.attr("open").await.is_some(), "a modal dialog");
    let inside = page
        .execute(
            "return document.querySelector('[data-testid=\"history-dialog\"]').contains(document.activeElement)",
            vec![],
        )
        .await;
    assert_eq!(inside, true, "the focus moves into the dialog");
    page.wait_until("the first page of history", async || {
        (page.find_all(&testid("history-event")).await.len() == 50).then_some(())
    })
    .await;

    let shown_ids = |groups: &[Value]| -> Vec<i64> {
        groups
            .iter()
            .flat_map(|g| g["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()))
            .collect()
    };
    let check_groups = |groups: &[Value], old_count: usize| {
        assert_eq!(groups.len(), 2, "two runs of one digest: {groups:#?}");
        assert_eq!((&groups[0]["digest"], &groups[0]["current"]), (&json!(new), &json!("true")));
        assert_eq!((&groups[1]["digest"], &groups[1]["current"]), (&json!(old), &json!("false")));
        let newest = groups[0]["events"].as_array().unwrap();
        let hosts: Vec<&str> = newest.iter().map(|e| e["hostname"].as_str().unwrap()).collect();
        assert_eq!(hosts, ["nas", "pi"], "the new digest, newest first");
        for event in newest {
            assert_eq!(event["digest"], new, "{event}");
            assert_eq!(event["host"], event["hostname"], "{event}");
            assert_eq!(event["acknowledged"], "false", "{event}");
            assert_eq!(event["acknowledged_shown"], false, "{event}");
            assert_eq!(event["short"], "sha256:b2b2b2b2b2b2…", "{event}");
            assert_eq!(event["title"], new, "the full digest on hover: {event}");
        }
        let older = groups[1]["events"].as_array().unwrap();
        assert_eq!(older.len(), old_count);
        for (k, event) in older.iter().enumerate() {
            // The old reports, newest (the 51st, from nas) first.
            let host = if (50 - k) % 2 == 0 { "nas" } else { "edge" };
            assert_eq!((&event["hostname"], &event["host"]), (&json!(host), &json!(host)), "{event}");
            assert_eq!(event["digest"], old, "{event}");
            assert_eq!(event["acknowledged"], "true", "{event}");
            assert_eq!(event["acknowledged_shown"], true, "{event}");
        }
    };
    let groups = page.history_groups().await;
    check_groups(&groups, 48);
    assert_eq!(shown_ids(&groups), ids[..50], "the newest 50, newest first");
    let summary = page.by_testid("history-summary").await.text_content().await;
    assert_eq!(summary, "50 events loaded · 2 digests · 3 hosts");

    // Load older: the rest, and the button goes.
    page.wait_for(&testid("history-more")).await.click().await;
    page.wait_until("the older events", async || {
        (page.find_all(&testid("history-event")).await.len() == 53).then_some(())
    })
    .await;
    page.wait_gone(&testid("history-more")).await;
    let groups = page.history_groups().await;
    check_groups(&groups, 51);
    assert_eq!(shown_ids(&groups), ids, "every event, newest first");
    let summary = page.by_testid("history-summary").await.text_content().await;
    assert_eq!(summary, "53 events · 2 digests · 3 hosts");
    // The focus is on the first older event: Tab goes on to what follows the list, Shift+Tab
    // back to the list, not round to the dialog's other end.
    assert_eq!(page.active().await.attr("data-testid").await.as_deref(), Some("history-event"));
    page.press(keys::TAB).await;
    assert_eq!(page.active().await.attr("data-testid").await.as_deref(), Some("history-remove"));
    page.execute("document.querySelectorAll('[data-testid=\"history-event\"]')[50].focus()", vec![]).await;
    page.active().await.send_keys(keys::SHIFT_TAB).await;
    assert_eq!(page.active().await.attr("data-testid").await.as_deref(), Some("history-list"));

    // Esc closes; the focus returns to the card's History button.
    page.active().await.send_keys(keys::ESCAPE).await;
    page.wait_gone(&testid("history-dialog")).await;
    assert!(dialog.attr("open").await.is_none());
    page.wait_until("the focus back on nginx's History button", async || {
        (page.focus().await == (Some("history-open".to_string()), Some(NGINX.to_string()))).then_some(())
    })
    .await;
    page.assert_no_console_errors().await;
}

/// A container that is gone: its image is removed at the foot of its History, once confirmed
/// (Escape and Cancel take the question back, the dialog staying open). The card goes, the focus
/// goes to the next card, the server forgets the image, and DIUN's next report brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_gone_image_is_removed_from_its_history() {
    let Some(page) = page_with("", 3).await else { return };
    let focus_on = async |what: &str, testid: &str| {
        page.wait_until(what, async || (page.focus().await.0.as_deref() == Some(testid)).then_some(())).await
    };
    page.card(HASS).await.get("history-open").await.click().await;
    page.wait_for(&testid("history-dialog")).await;
    for take_back in [keys::ESCAPE, keys::ENTER] {
        page.wait_for(&testid("history-remove")).await.click().await;
        focus_on("the focus on Cancel", "history-remove-cancel").await;
        let question = page.by_testid("history-remove-row").await.text_content().await;
        let question = question.replace(['\u{2068}', '\u{2069}'], "");
        assert!(question.contains("Remove home-assistant:2024.5.4 from the dashboard"), "{question}");
        // Escape, or Enter on the focused Cancel.
        page.active().await.send_keys(take_back).await;
        focus_on("the focus back on Remove", "history-remove").await;
        page.wait_gone(&testid("history-remove-row")).await;
        assert!(page.by_testid("history-dialog").await.attr("open").await.is_some(), "the dialog stays open");
    }
    assert!(page.updates().await.get(HASS).is_some(), "nothing removed yet");

    // A report that arrives while the question is open takes it back: the image is not gone.
    page.by_testid("history-remove").await.click().await;
    focus_on("the focus on Cancel", "history-remove-cancel").await;
    let mut reported_again = varied_events()[1].clone();
    reported_again["digest"] = json!(format!("sha256:{}", "c3".repeat(32)));
    page.webhook(&reported_again).await;
    page.wait_gone(&testid("history-remove-row")).await;
    focus_on("the focus back on Remove", "history-remove").await;
    page.wait_until("the new report in the history", async || {
        (page.find_all(&testid("history-event")).await.len() == 2).then_some(())
    })
    .await;

    page.by_testid("history-remove").await.click().await;
    page.wait_for(&testid("history-remove-confirm")).await.click().await;
    page.wait_gone(&testid("history-dialog")).await;
    page.wait_gone(&card_css(HASS)).await;
    // Newest first: Home Assistant (reported again), Prometheus, nginx. The focus goes on to
    // the next card.
    page.wait_until("the focus on Prometheus' card", async || {
        (page.focus().await == (Some("ack".to_string()), Some(PROMETHEUS.to_string()))).then_some(())
    })
    .await;
    page.wait_until("the removal on the server", async || {
        page.updates().await.get(HASS).is_none().then_some(())
    })
    .await;
    assert_eq!(page.by_testid("stat-total").await.text_content().await, "2");

    page.webhook(&varied_events()[1]).await;
    page.card(HASS).await;
    page.assert_no_console_errors().await;
}

/// A removal whose answer never comes back (its time runs out) is judged by what the server then
/// holds, as one answered 5xx: removed there, it is not said to have failed, nor the card put
/// back. Here the page's 30 s are 300 ms, and removals reach the server but are never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_removal_that_timed_out_is_judged_by_the_server() {
    let Some(page) = page_with(
        r#"AbortSignal.timeout = undefined;
        const realSetTimeout = window.setTimeout;
        window.setTimeout = (work, ms, ...rest) => realSetTimeout(work, ms === 30000 ? 300 : ms, ...rest);
        const realFetch = window.fetch;
        window.fetch = function (input, init) {
          if ((init?.method ?? "GET") !== "DELETE") return realFetch.call(this, input, { ...init, signal: undefined });
          // Aborted only once the server has answered: the removal is done when the page looks.
          const sent = realFetch.call(this, input, { ...init, signal: undefined });
          return new Promise((_, reject) => init?.signal?.addEventListener("abort", () =>
            sent.finally(() => reject(new DOMException("The operation was aborted.", "AbortError")))));
        };"#,
        3,
    )
    .await
    else {
        return;
    };
    page.card(HASS).await.get("history-open").await.click().await;
    page.wait_for(&testid("history-remove")).await.click().await;
    page.wait_for(&testid("history-remove-confirm")).await.click().await;
    page.wait_until("the removal announced", async || {
        let said = page.execute("return document.getElementById('announcer').textContent", vec![]).await;
        said.as_str().is_some_and(|text| text.starts_with("Removed")).then_some(())
    })
    .await;
    assert!(page.updates().await.get(HASS).is_none());
    assert!(
        page.find_all(&testid("error-banner")).await.is_empty(),
        "an error shown for a removal the server did"
    );
    assert!(page.find_all(&card_css(HASS)).await.is_empty(), "the card put back");
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// A history left open on an image removed elsewhere (another tab, curl) lets its events go and
/// says the image is not tracked, with nothing left to remove; reported again, the image's
/// history starts afresh, without the removed reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_history_open_on_an_image_removed_elsewhere_starts_afresh() {
    let Some(page) = Page::start(1280, 900).await else { return };
    let events = varied_events();
    seed(&page, &[events[0].clone(), events[1].clone(), events[0].clone()]).await;
    page.open().await;
    page.card(NGINX).await.get("history-open").await.click().await;
    page.wait_until("nginx's two reports", async || {
        (page.find_all(&testid("history-event")).await.len() == 2).then_some(())
    })
    .await;
    page.wait_for(&testid("history-remove")).await.click().await;
    page.wait_for(&testid("history-remove-cancel")).await;

    let removed = page.api("DELETE", &format!("/api/updates/{}", percent_encode(NGINX)), None).await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    page.wait_for(&testid("history-error")).await;
    let error = page.by_testid("history-error").await.text_content().await;
    assert!(error.contains("does not track this image"), "{error}");
    assert!(page.find_all(&testid("history-event")).await.is_empty(), "the removed reports are let go");
    page.wait_gone(&testid("history-remove-row")).await;
    assert!(page.find_all(&testid("history-remove")).await.is_empty(), "nothing left to remove");
    let focus = page.focus().await.0;
    assert_eq!(focus.as_deref(), Some("history-close"), "the focus stays in the dialog");

    page.webhook(&varied_events()[0]).await;
    page.wait_until("the new report alone", async || {
        (page.find_all(&testid("history-event")).await.len() == 1).then_some(())
    })
    .await;
    page.wait_for(&testid("history-remove")).await;
    assert!(page.find_all(&testid("history-error")).await.is_empty(), "{:?}", page.focus().await);

    // Removed again while one of its events has the focus: the focus stays in the dialog.
    page.execute("document.querySelector('[data-testid=\"history-event\"]').focus()", vec![]).await;
    assert_eq!(page.focus().await.0.as_deref(), Some("history-event"));
    let removed = page.api("DELETE", &format!("/api/updates/{}", percent_encode(NGINX)), None).await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    page.wait_until("the focus on the close button", async || {
        (page.focus().await.0.as_deref() == Some("history-close")).then_some(())
    })
    .await;
    assert!(page.find_all(&testid("history-event")).await.is_empty());
    // The 404s of the history of the image removed.
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// Holds back, once `window.holdHistory` is set, the answers of the history fetches sent from
/// then on (the server has answered; the page hears it at `window.releaseHistory()`), and
/// counts in `window.historyHandled` the held answers the page has read and acted on.
const HISTORY_ANSWERS_HELD_BACK: &str = r#"
(() => {
  const realFetch = window.fetch;
  const held = [];
  window.holdHistory = false;
  window.historyHandled = 0;
  window.historyHeld = () => held.length;
  window.releaseHistory = () => held.splice(0).forEach((release) => release());
  window.fetch = async function (input, init) {
    const hold = window.holdHistory && String(input).includes("/history");
    const answer = await realFetch.call(this, input, init);
    if (!hold) return answer;
    await new Promise((resolve) => held.push(resolve));
    const text = answer.text.bind(answer);
    // Read, then acted on in the page's own continuation: counted a task later.
    answer.text = async () => {
      const body = await text();
      setTimeout(() => window.historyHandled++, 0);
      return body;
    };
    return answer;
  };
})();
"#;

/// A page of history asked for before its image was removed elsewhere and answered after (the
/// server read it before the removal) does not bring the removed reports back into the dialog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_history_page_answered_after_its_image_was_removed_stays_out() {
    let Some(page) = Page::start(1280, 900).await else { return };
    let events = varied_events();
    seed(&page, &[events[0].clone(), events[1].clone()]).await;
    page.open().await;
    page.execute(HISTORY_ANSWERS_HELD_BACK, vec![]).await;
    page.card(NGINX).await.get("history-open").await.click().await;
    page.wait_until("nginx's report", async || {
        (page.find_all(&testid("history-event")).await.len() == 1).then_some(())
    })
    .await;
    // A new report: the dialog fetches its newest page again, and that answer is held.
    page.execute("window.holdHistory = true", vec![]).await;
    page.webhook(&events[0]).await;
    page.wait_until("the refresh held", async || {
        (page.execute("return window.historyHeld()", vec![]).await == json!(1)).then_some(())
    })
    .await;
    page.execute("window.holdHistory = false", vec![]).await;
    let removed = page.api("DELETE", &format!("/api/updates/{}", percent_encode(NGINX)), None).await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    page.wait_for(&testid("history-error")).await;
    assert!(page.find_all(&testid("history-event")).await.is_empty(), "the removed reports are let go");

    page.execute(
        "window.mostEvents = 0;
         new MutationObserver(() => {
           const shown = document.querySelectorAll('[data-testid=\"history-event\"]').length;
           window.mostEvents = Math.max(window.mostEvents, shown);
         }).observe(document.body, { childList: true, subtree: true });
         window.releaseHistory();",
        vec![],
    )
    .await;
    page.wait_until("the held answer handled", async || {
        (page.execute("return window.historyHandled", vec![]).await == json!(1)).then_some(())
    })
    .await;
    let most = page.execute("return window.mostEvents", vec![]).await;
    assert_eq!(most, json!(0), "the removed reports came back into the dialog");
    assert!(!page.by_testid("history-more").await.displayed().await, "nothing older to load");
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// Before any page script: polling timers (3 s, and the 60 s safety poll while the stream is open)
/// never fire; `window.__log` records, in order, every `change` event of every EventSource
/// (`["change", kind, image]`) and every fetch (`["fetch", url]`); `window.__inflight` counts the
/// fetches not answered yet. Whatever the page fetches then, a stream event made it.
const STREAM_ONLY: &str = r#"
(() => {
  const realSetTimeout = window.setTimeout;
  window.__pollTimers = 0;
  window.setTimeout = function (fn, ms, ...rest) {
    if (ms === 3000 || ms === 60000) {
      window.__pollTimers++;
      return realSetTimeout(() => {}, 2147483647);
    }
    return realSetTimeout(fn, ms, ...rest);
  };
  window.__log = [];
  window.__inflight = 0;
  const realFetch = window.fetch;
  window.fetch = function (...args) {
    window.__log.push(["fetch", String(args[0])]);
    window.__inflight++;
    return realFetch.apply(this, args).finally(() => window.__inflight--);
  };
  const RealEventSource = window.EventSource;
  window.EventSource = class extends RealEventSource {
    constructor(...args) {
      super(...args);
      this.addEventListener("change", (e) => {
        const change = JSON.parse(e.data);
        window.__log.push(["change", change.kind ?? null, change.image ?? null]);
      });
    }
  };
})();
"#;

/// Under STREAM_ONLY, waits until the first load and the refetch on the stream's opening are
/// done, after which nothing else is coming; the length of `window.__log` then.
async fn settled_under_stream_only(page: &Page) -> usize {
    page.wait_until("the page to settle", async || {
        let state = page
            .execute(
                r#"return [window.__inflight,
                           window.__log.filter(([what, url]) => what === "fetch" && url.endsWith("api/updates")).length,
                           window.__log.length];"#,
                vec![],
            )
            .await;
        (state[0] == 0 && state[1].as_i64() >= Some(2)).then(|| state[2].as_u64().unwrap() as usize)
    })
    .await
}

/// With the page open the change stream is the transport, and a webhook reaches the page through
/// it: polling is made impossible and the page is seen to fetch only after the stream announced
/// the change, so no timing needs to be measured (that is for benchmarks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_webhook_reaches_the_page_through_the_change_stream() {
    let Some(page) = page_with(STREAM_ONLY, 1).await else { return };
    page.wait_until("the change stream to be open", async || {
        let transport = page.live_status("data-transport").await;
        let state = page.live_status("data-state").await;
        (transport.as_deref() == Some("stream") && state.as_deref() == Some("live")).then_some(())
    })
    .await;
    let before = settled_under_stream_only(&page).await;
    // The page did schedule its polls (so the blocked delays are the real ones) and none ran.
    let timers = page.execute("return window.__pollTimers", vec![]).await;
    assert!(timers.as_i64().unwrap_or(0) >= 1, "no poll was scheduled with a 3 s or 60 s delay: {timers}");

    const KUMA: &str = "docker.io/louislam/uptime-kuma:1.23.13";
    page.webhook(&docker(KUMA, "nas", "uptime-kuma", "")).await;
    page.card(KUMA).await;
    page.wait_for(&testid("toast")).await;
    page.wait_title("Diun Dashboard (2)").await;
    let log = page.execute("return window.__log", vec![]).await;
    let since: Vec<Value> = log.as_array().unwrap()[before..].to_vec();
    assert_eq!(
        since.first(),
        Some(&json!(["change", "update", KUMA])),
        "the stream announced it first: {log:#}"
    );
    assert!(
        since.iter().any(|entry| entry[0] == "fetch" && entry[1].as_str().unwrap().ends_with("api/updates")),
        "then the page fetched the updates: {log:#}"
    );
    assert_eq!(page.live_status("data-transport").await.as_deref(), Some("stream"));
    page.assert_no_console_errors().await;
}

/// Before any page script, after STREAM_ONLY: every EventSource claims in its `hello` that the
/// server pings after 300 ms of quiet (the real one waits 15 s), and is pinged so;
/// `window.__silenceStreams()` makes the open ones deliver nothing more, as a connection that
/// died without a word (a laptop's sleep, a NAT that dropped it) would.
const SILENCEABLE_STREAM: &str = r#"
(() => {
  const streams = [];
  window.__streams = streams;
  window.EventSource = class extends window.EventSource {
    constructor(...args) {
      super(...args);
      streams.push(this);
    }
    addEventListener(type, listener, options) {
      if (type === "ping") (this.__pings ??= []).push(listener);
      super.addEventListener(type, (e) => {
        if (this.__silenced && type !== "error") return;
        if (type === "hello") {
          const hello = JSON.parse(e.data);
          hello.ping_ms = 300;
          e = new MessageEvent("hello", { data: JSON.stringify(hello) });
        }
        listener(e);
      }, options);
    }
  };
  setInterval(() => {
    for (const s of streams) {
      if (s.__silenced || s.readyState !== 1) continue;
      for (const ping of s.__pings ?? []) ping(new MessageEvent("ping", { data: "{}" }));
    }
  }, 100);
  window.__silenceStreams = () => streams.forEach((s) => (s.__silenced = true));
})();
"#;

/// A change stream that went silent without an error (no ping within a few of the intervals
/// `hello` named) is dropped and started again, and what it missed is fetched: the page once
/// said Live and showed nothing new until its 60 s safety poll. Polling is made impossible, so
/// only the new stream (or the fetch its loss starts) can bring the webhook in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_change_stream_gone_silent_is_started_again() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.before_scripts(STREAM_ONLY).await;
    page.before_scripts(SILENCEABLE_STREAM).await;
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    page.wait_live_status("data-transport", "stream").await;
    settled_under_stream_only(&page).await;
    // Pinged, a quiet stream is kept: twice the silence it is allowed, and still the first one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let streams = page.execute("return window.__streams.length", vec![]).await;
    assert_eq!(streams, json!(1), "a stream that hears its pings was started again");
    page.execute("window.__silenceStreams()", vec![]).await;

    const KUMA: &str = "docker.io/louislam/uptime-kuma:1.23.13";
    page.webhook(&docker(KUMA, "nas", "uptime-kuma", "")).await;
    page.card(KUMA).await;
    let streams = page.execute("return window.__streams.map((s) => s.readyState)", vec![]).await;
    let states = streams.as_array().unwrap();
    assert!(
        states.len() >= 2 && states[0] == 2,
        "the silent stream was closed and another started: {streams}"
    );
    page.wait_live_status("data-transport", "stream").await;
    page.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn no_horizontal_scroll_on_a_phone_or_a_wide_screen() {
    let Some(page) = Page::start(375, 812).await else { return };
    let mut events = varied_events();
    let long = "registry.example.internal:5000/a-rather-long-organisation-name/an-extraordinarily-long-image-name-that-goes-on:2024.05.14-build.1234567890";
    events.push(docker(
        long,
        "a-very-long-host-name.in.a.deeply.nested.domain.example",
        "container-with-a-long-name,second-one,third-one",
        "",
    ));
    events.push(event(
        "docker.io/library/alpine@sha256:0f5e9b5a2b5d4f8e6c1a3b7d9e2f4a6c8b0d1e3f5a7c9b2d4e6f8a0c1b3d5e7f",
        "file",
        "nas",
        "new",
        "",
        Value::Null,
    ));
    seed(&page, &events).await;
    let tag = page.create_tag(&"a group with a very long name ".repeat(3)).await;
    page.assign(NGINX, tag).await;
    page.open().await;
    let size = page.execute("return [innerWidth, innerHeight]", vec![]).await;
    assert_eq!(size, json!([375, 812]), "the viewport is phone-sized");
    page.assert_no_horizontal_scroll("375 px").await;

    // With the move menu open on the last card, still nothing sticks out.
    let last = page.card(long).await;
    last.get("move-menu").await.click().await;
    page.wait_for(&testid("move-options")).await;
    page.assert_no_horizontal_scroll("375 px with the move menu open").await;
    page.by_testid("search").await.click().await;
    page.wait_gone(&testid("move-options")).await;

    // A toast on a phone fits too.
    page.webhook(&docker("docker.io/library/redis:7.2.5", "nas", "redis", "")).await;
    page.wait_for(&testid("toast")).await;
    page.assert_no_horizontal_scroll("375 px with a toast").await;

    page.set_viewport(1440, 900).await;
    page.wait_until("the window to be 1440 px wide", async || {
        (page.execute("return window.innerWidth", vec![]).await == 1440).then_some(())
    })
    .await;
    page.assert_no_horizontal_scroll("1440 px").await;
    page.assert_no_console_errors().await;
}

/// On a phone the first card is on the first screen: the boxes behind the search fold away
/// behind a toggle that counts the ones applied (here one from the address), "New group" stays;
/// a wide window shows them all, with no toggle; a window narrowed while a box has the focus
/// keeps the box.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn on_a_phone_the_filters_fold_behind_a_toggle_that_counts_them() {
    let Some(page) = Page::start(375, 812).await else { return };
    seed(&page, &varied_events()).await;
    page.goto(&page.url("/?status=pending")).await;
    page.wait_loaded().await;
    let toggle = page.by_testid("filters-toggle").await;
    let count = page.by_testid("filters-count").await;
    let status = page.by_testid("filter-status").await;
    assert!(toggle.displayed().await);
    assert_eq!(toggle.attr("aria-expanded").await.as_deref(), Some("false"));
    assert!(!status.displayed().await, "folded away");
    assert!(page.by_testid("new-group-name").await.displayed().await, "not behind a button called Filters");
    let search_room = page
        .execute(
            "const box = document.getElementById('search');
             const style = getComputedStyle(box);
             const pen = document.createElement('canvas').getContext('2d');
             pen.font = style.font;
             const room = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
             return [box.placeholder, room - pen.measureText(box.placeholder).width];",
            vec![],
        )
        .await;
    assert!(
        search_room[1].as_f64().is_some_and(|room| room >= 0.0),
        "the search's hint is cut: {search_room}"
    );
    assert_eq!(
        (count.displayed().await, count.text().await),
        (true, "1".to_string()),
        "the address's status"
    );
    assert_eq!(toggle.attr("aria-label").await.as_deref(), Some("Filters, 1 applied"));
    let first_card_top = page
        .execute(
            "return document.querySelector('[data-testid=\"card\"]').getBoundingClientRect().top",
            vec![],
        )
        .await;
    assert!(
        first_card_top.as_f64().is_some_and(|top| top < 812.0 - 100.0),
        "a card on the first screen: {first_card_top}"
    );

    toggle.click().await;
    assert_eq!(toggle.attr("aria-expanded").await.as_deref(), Some("true"));
    assert!(status.displayed().await, "unfolded");
    page.choose("filter-host", "host:nas").await;
    page.choose("sort", "name").await;
    page.wait_until("three applied", async || (count.text().await == "3").then_some(())).await;
    for (id, default) in [("filter-status", "all"), ("filter-host", "all"), ("sort", "newest")] {
        page.choose(id, default).await;
    }
    page.wait_until("none applied", async || (!count.displayed().await).then_some(())).await;
    assert_eq!(toggle.attr("aria-label").await.as_deref(), Some("Filters"));
    toggle.click().await;
    assert!(!status.displayed().await, "folded again");

    let resize = async |width: u32, height: u32| {
        page.set_viewport(width, height).await;
        page.wait_until(&format!("a window {width} px wide"), async || {
            (page.execute("return window.innerWidth", vec![]).await == width).then_some(())
        })
        .await;
    };
    resize(1280, 900).await;
    assert!(!toggle.displayed().await, "no toggle where everything fits");
    assert!(status.displayed().await, "everything shown");
    page.execute("document.querySelector('[data-testid=\"filter-status\"]').focus()", vec![]).await;
    resize(375, 812).await;
    page.wait_until("the focused box kept", async || status.displayed().await.then_some(())).await;
    assert_eq!(toggle.attr("aria-expanded").await.as_deref(), Some("true"));
    page.assert_no_console_errors().await;
}

/// A touch screen has no hover for a time's exact title: a tap writes the exact time in its
/// place and another the relative one again; elsewhere a click changes nothing (a mouse has the
/// title). Nor has it, as a rule, a keyboard: the footer's list of keys goes, not their switch.
/// A swipe on a dialog does not scroll the page behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn on_a_touch_screen_a_tap_on_a_time_writes_it_out() {
    let Some(page) = Page::start(375, 812).await else { return };
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    let image = page.images().await.remove(0);
    let time = async || page.card(&image).await.get("card-received").await.find("time").await.unwrap();
    time().await.click().await;
    assert_eq!(time().await.text().await, "just now", "no touch screen");
    let shortcuts = page.by_testid("shortcuts-keys").await;
    assert!(shortcuts.displayed().await, "the keyboard's line, with a mouse");

    page.cdp("Emulation.setTouchEmulationEnabled", json!({ "enabled": true, "maxTouchPoints": 1 })).await;
    page.wait_until("no hover", async || {
        (page.execute("return matchMedia('(hover: none) and (pointer: coarse)').matches", vec![]).await
            == json!(true))
        .then_some(())
    })
    .await;
    assert!(!shortcuts.displayed().await, "no list of keys on a touch screen");
    assert!(page.by_testid("shortcuts-toggle").await.displayed().await, "their switch stays");
    time().await.click().await;
    let year = page.execute("return String(new Date().getFullYear())", vec![]).await;
    let written = time().await.text().await;
    assert!(written.contains(year.as_str().unwrap()) && written.contains(':'), "the exact time: {written}");
    time().await.click().await;
    assert_eq!(time().await.text().await, "just now", "tapped again");
    // A swipe on a dialog does not scroll the page behind it.
    let page_scrolls = async || {
        page.execute("return getComputedStyle(document.documentElement).overflowY", vec![]).await
            != json!("hidden")
    };
    assert!(page_scrolls().await);
    page.card(&image).await.get("history-open").await.click().await;
    page.wait_for(&format!("{}[open]", testid("history-dialog"))).await;
    assert!(!page_scrolls().await, "the page behind the dialog holds still");
    page.by_testid("history-close").await.click().await;
    page.wait_until("the dialog closed", async || page_scrolls().await.then_some(())).await;
    page.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn the_empty_state_explains_how_to_point_diun_here() {
    let Some(page) = Page::start(375, 812).await else { return };
    page.open().await;
    let empty = page.wait_for(&testid("empty-state")).await;
    let snippet = empty.get("diun-snippet").await.text_content().await;
    let endpoint = page.url("/webhook");
    for needle in ["notif:", "webhook:", &format!("endpoint: {endpoint}"), "method: POST", "authorization"] {
        assert!(snippet.contains(needle), "the snippet lacks {needle:?}: {snippet}");
    }
    // Opened on 127.0.0.1, the page says that a containerised DIUN cannot use that address.
    let hint = empty.get("loopback-hint").await.text_content().await;
    assert!(hint.contains("cannot reach") && hint.contains("diun-dashboard:8080"), "{hint}");
    assert!(page.find(&testid("card")).await.is_none());
    assert_eq!(page.by_testid("pending-badge").await.text_content().await, "0");
    assert_eq!(page.title().await, "Diun Dashboard");
    assert!(!page.by_testid("dismiss-all").await.enabled().await);
    page.assert_no_horizontal_scroll("empty state at 375 px").await;

    // The first event replaces it, without a reload.
    page.webhook(&docker(NGINX, "nas", "web", "")).await;
    page.card(NGINX).await;
    page.wait_gone(&testid("empty-state")).await;
    page.wait_title("Diun Dashboard (1)").await;
    page.assert_no_console_errors().await;
}

/// DIUN set up wrongly (here with its default method, GET): the empty page says that a webhook
/// arrived and why it was refused, within the few seconds it asks; the first one stored
/// replaces the page with its card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn the_empty_state_says_why_a_webhook_was_refused() {
    let Some(page) = Page::start(375, 812).await else { return };
    page.open().await;
    page.wait_for(&testid("empty-state")).await;
    page.wait_gone(&testid("refused-webhook")).await;
    assert_eq!(page.api("GET", "/webhook", None).await.status, 405);
    let notice = page.wait_for(&testid("refused-webhook")).await;
    let text = notice.text_content().await;
    assert!(text.contains("A webhook arrived") && text.contains("refused (405)"), "{text}");
    assert!(text.contains("method: POST") && text.contains("diun notif test"), "what to fix: {text}");
    page.wait_until("the refusal said once", async || {
        let said = page.execute("return document.getElementById('announcer').textContent", vec![]).await;
        said.as_str().is_some_and(|text| text.starts_with("A webhook was refused (405)")).then_some(())
    })
    .await;
    // Said once: the next checks (every 5 s) find nothing newer to say.
    page.execute("document.getElementById('announcer').textContent = ''", vec![]).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let said = page.execute("return document.getElementById('announcer').textContent", vec![]).await;
    assert_eq!(said, json!(""), "the refusal said again");
    // A later one replaces it; a long word in it wraps rather than widening the page.
    let mut unreadable = docker(NGINX, "nas", "web", "");
    unreadable["created"] = json!("9".repeat(180));
    let refused = page.api("POST", "/webhook", Some(unreadable)).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    page.wait_until("the later refusal", async || {
        let text = page.by_testid("refused-webhook").await.text_content().await;
        text.contains("refused (400)").then_some(())
    })
    .await;
    page.assert_no_horizontal_scroll("the refusal at 375 px").await;

    page.webhook(&docker(NGINX, "nas", "web", "")).await;
    page.card(NGINX).await;
    page.wait_gone(&testid("empty-state")).await;

    // The last image removed, the empty page is back without the refusals that came before the
    // report it showed, after the next check (every 5 s) too.
    let removed = page.api("DELETE", &format!("/api/updates/{}", percent_encode(NGINX)), None).await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    page.wait_for(&testid("empty-state")).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!page.by_testid("refused-webhook").await.displayed().await, "a stale refusal shown");
    page.assert_no_console_errors().await;
}

/// Beside cards, a POST refused after the newest report (a secret changed on one side) shows an
/// error banner: asked after the page's first snapshot, then once a minute (the page's clock is
/// moved on here, as waiting a minute would slow the suite). One older than a report is stale;
/// a closed banner stays closed; a scanner's GET raises none and hides none; DIUN getting
/// through again takes it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_webhook_refused_beside_cards_shows_a_banner_until_diun_gets_through() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.before_scripts(
        "const sinceLoad = performance.now.bind(performance);
         window.skipped = 0;
         performance.now = () => sinceLoad() + window.skipped;",
    )
    .await;
    let refuse = async |body: &str| {
        let response = page.service.request("POST", "/webhook").body(body.to_string()).send().await;
        assert_eq!(response.status, 400, "{}", response.text());
    };
    // The next minute's check, and the 5 s tick that runs it.
    let a_minute_later = async || {
        page.execute("window.skipped += 61000", vec![]).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
    };
    page.webhook(&docker(NGINX, "nas", "web", "")).await;
    refuse("{not json").await;
    page.webhook(&docker(HASS, "nas", "home", "")).await;
    page.open().await;
    page.card(HASS).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(page.find(&testid("error-banner")).await.is_none(), "a refusal before a report shown");

    refuse("[]").await;
    a_minute_later().await;
    let banner = page.wait_for(&testid("error-banner")).await;
    let text = banner.text_content().await;
    assert!(text.contains("refused (400)") && text.contains("may be missing"), "{text}");
    page.by_testid("error-dismiss").await.click().await;
    page.wait_gone(&testid("error-banner")).await;
    a_minute_later().await;
    assert!(page.find(&testid("error-banner")).await.is_none(), "a closed banner back");

    // A page opened afresh asks after its first snapshot; a GET since hides nothing.
    assert_eq!(page.api("GET", "/webhook", None).await.status, 405);
    page.open().await;
    let banner = page.wait_for(&testid("error-banner")).await;
    assert!(banner.text_content().await.contains("refused (400)"), "the GET's refusal shown");
    assert_eq!(page.api("GET", "/webhook", None).await.status, 405);
    a_minute_later().await;
    assert_eq!(page.find_all(&testid("error-banner")).await.len(), 1);
    assert!(page.by_testid("error-banner").await.text_content().await.contains("refused (400)"));

    let mut newer = docker(NGINX, "nas", "web", "");
    newer["digest"] = json!(format!("sha256:{}", "b".repeat(64)));
    page.webhook(&newer).await;
    page.wait_gone(&testid("error-banner")).await;
    page.assert_no_console_errors().await;
}

/// On a phone, the banners kept in view take at most 40% of the screen: past that they scroll
/// among themselves, the newest shown, and the page stays usable under them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn banners_on_a_phone_leave_most_of_the_screen() {
    let Some(page) = Page::start(375, 640).await else { return };
    seed(&page, &varied_events()).await;
    page.create_tag("prod").await;
    page.open().await;
    page.card(NGINX).await;
    // A group name taken already is refused with a banner, without a request: one per try.
    refuse_group_names(&page, &["prod"; 3]).await;
    let layout = page
        .execute(
            "const errors = document.getElementById('errors');
             const box = errors.getBoundingClientRect();
             const newest = errors.lastElementChild.getBoundingClientRect();
             return { height: box.height, screen: innerHeight, stacked: errors.scrollHeight,
                      newest_shown: newest.top >= box.top - 1 && newest.bottom <= box.bottom + 1 };",
            vec![],
        )
        .await;
    let (height, screen) = (layout["height"].as_f64().unwrap(), layout["screen"].as_f64().unwrap());
    assert!(height <= screen * 0.4 + 1.0, "the banners take {height} of {screen} px: {layout}");
    assert!(
        layout["stacked"].as_f64().unwrap() > height + 1.0,
        "nothing to scroll: the test shows nothing: {layout}"
    );
    assert_eq!(layout["newest_shown"], json!(true), "{layout}");
    page.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_failure_is_said_in_view_and_a_refresh_by_hand_shows_it_again() {
    // One card a row, so that the list is longer than the window.
    let Some(page) = Page::start(480, 640).await else { return };
    seed(&page, &varied_events()).await;
    page.open().await;
    page.card(NGINX).await;
    page.cdp("Network.enable", json!({})).await;
    page.cdp("Network.setBlockedURLs", json!({ "urls": ["*/api/updates*"] })).await;

    // An acknowledgement that fails far down the list: its banner is in view, not at the top of
    // the page, off-screen.
    let order = "return [...document.querySelectorAll('[data-testid=\"card\"]')].map(c => c.dataset.image)";
    let shown = page.execute(order, vec![]).await;
    let last = shown.as_array().and_then(|cards| cards.last()).and_then(Value::as_str).unwrap().to_string();
    page.execute("window.scrollTo(0, document.body.scrollHeight)", vec![]).await;
    page.card(&last).await.get("ack").await.click().await;
    let banner = page.wait_for(&testid("error-banner")).await;
    let scrolled = page.execute("return scrollY", vec![]).await;
    assert!(scrolled.as_f64().is_some_and(|y| y > 100.0), "the page is not scrolled down: {scrolled}");
    let in_view =
        "const box = arguments[0].getBoundingClientRect(); return box.top >= 0 && box.bottom <= innerHeight;";
    assert_eq!(page.execute(in_view, vec![banner.json()]).await, json!(true), "the banner is off-screen");
    // The action's own refresh failed too: a banner each.
    while let Some(close) = page.find(&testid("error-dismiss")).await {
        close.click().await;
    }
    page.wait_gone(&testid("error-banner")).await;

    // A refresh that fails shows its banner; closed, a refresh by hand shows it again.
    page.by_testid("refresh").await.click().await;
    page.wait_for(&testid("error-banner")).await;
    page.by_testid("error-dismiss").await.click().await;
    page.wait_gone(&testid("error-banner")).await;
    page.by_testid("refresh").await.click().await;
    let banner = page.wait_for(&testid("error-banner")).await;
    assert!(banner.text_content().await.contains("Could not load updates"));
    page.wait_until("the failure to be announced", async || {
        (page.wait_for("#announcer").await.text_content().await == "Refresh failed").then_some(())
    })
    .await;

    page.cdp("Network.setBlockedURLs", json!({ "urls": [] })).await;
    page.by_testid("refresh").await.click().await;
    page.wait_gone(&testid("error-banner")).await;
    page.wait_until("the refresh to be announced", async || {
        (page.wait_for("#announcer").await.text_content().await == "Refreshed").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn api_errors_show_a_banner_and_roll_back() {
    let Some(mut page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()[..2]).await;
    let ops = page.create_tag("ops").await;
    page.open().await;
    page.section(&ops.to_string()).await;

    // The server refuses a group name (a control character, U+0085): its message is shown.
    let input = page.by_testid("new-group-name").await;
    input.click().await;
    input.send_keys("night\u{85}shift").await;
    page.by_testid("new-group-submit").await.click().await;
    let banner = page.wait_for(&testid("error-banner")).await;
    assert_eq!(banner.attr("role").await.as_deref(), Some("alert"));
    let text = banner.text_content().await;
    assert!(text.contains("control characters"), "the banner gives the server's reason: {text:?}");
    assert_eq!(page.api("GET", "/api/tags", None).await.json().as_array().unwrap().len(), 1);
    page.by_testid("error-dismiss").await.click().await;
    page.wait_gone(&testid("error-banner")).await;
    input.clear().await;

    // A move whose request fails (blocked on its way): the card goes back where it was and an
    // error says what failed.
    page.cdp("Network.enable", json!({})).await;
    page.cdp("Network.setBlockedURLs", json!({ "urls": ["*/api/tag-assignments*"] })).await;
    page.card(NGINX).await.get("move-menu").await.click().await;
    page.wait_for(&format!(r#"{}[data-tag-id="{ops}"]"#, testid("move-option"))).await.click().await;
    let banner = page.wait_for(&testid("error-banner")).await;
    let text = banner.text_content().await;
    assert!(text.contains("nginx"), "the banner says what failed: {text:?}");
    page.wait_in_section(NGINX, "untagged").await;
    assert!(page.updates().await[NGINX]["tag"].is_null());
    page.cdp("Network.setBlockedURLs", json!({ "urls": [] })).await;
    page.by_testid("error-dismiss").await.click().await;
    page.wait_gone(&testid("error-banner")).await;

    // A duplicate group name is refused with a visible message, and nothing is created. A name
    // that differs only in case is another group, as on the server.
    input.click().await;
    input.send_keys("ops").await;
    page.by_testid("new-group-submit").await.click().await;
    page.wait_for(&testid("error-banner")).await;
    assert_eq!(page.api("GET", "/api/tags", None).await.json().as_array().unwrap().len(), 1);
    page.by_testid("error-dismiss").await.click().await;
    page.wait_gone(&testid("error-banner")).await;
    input.clear().await;
    input.send_keys("OPS").await;
    page.by_testid("new-group-submit").await.click().await;
    let created = page
        .wait_until("the group OPS to be created", async || {
            let tags = page.api("GET", "/api/tags", None).await.json();
            tags.as_array().unwrap().iter().find(|tag| tag["name"] == "OPS").map(|tag| tag["id"].clone())
        })
        .await;
    assert!(page.find(&testid("error-banner")).await.is_none(), "creating OPS beside ops was refused");
    assert_eq!(page.api("DELETE", &format!("/api/tags/{created}"), None).await.status, 204);
    input.clear().await;

    // The name's limit is the server's, 100 characters, emoji counting one each (an input's
    // maxlength would count two, and cut such a name at 50). Typed through the DevTools protocol:
    // chromedriver's keys cannot type emoji, and text set by script ignores maxlength.
    let type_name = async |name: &str| {
        input.clear().await;
        input.click().await;
        page.cdp("Input.insertText", json!({ "text": name })).await;
    };
    type_name(&"a".repeat(101)).await;
    page.by_testid("new-group-submit").await.click().await;
    page.wait_until("the length hint", async || {
        let hint = page.execute("return document.getElementById('new-group-hint').textContent", vec![]).await;
        hint.as_str().is_some_and(|hint| hint.contains("100 characters")).then_some(())
    })
    .await;
    // Said once. From the button, focus comes back to the field, which reads its description
    // (the hint); from the field itself (Enter), the page's announcer says it. A name taken
    // already, by its banner alone: the hint, a live region too, read it a second time.
    let live_regions_saying = async |what: &str| {
        let script = "return [...document.querySelectorAll('[aria-live], [role=alert], [role=status]')]
             .filter((el) => el.textContent.includes(arguments[0])).length;";
        page.execute(script, vec![json!(what)]).await
    };
    assert_eq!(page.active().await.attr("aria-describedby").await.as_deref(), Some("new-group-hint"));
    // The announcer speaks 50 ms after it is given a message: long enough to have spoken.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(live_regions_saying("100 characters").await, json!(0), "said twice");
    page.active().await.send_keys(keys::ENTER).await;
    page.wait_until("the length hint said", async || {
        (live_regions_saying("100 characters").await == json!(1)).then_some(())
    })
    .await;
    refuse_group_names(&page, &["ops"]).await;
    page.wait_until("the refusal said", async || {
        (live_regions_saying("already exists").await == json!(1)).then_some(())
    })
    .await;
    page.by_testid("error-dismiss").await.click().await;
    page.wait_gone(&testid("error-banner")).await;
    assert_eq!(page.api("GET", "/api/tags", None).await.json().as_array().unwrap().len(), 1);
    assert!(page.find(&testid("error-banner")).await.is_none(), "said without a failing request");
    let emoji = "😀".repeat(100);
    type_name(&emoji).await;
    page.by_testid("new-group-submit").await.click().await;
    let created = page
        .wait_until("the group of 100 emoji to be created", async || {
            let tags = page.api("GET", "/api/tags", None).await.json();
            tags.as_array()
                .unwrap()
                .iter()
                .find(|tag| tag["name"] == json!(emoji))
                .map(|tag| tag["id"].clone())
        })
        .await;
    assert_eq!(page.api("DELETE", &format!("/api/tags/{created}"), None).await.status, 204);

    // The server goes away: the poller says so (within a poll or two) and the live status turns
    // offline; an action meanwhile fails visibly and is rolled back.
    let addr = page.service.addr;
    page.service.child.kill().await.expect("stop the service");
    let banner = page.wait_for(&testid("error-banner")).await;
    assert!(!banner.text_content().await.is_empty());
    page.execute(r#"document.querySelector('#errors .alert[data-key="poll"]').dataset.first = "";"#, vec![])
        .await;
    page.wait_live_status("data-state", "offline").await;
    page.card(HASS).await.get("ack").await.click().await;
    page.wait_until("a second banner for the failed acknowledgement", async || {
        (page.find_all(&testid("error-banner")).await.len() >= 2).then_some(())
    })
    .await;
    page.wait_state(HASS, "pending").await;

    // The poller retries every 3 s: the outage stays one banner, the same one, not a new alert
    // (which screen readers would read out again) per attempt.
    let outage_banners = r#"return [document.querySelectorAll('#errors .alert[data-key="poll"]').length,
                                    document.querySelectorAll('#errors .alert[data-key="poll"][data-first]').length];"#;
    tokio::time::sleep(Duration::from_millis(7000)).await;
    assert_eq!(page.execute(outage_banners, vec![]).await, json!([1, 1]), "the outage banner was replaced");
    // Closed by the user, it stays closed while the outage lasts.
    page.execute(r#"document.querySelector('#errors .alert[data-key="poll"] button').click();"#, vec![])
        .await;
    tokio::time::sleep(Duration::from_millis(7000)).await;
    assert_eq!(
        page.execute(outage_banners, vec![]).await,
        json!([0, 0]),
        "the closed outage banner came back"
    );
    assert_eq!(page.live_status("data-state").await.as_deref(), Some("offline"));

    // Back on the same address: the outage banner clears by itself.
    let mut env = Page::env(&page.db);
    env.push(("PORT", addr.port().to_string()));
    env.push(("BIND", addr.ip().to_string()));
    let mut restarted = command(&env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("restart the service");
    page.wait_live_status("data-state", "live").await;
    page.wait_until("the outage banner to clear", async || {
        let mut texts = Vec::new();
        for banner in page.find_all(&testid("error-banner")).await {
            texts.push(banner.text_content().await);
        }
        (texts.len() == 1 && texts[0].contains("home-assistant")).then_some(())
    })
    .await;
    let _ = restarted.kill().await;

    // The only console errors are the failed requests themselves.
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// With the change stream open, the page only polls once a minute, as a safety net. A fetch that
/// fails meanwhile (here its requests are blocked, the stream stays up) must be retried at the
/// 3 s pace until one succeeds, or the error and "Offline" would stay for up to a minute after the
/// server is fine again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_failed_fetch_is_retried_soon_while_the_stream_is_open() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    page.card(NGINX).await;
    page.wait_live_status("data-transport", "stream").await;
    page.cdp("Network.enable", json!({})).await;
    page.cdp("Network.setBlockedURLs", json!({ "urls": ["*/api/updates"] })).await;
    // The stream announces the webhook; the refetch it starts fails.
    page.webhook(&docker(HASS, "pi", "homeassistant", "")).await;
    page.wait_for(&testid("error-banner")).await;
    assert_eq!(page.live_status("data-state").await.as_deref(), Some("offline"));
    page.cdp("Network.setBlockedURLs", json!({ "urls": [] })).await;
    // Within the wait's 10 s, which only the 3 s retry can meet (the safety poll is 60 s away).
    page.wait_gone(&testid("error-banner")).await;
    page.card(HASS).await;
    assert_eq!(page.live_status("data-state").await.as_deref(), Some("live"));
    // The way back is said (the outage was, by its alert); the status itself is no live region,
    // which said "Live" at every load.
    page.wait_said("Back online: the dashboard is live again.").await;
    assert_eq!(page.live_status("role").await, None);
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// Before any page script: the hidden tab's grace before its stream closes (10 s) and its title
/// check (every 30 s) take 200 ms, so that a test need not wait them out.
const HIDDEN_TIMERS_SHORT: &str = r#"
(() => {
  const realSetTimeout = window.setTimeout;
  window.setTimeout = function (fn, ms, ...rest) {
    return realSetTimeout(fn, ms === 10000 || ms === 30000 ? 200 : ms, ...rest);
  };
})();
"#;

/// Makes the page believe that its tab is hidden or shown, as when the user switches tabs (the
/// tab of a headless browser never is hidden).
const SET_HIDDEN: &str = r#"
const hidden = arguments[0];
Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (hidden ? "hidden" : "visible") });
document.dispatchEvent(new Event("visibilitychange"));
"#;

/// The `(N)` in the tab title is what a hidden tab shows of the page, so it stays current while
/// the tab is hidden and its stream closed; the cards catch up when it is shown again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_hidden_tab_keeps_the_pending_count_in_its_title() {
    let Some(page) = page_with(HIDDEN_TIMERS_SHORT, 1).await else { return };
    page.wait_title("Diun Dashboard (1)").await;
    page.execute(SET_HIDDEN, vec![json!(true)]).await;
    page.wait_live_status("data-state", "paused").await;
    page.webhook(&docker(HASS, "pi", "homeassistant", "")).await;
    page.wait_title("Diun Dashboard (2)").await;
    page.execute(SET_HIDDEN, vec![json!(false)]).await;
    page.card(HASS).await;
    page.wait_live_status("data-state", "live").await;
    page.assert_no_console_errors().await;
}

/// Before any page script: while `window.listingFrozen` is true, the page's listing requests are
/// answered with the last listing it had, as if no notice or poll had reached it yet; while
/// `window.listingFails` is true, they fail as behind a proxy whose upstream is down.
const LISTING_FROZEN: &str = r#"
(() => {
  const realFetch = window.fetch;
  let last = null;
  window.listingFrozen = false;
  window.listingFails = false;
  window.fetch = async function (input, init) {
    const listing = /api\/updates(\?|$)/.test(String(input)) && (init?.method ?? "GET") === "GET";
    if (!listing) return realFetch.call(this, input, init);
    if (window.listingFails) {
      return new Response('{"error":"bad gateway"}', { status: 502, headers: { "Content-Type": "application/json" } });
    }
    if (window.listingFrozen && last) return last.clone();
    const response = await realFetch.call(this, input, init);
    last = response.clone();
    return response;
  };
})();
"#;

/// Confirms what `confirm` (a CSS selector) shows as the page's listing catches up: the page did
/// not know of what arrived before, and learns of it only from the confirmation's own fetch.
async fn confirm_as_the_listing_thaws(page: &Page, confirm: &str) {
    page.execute(
        "window.listingFrozen = false; document.querySelector(arguments[0]).click();",
        vec![json!(confirm)],
    )
    .await;
}

/// "Dismiss all" confirmed right after a report arrived, before the page has heard of it (a
/// notice on its way, a poll 3 s apart): it asks again instead of dismissing what nobody saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn dismiss_all_never_dismisses_a_report_the_page_has_not_shown() {
    const KUMA: &str = "docker.io/louislam/uptime-kuma:1.23.13";
    let Some(page) = page_with(LISTING_FROZEN, 2).await else { return };
    page.wait_title("Diun Dashboard (2)").await;
    page.by_testid("dismiss-all").await.click().await;
    page.wait_for(&testid("confirm-dialog")).await;
    page.execute("window.listingFrozen = true", vec![]).await;
    page.webhook(&docker(KUMA, "nas", "uptime-kuma", "")).await;
    confirm_as_the_listing_thaws(&page, &testid("confirm-ok")).await;
    page.wait_until("the dialog to ask again", async || {
        let text = page.execute("return document.getElementById('confirm-text').textContent", vec![]).await;
        let open = page.by_testid("confirm-dialog").await.attr("open").await.is_some();
        (open && text.as_str().is_some_and(|text| text.contains("1 new update arrived while this was open")))
            .then_some(())
    })
    .await;
    assert_eq!(page.updates().await[KUMA]["acknowledged"], false, "dismissed before it was shown");

    // The listing cannot be had: nothing is dismissed, and the page says so.
    page.execute("window.listingFails = true", vec![]).await;
    page.by_testid("confirm-ok").await.click().await;
    wait_for_banner(&page, "Nothing was dismissed").await;
    assert_eq!(page.updates().await[KUMA]["acknowledged"], false, "dismissed without checking");
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// Before any page script: the page's requests of `method` whose URL matches the regular
/// expression `url` wait until `window.releaseHeld()`; `window.held` counts those waiting.
fn holding(method: &str, url: &str) -> String {
    format!(
        r#"(() => {{
  const realFetch = window.fetch;
  let release = null;
  const released = new Promise((resolve) => (release = resolve));
  window.held = 0;
  window.releaseHeld = () => release();
  window.fetch = async function (input, init) {{
    if (init?.method === "{method}" && /{url}/.test(String(input))) {{
      window.held += 1;
      await released;
    }}
    return realFetch.call(this, input, init);
  }};
}})();"#
    )
}

/// A script for `before_scripts`: the first `method` request whose address matches the regular
/// expression `url` is lost on the way (as a dropped connection: fetch rejects); the rest go.
fn losing_first(method: &str, url: &str) -> String {
    format!(
        r#"(() => {{
  const realFetch = window.fetch;
  let lost = false;
  window.fetch = function (input, init) {{
    if (!lost && init?.method === "{method}" && /{url}/.test(String(input))) {{
      lost = true;
      return Promise.reject(new TypeError("Failed to fetch"));
    }}
    return realFetch.call(this, input, init);
  }};
}})();"#
    )
}

/// Reports `image` anew while the page's dismissal is on its way (held), and waits for the page
/// to show the new report pending: the dismissal does not cover it, on the server or on the page
/// (which showed it dismissed until the request came back).
async fn report_anew_and_see_it_pending(page: &Page, image: &str, n: u32) {
    let before = page.card_received_at(image).await;
    page.webhook(&reported_anew(image, n)).await;
    page.wait_until(&format!("{image}'s new report shown pending"), async || {
        let card = page.card_info(image).await?;
        (page.card_received_at(image).await != before && card["state"] == "pending").then_some(())
    })
    .await;
}

/// The page's requests that dismiss many (all, or a group), held (see [`holding`]).
fn dismissals_held() -> String {
    holding("POST", r"api\/updates\/acknowledge-(all|by-tag)")
}

/// A report that reaches the server after the page's last check and before its dismissal of
/// many (all, or a group) stays pending: the request names the newest report the page showed.
/// (The page's check for new reports runs just before the request; a report in between was
/// once dismissed unseen.) While the request is on its way, the page shows such a report pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_report_arriving_just_before_a_dismissal_of_many_stays_pending() {
    let Some((page, prod)) = page_with_group(&dismissals_held(), 3, "prod", &[NGINX, HASS]).await else {
        return;
    };
    let held = async || {
        page.wait_until("the dismissal to be sent", async || {
            (page.execute("return window.held", vec![]).await == json!(1)).then_some(())
        })
        .await
    };

    // The group: nginx is reported anew while the request is on its way.
    page.section(&prod.to_string()).await.get("group-dismiss").await.click().await;
    page.wait_for(&testid("group-dismiss-confirm")).await.click().await;
    held().await;
    report_anew_and_see_it_pending(&page, NGINX, 1).await;
    page.execute("window.releaseHeld()", vec![]).await;
    let updates = page.wait_api("hass dismissed", |u| u[HASS]["acknowledged"] == true).await;
    assert_eq!(updates[NGINX]["acknowledged"], false, "the report the page had not shown was dismissed");
    page.wait_state(NGINX, "pending").await;

    // All: prometheus is reported anew meanwhile (reloaded, the page holds its requests anew).
    page.reload().await;
    page.wait_loaded().await;
    page.by_testid("dismiss-all").await.click().await;
    page.wait_for(&testid("confirm-dialog")).await;
    page.by_testid("confirm-ok").await.click().await;
    held().await;
    report_anew_and_see_it_pending(&page, PROMETHEUS, 2).await;
    page.execute("window.releaseHeld()", vec![]).await;
    let updates = page.wait_api("nginx dismissed", |u| u[NGINX]["acknowledged"] == true).await;
    assert_eq!(updates[PROMETHEUS]["acknowledged"], false, "the report the page had not shown was dismissed");
    page.wait_state(PROMETHEUS, "pending").await;
    page.assert_no_console_errors().await;
}

/// Dismissing Untagged (one acknowledgement per card) names each card's report: one reported
/// anew while the acknowledgements are on their way stays pending, the others are dismissed,
/// and the page says so (not as a failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_report_arriving_while_untagged_is_dismissed_stays_pending() {
    let Some((page, _)) = page_with_group(&holding("PATCH", r"api\/updates\/"), 3, "prod", &[NGINX]).await
    else {
        return;
    };
    page.section("untagged").await.get("group-dismiss").await.click().await;
    page.wait_for(&testid("group-dismiss-confirm")).await.click().await;
    page.wait_until("both cards' acknowledgements to be sent", async || {
        (page.execute("return window.held", vec![]).await == json!(2)).then_some(())
    })
    .await;
    report_anew_and_see_it_pending(&page, HASS, 1).await;
    page.execute("window.releaseHeld()", vec![]).await;
    let updates = page.wait_api("prometheus dismissed", |u| u[PROMETHEUS]["acknowledged"] == true).await;
    assert_eq!(updates[HASS]["acknowledged"], false, "the report the page had not shown was dismissed");
    assert_eq!(updates[NGINX]["acknowledged"], false, "a card of another group was dismissed");
    page.wait_said("Dismissed 1 update; 1 update reported anew meanwhile stayed pending").await;
    assert!(page.find(&testid("error-banner")).await.is_none(), "a report that came is no failure");
    page.wait_state(HASS, "pending").await;
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// A dismissal confirmed after everything it asked about was dismissed elsewhere sends nothing:
/// a request without a newest report shown would have no bound, and would dismiss whatever
/// arrived in the meantime, unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_dismissal_with_nothing_left_to_dismiss_sends_nothing() {
    let Some((page, prod)) = page_with_group(&dismissals_held(), 2, "prod", &[NGINX]).await else { return };
    let said = async |what: &str| {
        page.wait_until(&format!("the page to say {what:?}"), async || {
            let text = page.execute("return document.getElementById('announcer').textContent", vec![]).await;
            text.as_str().is_some_and(|text| text.contains(what)).then_some(())
        })
        .await
    };

    // The group, dismissed elsewhere while its question is open.
    page.section(&prod.to_string()).await.get("group-dismiss").await.click().await;
    let confirm = testid("group-dismiss-confirm");
    page.wait_for(&confirm).await;
    page.acknowledge(NGINX).await;
    // Drawn anew with the card acknowledged, the question still open: confirmed then.
    page.wait_state(NGINX, "acknowledged").await;
    page.execute("document.querySelector(arguments[0]).click()", vec![json!(confirm)]).await;
    said("Nothing to dismiss").await;

    // All, dismissed elsewhere while the dialog is open.
    page.execute("document.getElementById('announcer').textContent = ''", vec![]).await;
    page.by_testid("dismiss-all").await.click().await;
    page.wait_for(&testid("confirm-dialog")).await;
    let elsewhere = page.api("POST", "/api/updates/acknowledge-all", Some(json!({}))).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.text());
    page.by_testid("confirm-ok").await.click().await;
    said("Nothing to dismiss").await;
    assert_eq!(page.execute("return window.held", vec![]).await, json!(0), "a request was sent");
    page.assert_no_console_errors().await;
}

/// "Dismiss all" asked from the keyboard, and everything dismissed elsewhere meanwhile: the button
/// is disabled under the dialog, and closing the dialog cannot give it focus back. Focus stays on
/// the page's updates, not on `<body>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_dialog_whose_button_was_disabled_meanwhile_keeps_the_focus_on_the_page() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()[..2]).await;
    page.open().await;
    let dismiss_all = page.by_testid("dismiss-all").await;
    page.execute("arguments[0].focus()", vec![dismiss_all.json()]).await;
    dismiss_all.send_keys(keys::ENTER).await;
    page.wait_for(&testid("confirm-dialog")).await;
    let elsewhere = page.api("POST", "/api/updates/acknowledge-all", Some(json!({}))).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.text());
    page.wait_until("Dismiss all disabled under the dialog", async || {
        (dismiss_all.prop("disabled").await == json!(true)).then_some(())
    })
    .await;
    page.active().await.send_keys(keys::ESCAPE).await;
    page.wait_gone(&testid("confirm-dialog")).await;
    // The dialog's close event, which mends the focus, comes a moment after the dialog is gone.
    page.wait_until("focus on the updates", async || {
        (page.execute("return document.activeElement?.id", vec![]).await == json!("updates")).then_some(())
    })
    .await;
    page.assert_no_console_errors().await;
}

/// A Retry of a history that fails again leaves the keyboard on the new Retry: focus was on the
/// list it reloads, which the failure emptied (and hid), and fell to `<body>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_history_that_fails_again_keeps_the_focus_on_its_retry() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    page.before_scripts(HISTORY_REFUSED).await;
    seed(&page, &varied_events()[..2]).await;
    page.open().await;
    page.card(NGINX).await.get("history-open").await.click().await;
    let retry = page.wait_for(&testid("history-retry")).await;
    page.execute("arguments[0].focus()", vec![retry.json()]).await;
    retry.send_keys(keys::ENTER).await;
    page.wait_until("the retry's request held", async || {
        (page.execute("return window.held", vec![]).await == json!(1)).then_some(())
    })
    .await;
    assert_eq!(page.execute("return document.activeElement?.id", vec![]).await, json!("history-list"));
    page.execute("window.releaseHeld()", vec![]).await;
    page.wait_until("focus on the new Retry", async || {
        (page.focus().await.0.as_deref() == Some("history-retry")).then_some(())
    })
    .await;
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// A history error that a later load clears by itself (the image reported anew, its history
/// read again) leaves the keyboard in the dialog: focus was on its Retry, which went with it,
/// and fell to `<body>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_history_error_cleared_by_itself_keeps_the_focus_in_the_dialog() {
    let Some(page) = Page::start(1280, 1200).await else { return };
    page.before_scripts(
        r#"const realFetch = window.fetch;
        window.historyRefused = true;
        window.fetch = async function (input, init) {
          if (!window.historyRefused || !/\/history/.test(String(input))) return realFetch.call(this, input, init);
          return new Response(JSON.stringify({ error: "refused by the test" }), {
            status: 503,
            headers: { "Content-Type": "application/json" },
          });
        };"#,
    )
    .await;
    seed(&page, &varied_events()[..2]).await;
    page.open().await;
    page.card(NGINX).await.get("history-open").await.click().await;
    let retry = page.wait_for(&testid("history-retry")).await;
    page.execute("arguments[0].focus(); window.historyRefused = false;", vec![retry.json()]).await;
    page.webhook(&reported_anew(NGINX, 1)).await;
    page.wait_gone(&testid("history-error")).await;
    assert_eq!(page.execute("return document.activeElement?.id", vec![]).await, json!("history-list"));
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// Every history request answered 503; those after the first once the test calls
/// `window.releaseHeld()` (`window.held` counts them).
const HISTORY_REFUSED: &str = r#"
(() => {
  const realFetch = window.fetch;
  let release = null;
  const released = new Promise((resolve) => (release = resolve));
  let asked = 0;
  window.held = 0;
  window.releaseHeld = () => release();
  window.fetch = async function (input, init) {
    if (!/\/history/.test(String(input))) return realFetch.call(this, input, init);
    asked += 1;
    if (asked > 1) {
      window.held += 1;
      await released;
    }
    return new Response(JSON.stringify({ error: "refused by the test" }), {
      status: 503,
      headers: { "Content-Type": "application/json" },
    });
  };
})();
"#;

/// What a screen reader reads of the element whose id is the script's argument: its text
/// without what is hidden from it, spaces collapsed.
const SPOKEN_TEXT: &str = "const el = document.getElementById(arguments[0]).cloneNode(true);
     el.querySelectorAll('[aria-hidden=true], [hidden]').forEach((x) => x.remove());
     return el.textContent.replace(/\\s+/g, ' ').trim();";

/// Waits for an error banner that says `what` (among the others a failing page may show).
async fn wait_for_banner(page: &Page, what: &str) {
    page.wait_until(&format!("a banner saying {what:?}"), async || {
        let banners = page
            .execute(
                "return [...document.querySelectorAll(arguments[0])].map((b) => b.textContent).join(' | ')",
                vec![json!(testid("error-banner"))],
            )
            .await;
        banners.as_str().is_some_and(|text| text.contains(what)).then_some(())
    })
    .await;
}

/// The confirmation row of a group's "dismiss", as the page shows it.
async fn group_question(page: &Page) -> String {
    let text = page
        .execute(
            "return document.querySelector('[data-testid=\"group-dismiss-confirm-row\"]')?.textContent",
            vec![],
        )
        .await;
    text.as_str().unwrap_or_default().to_string()
}

/// A report of `image` that differs from the last (another digest, numbered `n`).
fn reported_anew(image: &str, n: u32) -> Value {
    let mut again = docker(image, "nas2", "web", "");
    again["digest"] = json!(format!("sha256:{n:064x}"));
    again
}

/// A card acknowledged right after its image was reported anew, before the page has heard of
/// it: the acknowledgement names the report the card showed, so the server leaves the new one
/// pending (409). The page says so, and once it reads the listing again the card shows the new
/// report, pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn acknowledging_a_card_never_dismisses_a_report_the_page_has_not_shown() {
    let Some(page) = page_with(LISTING_FROZEN, 3).await else { return };
    page.wait_state(NGINX, "pending").await;
    let shown = page.card_received_at(NGINX).await;

    page.execute("window.listingFrozen = true", vec![]).await;
    page.webhook(&reported_anew(NGINX, 1)).await;
    // From script, in one go: the new report's host list redraws the card meanwhile.
    let ack = format!("{} {}", card_css(NGINX), testid("ack"));
    page.execute("document.querySelector(arguments[0]).click()", vec![json!(ack)]).await;
    let banner = page.wait_for(&testid("error-banner")).await;
    let text = banner.text_content().await;
    assert!(text.contains("reported again"), "{text}");
    let updates = page.updates().await;
    assert_eq!(updates[NGINX]["acknowledged"], false, "the new report stays pending");

    page.execute("window.listingFrozen = false", vec![]).await;
    page.by_testid("refresh").await.click().await;
    page.wait_until("the new report on the card, pending", async || {
        let state = page.card_info(NGINX).await?["state"].clone();
        (page.card_received_at(NGINX).await != shown && state == "pending").then_some(())
    })
    .await;
    // No console check: Chromium logs the expected 409 as a failed load.
}

/// Before any page script: acknowledgements of one card wait until `window.releasePatch()`, then
/// answer 503 without reaching the server; "Dismiss all" never gets an answer.
const ACK_REFUSED_LATE_DISMISSAL_HELD: &str = r#"
(() => {
  const realFetch = window.fetch;
  let release = null;
  const released = new Promise((resolve) => (release = resolve));
  window.releasePatch = () => release();
  window.patchesHeld = 0;
  window.dismissalsHeld = 0;
  window.fetch = async function (input, init) {
    const method = init?.method ?? "GET";
    if (method === "PATCH") {
      window.patchesHeld += 1;
      await released;
      return new Response(JSON.stringify({ error: "refused by the test; nothing was changed" }), {
        status: 503,
        headers: { "Content-Type": "application/json" },
      });
    }
    if (method === "POST" && /acknowledge-all/.test(String(input))) {
      window.dismissalsHeld += 1;
      await new Promise(() => {});
    }
    return realFetch.call(this, input, init);
  };
})();
"#;

/// A write answered 503 is judged by what the server holds, not by what other writes still on
/// their way show: a card's acknowledgement refused while "Dismiss all" (which covers the card)
/// waits for its answer is a failure, told as one. It was judged on the page's view, where the
/// dismissal already showed the card acknowledged, and announced as done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_refused_write_is_not_taken_for_done_by_another_on_its_way() {
    let Some(page) = page_with(ACK_REFUSED_LATE_DISMISSAL_HELD, 2).await else { return };
    page.wait_state(NGINX, "pending").await;
    let count = async |what: &str| page.execute(&format!("return window.{what}"), vec![]).await;
    page.card(NGINX).await.get("ack").await.click().await;
    page.wait_until("the acknowledgement sent", async || {
        (count("patchesHeld").await == json!(1)).then_some(())
    })
    .await;
    page.by_testid("dismiss-all").await.click().await;
    page.by_testid("confirm-ok").await.click().await;
    page.wait_until("the dismissal sent", async || (count("dismissalsHeld").await == json!(1)).then_some(()))
        .await;
    page.execute("window.releasePatch()", vec![]).await;
    wait_for_banner(&page, "Could not acknowledge").await;
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// Before any page script: while `window.holdListing` is true, the page's listing requests wait
/// until `window.releaseListing()` (`window.listingsHeld` counts them).
const LISTING_HELD: &str = r#"
(() => {
  const realFetch = window.fetch;
  let release = () => {};
  let released = Promise.resolve();
  window.listingsHeld = 0;
  window.holdListing = false;
  window.releaseListing = () => release();
  window.fetch = async function (input, init) {
    const listing = /api\/updates(\?|$)/.test(String(input)) && (init?.method ?? "GET") === "GET";
    if (listing && window.holdListing) {
      if (!window.listingsHeld) released = new Promise((resolve) => (release = resolve));
      window.listingsHeld += 1;
      await released;
    }
    return realFetch.call(this, input, init);
  };
})();
"#;

/// "Dismiss all" clicked again while its check for new reports runs (a slow database) asks
/// nothing: it asked a second time with the first question's count, and that answer then found
/// nothing left to dismiss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn dismiss_all_clicked_again_during_its_check_asks_nothing() {
    let Some(page) = page_with(LISTING_HELD, 2).await else { return };
    page.wait_title("Diun Dashboard (2)").await;
    page.execute("window.holdListing = true", vec![]).await;
    page.by_testid("dismiss-all").await.click().await;
    page.by_testid("confirm-ok").await.click().await;
    page.wait_until("the check's listing to be held", async || {
        (page.execute("return window.listingsHeld", vec![]).await.as_i64() >= Some(1)).then_some(())
    })
    .await;
    page.execute("document.querySelector(arguments[0]).click()", vec![json!(testid("dismiss-all"))]).await;
    let open = page.execute("return document.getElementById('confirm-dialog').open", vec![]).await;
    assert_eq!(open, json!(false), "asked again while the first dismissal was being checked");

    page.execute("window.holdListing = false; window.releaseListing()", vec![]).await;
    page.wait_api("everything dismissed", |u| {
        u.as_object().is_some_and(|all| all.values().all(|entry| entry["acknowledged"] == true))
    })
    .await;
    page.wait_title("Diun Dashboard").await;
    page.assert_no_console_errors().await;
}

/// Before any page script: while `window.writesAnswer` is "lost", the page's writes reach the
/// server and their answer is then replaced by a 503 (the database answered too late, after the
/// commit); while it is "refused", they answer 503 without reaching the server. "cut" and
/// "unsent" do the same with no answer at all (a network error, as when a connection breaks).
const WRITES_ANSWER_503: &str = r#"
(() => {
  const realFetch = window.fetch;
  window.writesAnswer = null;
  window.fetch = async function (input, init) {
    const write = (init?.method ?? "GET") !== "GET";
    if (!write || !window.writesAnswer) return realFetch.call(this, input, init);
    if (["lost", "cut"].includes(window.writesAnswer)) await realFetch.call(this, input, init);
    if (["cut", "unsent"].includes(window.writesAnswer)) throw new TypeError("Failed to fetch");
    return new Response(JSON.stringify({ error: "database unavailable: the database did not answer in time" }), {
      status: 503,
      headers: { "Content-Type": "application/json" },
    });
  };
})();
"#;

/// A write answered 503 is judged by what the server holds once the page reads it again: done
/// (the database committed before its answer was lost), the page says so and shows no error;
/// not done, it says "Could not …" and the card goes back. It said "Could not acknowledge" over
/// a card that the next snapshot showed acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_write_answered_503_is_judged_by_what_the_server_holds() {
    let Some(page) = acknowledgement_judged_by_the_server("refused", "lost").await else { return };
    let said = async || page.execute("return document.getElementById('announcer').textContent", vec![]).await;

    // A group created all the same: the field empties as after a plain success.
    let input = page.by_testid("new-group-name").await;
    input.click().await;
    input.send_keys("prod").await;
    page.by_testid("new-group-submit").await.click().await;
    page.wait_until("the group announced and the field emptied", async || {
        let text = said().await;
        let value = page.execute("return document.getElementById('new-group-name').value", vec![]).await;
        (text.as_str() == Some("Created the group prod") && value == json!("")).then_some(())
    })
    .await;
    let banners = page.execute(
        "return document.querySelectorAll(arguments[0]).length",
        vec![json!(testid("error-banner"))],
    );
    assert_eq!(banners.await, json!(0), "an error shown for a group the server holds");
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// A write that got no answer at all is judged as one answered 503: the connection may have
/// broken after the server applied it. It said "Could not acknowledge" over a card the next
/// snapshot showed acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_write_without_an_answer_is_judged_by_what_the_server_holds() {
    let Some(page) = acknowledgement_judged_by_the_server("unsent", "cut").await else { return };
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// Opens a page whose writes answer as `window.writesAnswer` says ([`WRITES_ANSWER_503`]) and
/// acknowledges nginx twice: answered `not_applied`, the page says "Could not acknowledge" and
/// the card goes back; answered `applied` (the server holds it), the page says it is done and
/// shows no error.
async fn acknowledgement_judged_by_the_server(not_applied: &str, applied: &str) -> Option<Page> {
    let page = page_with(WRITES_ANSWER_503, 3).await?;
    page.wait_state(NGINX, "pending").await;

    page.execute("window.writesAnswer = arguments[0]", vec![json!(not_applied)]).await;
    page.card(NGINX).await.get("ack").await.click().await;
    wait_for_banner(&page, "Could not acknowledge").await;
    page.wait_state(NGINX, "pending").await;
    assert_eq!(page.updates().await[NGINX]["acknowledged"], false);
    page.by_testid("error-dismiss").await.click().await;
    page.wait_gone(&testid("error-banner")).await;

    page.execute("window.writesAnswer = arguments[0]", vec![json!(applied)]).await;
    page.card(NGINX).await.get("ack").await.click().await;
    page.wait_until("the acknowledgement announced", async || {
        let said = page.execute("return document.getElementById('announcer').textContent", vec![]).await;
        said.as_str().is_some_and(|text| text.starts_with("Acknowledged")).then_some(())
    })
    .await;
    page.wait_state(NGINX, "acknowledged").await;
    let banners = page.execute(
        "return document.querySelectorAll(arguments[0]).length",
        vec![json!(testid("error-banner"))],
    );
    assert_eq!(banners.await, json!(0), "an error shown for a write the server holds");
    assert_eq!(page.updates().await[NGINX]["acknowledged"], true);
    Some(page)
}

/// A browser without `AbortSignal.timeout` (Safari before 16, Chrome before 103) gives up on a
/// write that never answers, as the others do: it waited for good, the change shown as done.
/// Here the page's 30 s are 300 ms, and the writes never answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_write_that_never_answers_is_given_up_on_without_abort_signal_timeout() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.before_scripts(
        r#"AbortSignal.timeout = undefined;
        const realSetTimeout = window.setTimeout;
        window.setTimeout = (work, ms, ...rest) => realSetTimeout(work, ms === 30000 ? 300 : ms, ...rest);
        const realFetch = window.fetch;
        window.fetch = function (input, init) {
          // Reads keep no deadline: 300 ms could cut a slow one on a loaded machine.
          if ((init?.method ?? "GET") === "GET") return realFetch.call(this, input, { ...init, signal: undefined });
          return new Promise((_, reject) => init?.signal?.addEventListener("abort", () =>
            reject(new DOMException("The operation was aborted.", "AbortError"))));
        };"#,
    )
    .await;
    seed(&page, &varied_events()[..2]).await;
    page.open().await;
    page.wait_state(NGINX, "pending").await;
    page.card(NGINX).await.get("ack").await.click().await;
    wait_for_banner(&page, "did not answer within 30 s").await;
    page.wait_state(NGINX, "pending").await;
    assert_eq!(page.updates().await[NGINX]["acknowledged"], false);
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// "Dismiss group" asks again instead of dismissing a report nobody saw: one the page had not
/// heard of when it was confirmed, or ones drawn while the question was open; and it dismisses
/// nothing when it cannot check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn dismissing_a_group_never_dismisses_a_report_the_page_has_not_shown() {
    let Some((page, prod)) = page_with_group(LISTING_FROZEN, 3, "prod", &[NGINX, HASS]).await else { return };
    let section = page.section(&prod.to_string()).await;
    section.get("group-dismiss").await.click().await;
    page.wait_for(&testid("group-dismiss-confirm")).await;
    let confirm = testid("group-dismiss-confirm");

    // Reported anew before the page has heard of it.
    page.execute("window.listingFrozen = true", vec![]).await;
    page.webhook(&reported_anew(NGINX, 1)).await;
    confirm_as_the_listing_thaws(&page, &confirm).await;
    page.wait_until("the group to ask again", async || {
        group_question(&page).await.contains("1 new update arrived meanwhile").then_some(())
    })
    .await;
    assert_eq!(page.updates().await[NGINX]["acknowledged"], false, "dismissed before it was shown");

    // Two more, drawn while the question is open, before Confirm.
    let before = (page.card_received_at(NGINX).await, page.card_received_at(HASS).await);
    page.webhook(&reported_anew(NGINX, 2)).await;
    page.webhook(&reported_anew(HASS, 3)).await;
    page.wait_until("both reports drawn", async || {
        (page.card_received_at(NGINX).await != before.0 && page.card_received_at(HASS).await != before.1)
            .then_some(())
    })
    .await;
    page.execute("document.querySelector(arguments[0]).click()", vec![json!(confirm)]).await;
    page.wait_until("the group to ask about both", async || {
        group_question(&page).await.contains("2 new updates arrived meanwhile").then_some(())
    })
    .await;
    assert_eq!(page.updates().await[NGINX]["acknowledged"], false, "dismissed what arrived while asking");

    // The listing cannot be had: nothing is dismissed, and the page says so.
    page.execute(
        "window.listingFails = true; document.querySelector(arguments[0]).click()",
        vec![json!(confirm)],
    )
    .await;
    wait_for_banner(&page, "Nothing was dismissed").await;
    assert_eq!(page.updates().await[NGINX]["acknowledged"], false, "dismissed without checking");

    // Asked again, with every report in view, it dismisses the group and only the group.
    page.execute(
        "window.listingFails = false; document.querySelector(arguments[0]).click()",
        vec![json!(confirm)],
    )
    .await;
    page.wait_state(NGINX, "acknowledged").await;
    let updates = page.wait_api("the group dismissed", |u| u[HASS]["acknowledged"] == true).await;
    assert_eq!(updates[NGINX]["acknowledged"], true, "{updates:#}");
    assert_eq!(updates[PROMETHEUS]["acknowledged"], false, "only the group: {updates:#}");
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// Dismissing Untagged (one request per card, four at a time) goes on past a card that fails:
/// the cards after it are dismissed as confirmed, and the page says which part was not.
/// It once stopped at the first failure and left the rest pending, with one error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn dismissing_untagged_goes_on_past_a_card_that_fails() {
    let Some(page) = Page::start(1280, 900).await else { return };
    // The first acknowledgement the page sends is lost on the way.
    page.before_scripts(&losing_first("PATCH", r"api\/updates\/")).await;
    let events = varied_events();
    assert!(events.len() > 4, "a second batch of four needs more than four cards");
    seed(&page, &events).await;
    page.open().await;
    let section = page.section("untagged").await;
    section.get("group-dismiss").await.click().await;
    page.wait_for(&testid("group-dismiss-confirm")).await.click().await;
    let dismissed = events.len() - 1;
    wait_for_banner(&page, &format!("Dismissed {dismissed} updates; 1 was not")).await;
    let updates = page
        .wait_api("all but one dismissed", |u| {
            u.as_object().unwrap().values().filter(|entry| entry["acknowledged"] == true).count() == dismissed
        })
        .await;
    let pending: Vec<_> =
        updates.as_object().unwrap().values().filter(|e| e["acknowledged"] == false).collect();
    assert_eq!(pending.len(), 1, "{updates:#}");
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// A card whose group was deleted while the page's listing was on its way is drawn in Untagged,
/// and dismissing Untagged dismisses it too: the dismissal once went by the listing's tag and
/// left that card pending under the question that had counted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn dismissing_untagged_covers_a_card_whose_group_just_went() {
    let Some((page, gone)) = page_with_group(LISTING_FROZEN, 3, "gone", &[NGINX]).await else { return };
    page.execute("window.listingFrozen = true", vec![]).await;
    assert_eq!(page.api("DELETE", &format!("/api/tags/{gone}"), None).await.status, 204);
    page.wait_gone(&format!(r#"{}[data-tag-id="{gone}"]"#, testid("group"))).await;
    page.wait_in_section(NGINX, "untagged").await;
    assert!(page.updates().await[NGINX]["tag"].is_null(), "the server untagged it");

    page.section("untagged").await.get("group-dismiss").await.click().await;
    page.wait_for(&testid("group-dismiss-confirm")).await.click().await;
    // The card drawn in Untagged, nginx, too.
    page.wait_api("every card drawn in Untagged dismissed", |u| {
        [NGINX, HASS, PROMETHEUS].iter().all(|image| u[image]["acknowledged"] == true)
    })
    .await;
    page.assert_no_console_errors().await;
}

/// From the keyboard alone: "Create group" keeps the focus where the key was pressed (it once
/// dropped it to the page, and the user started again from the top), and a group's inline
/// confirmation puts it on Cancel, so that a doubled Enter does not delete the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn groups_are_made_and_kept_from_the_keyboard() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    page.by_testid("new-group-name").await.send_keys("media").await;
    let submit = page.by_testid("new-group-submit").await;
    page.execute("arguments[0].focus()", vec![submit.json()]).await;
    submit.send_keys(keys::ENTER).await;
    page.wait_for(&format!("{}:not([data-tag-id=untagged])", testid("group"))).await;
    let tags = page.api("GET", "/api/tags", None).await.json();
    let media =
        tags.as_array().unwrap().iter().find(|t| t["name"] == "media").expect("the group")["id"].to_string();
    page.section(&media).await;
    page.wait_until("the focus back on the button", async || {
        (page.focus().await.0.as_deref() == Some("new-group-submit")).then_some(())
    })
    .await;

    let delete = page.section(&media).await.get("group-delete").await;
    page.execute("arguments[0].focus()", vec![delete.json()]).await;
    delete.send_keys(keys::ENTER).await;
    page.wait_until("the focus on Cancel", async || {
        (page.focus().await.0.as_deref() == Some("group-delete-cancel")).then_some(())
    })
    .await;
    // What a screen reader says there: the group's name, and the question.
    let told = page
        .execute(
            "const b = document.activeElement; \
             return [b.closest('[role=group]').getAttribute('aria-label'), \
                     document.getElementById(b.getAttribute('aria-describedby'))?.textContent];",
            vec![],
        )
        .await;
    assert_eq!(told, json!(["Delete group media", "Delete this group? Its updates become untagged."]));
    page.active().await.send_keys(keys::ENTER).await;
    page.wait_gone(&testid("group-delete-cancel")).await;
    page.section(&media).await;
    page.assert_no_console_errors().await;
}

/// Holds the page's `POST api/tags` requests back until `releaseTags()` (or 10 s).
const NEW_GROUPS_HELD_BACK: &str = r#"
(() => {
  const realFetch = window.fetch;
  const held = [];
  window.tagsHeld = () => held.length;
  window.releaseTags = () => held.splice(0).forEach((release) => release());
  window.fetch = async function (input, init) {
    if (String(input).includes("api/tags") && init?.method === "POST") {
      // A redraw due in the very frame the button was pressed in.
      document.querySelector('[data-testid="sort"]').dispatchEvent(new Event("change"));
      await new Promise((resolve) => {
        held.push(resolve);
        setTimeout(resolve, 10000);
      });
    }
    return realFetch.call(this, input, init);
  };
})();
"#;

/// A keyboard user who created a group is still on its button afterwards, also when the cards
/// are redrawn in the frame the button was pressed in, or while the server creates the group.
/// The button used to be disabled meanwhile; a redraw that found the focus on a disabled control
/// moved it into the updates, as it does for a control the redraw disabled, and the keyboard
/// user had to find the form again (`groups_are_made_and_kept_from_the_keyboard` failed so, now
/// and then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_redraw_while_a_group_is_created_leaves_the_keyboard_on_its_button() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    page.execute(NEW_GROUPS_HELD_BACK, vec![]).await;
    page.by_testid("new-group-name").await.send_keys("media").await;
    let submit = page.by_testid("new-group-submit").await;
    page.execute("arguments[0].focus()", vec![submit.json()]).await;
    submit.send_keys(keys::ENTER).await;
    page.wait_until("the request to be held", async || {
        (page.execute("return window.tagsHeld()", vec![]).await.as_i64() == Some(1)).then_some(())
    })
    .await;
    assert_eq!(submit.attr("aria-disabled").await.as_deref(), Some("true"), "the button says it is busy");
    submit.send_keys(keys::ENTER).await;
    let sent = page.execute("return window.tagsHeld()", vec![]).await;
    assert_eq!(sent, json!(1), "a second Enter meanwhile creates nothing more");
    // A webhook arrives meanwhile: its card is drawn while the group is being created.
    page.webhook(&varied_events()[1]).await;
    page.card(HASS).await;
    page.execute("window.releaseTags()", vec![]).await;
    page.wait_for(&format!("{}:not([data-tag-id=untagged])", testid("group"))).await;
    page.wait_until("the focus back on the button", async || {
        (page.focus().await.0.as_deref() == Some("new-group-submit")).then_some(())
    })
    .await;
    page.assert_no_console_errors().await;
}

/// Before any page script: no change stream, so the page polls (every 3 s).
const NO_EVENT_SOURCE: &str = "delete window.EventSource;";

/// Before any page script: the tab is hidden from the start, as one opened in the background.
const HIDDEN_FROM_START: &str = r#"
Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
"#;

/// A tab opened in the background (a middle-click, a restored session) closes its stream after
/// the same grace as one hidden later: it used to keep it until it had been shown once, each
/// such tab fetching the listing on every change and holding one of the browser's few
/// connections to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_tab_opened_in_the_background_closes_its_stream() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.before_scripts(HIDDEN_TIMERS_SHORT).await;
    page.before_scripts(HIDDEN_FROM_START).await;
    seed(&page, &varied_events()[..1]).await;
    page.goto(&page.url("/")).await;
    page.wait_title("Diun Dashboard (1)").await;
    // Past the (shortened) grace: paused for good, not only until the stream's hello arrives.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(page.live_status("data-state").await.as_deref(), Some("paused"));
    page.execute(SET_HIDDEN, vec![json!(false)]).await;
    page.wait_live_status("data-state", "live").await;
    page.card(NGINX).await;
    page.assert_no_console_errors().await;
}

/// Image names are keys of plain objects in the page's state: one named `__proto__` set the
/// object's prototype instead, and its card and counts went missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn an_image_named_like_an_object_property_has_its_card() {
    let Some(page) = Page::start(1280, 900).await else { return };
    let names = ["__proto__", "constructor", "toString", NGINX];
    for name in names {
        page.webhook(&docker(name, "nas", "app", "")).await;
    }
    page.open().await;
    let mut shown = page.images().await;
    shown.sort();
    let mut expected: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    expected.sort();
    assert_eq!(shown, expected);
    page.wait_title("Diun Dashboard (4)").await;
    page.assert_no_console_errors().await;
}

/// A group deleted elsewhere while this page's "Move to…" menu is open (the page holds its DOM
/// still while a menu is open, so the menu still offers it): picking it must say that the move
/// did not happen, not close the menu silently (SPEC §7: never a silent failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn moving_to_a_group_deleted_meanwhile_is_not_silent() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    seed(&page, &varied_events()[..2]).await;
    let gone = page.create_tag("gone").await;
    page.open().await;
    page.section(&gone.to_string()).await;

    page.card(NGINX).await.get("move-menu").await.click().await;
    let option = page.wait_for(&format!(r#"{}[data-tag-id="{gone}"]"#, testid("move-option"))).await;
    let response = page.api("DELETE", &format!("/api/tags/{gone}"), None).await;
    assert_eq!(response.status, 204);
    // Time for the page to hear of it: at once by the change stream, within 3 s by polling.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    option.click().await;
    let banner = page.wait_for(&testid("error-banner")).await;
    let text = banner.text_content().await;
    assert!(text.contains("nginx"), "the banner says what failed: {text:?}");
    page.wait_in_section(NGINX, "untagged").await;
    assert!(page.updates().await[NGINX]["tag"].is_null());
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// Moved from the keyboard to a group far down the page, a card takes the focus with it, and the
/// page follows: the focus is not left out of sight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_card_moved_from_the_keyboard_takes_the_page_with_it() {
    let Some(page) = Page::start(1280, 700).await else { return };
    // The oldest image, so that in Untagged it goes last, below thirty others.
    const MOVED: &str = "reg.example/moved:1";
    page.webhook(&docker(MOVED, "nas", "app", "")).await;
    seed(&page, &apps(10..40)).await;
    let top = page.create_tag("top").await;
    page.assign(MOVED, top).await;
    // The next oldest, for the mouse.
    const CLICKED: &str = "reg.example/app10:1";
    page.assign(CLICKED, top).await;
    page.open().await;
    page.wait_in_section(MOVED, &top.to_string()).await;

    // A pointer user's page does not jump to where the card went.
    page.card(CLICKED).await.get("move-menu").await.click().await;
    page.wait_for(&format!(r#"{}[data-tag-id="untagged"]"#, testid("move-option"))).await.click().await;
    page.wait_in_section(CLICKED, "untagged").await;
    page.wait_until("the focus on the card's menu", async || {
        let focused = page
            .execute(
                "return document.activeElement.closest('[data-testid=\"card\"]')?.dataset.image ?? null",
                vec![],
            )
            .await;
        (focused == json!(CLICKED)).then_some(())
    })
    .await;
    assert_eq!(page.execute("return window.scrollY", vec![]).await, json!(0), "the page stayed where it was");

    let menu = page.card(MOVED).await.get("move-menu").await;
    page.execute("arguments[0].focus()", vec![menu.json()]).await;
    page.press(keys::ARROW_DOWN).await;
    page.wait_for(&testid("move-options")).await;
    let untagged = page.wait_for(&format!(r#"{}[data-tag-id="untagged"]"#, testid("move-option"))).await;
    page.execute("arguments[0].focus()", vec![untagged.json()]).await;
    page.press(keys::ENTER).await;
    page.wait_in_section(MOVED, "untagged").await;
    page.wait_until("the focus on the moved card's menu, in sight", async || {
        let seen = page
            .execute(
                "const el = document.activeElement;
                 const r = el.getBoundingClientRect();
                 return [el.closest('[data-testid=\"card\"]')?.dataset.image ?? null, el.dataset.testid ?? null,
                         r.bottom > 0 && r.top < window.innerHeight];",
                vec![],
            )
            .await;
        (seen == json!([MOVED, "move-menu", true])).then_some(())
    })
    .await;
    page.assert_no_console_errors().await;
}

/// A keyboard user who scrolled away from their focused card is not pulled back to it when a new
/// report redraws it: the page follows the keyboard's focus only from where it was in sight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_redraw_of_a_focused_card_out_of_sight_does_not_scroll_the_page() {
    let Some(page) = Page::start(1280, 700).await else { return };
    seed(&page, &apps(10..40)).await;
    page.open().await;
    // The newest card is first: its Acknowledge takes the keyboard's focus.
    let first = page.images().await.first().cloned().expect("cards");
    let ack = page.card(&first).await.get("ack").await;
    page.execute("arguments[0].focus()", vec![ack.json()]).await;
    page.press("\u{E008}").await; // Shift: a key pressed, nothing done
    assert_eq!(
        page.execute("return document.activeElement.matches(':focus-visible')", vec![]).await,
        json!(true)
    );
    page.execute("window.scrollTo(0, document.documentElement.scrollHeight / 2)", vec![]).await;
    let scrolled = page.execute("return window.scrollY", vec![]).await;
    assert!(scrolled.as_f64().is_some_and(|y| y > 0.0), "the page scrolls: {scrolled}");

    let before = page.card_received_at(&first).await;
    // Reported again as it was, but for its digest: the card keeps its size.
    let mut again = docker(&first, "nas", "app", "");
    again["digest"] = json!(format!("sha256:{:064x}", 1));
    page.webhook(&again).await;
    page.wait_until("the card redrawn, the focus on its new self", async || {
        let focused = page
            .execute(
                "const el = document.activeElement;
                 return [el.closest('[data-testid=\"card\"]')?.dataset.receivedAt ?? null, el.dataset.testid ?? null];",
                vec![],
            )
            .await;
        let drawn = page.card_received_at(&first).await;
        (focused[1] == "ack" && focused[0] == drawn && !drawn.is_null() && drawn != before).then_some(())
    })
    .await;
    assert_eq!(page.execute("return window.scrollY", vec![]).await, scrolled, "the page stayed where it was");
    page.assert_no_console_errors().await;
}

/// Counts the cards put into a section's list from now on (a moved card counts as put in).
const COUNT_CARDS_PUT_IN: &str = r#"
const list = arguments[0];
window.cardsPutIn = 0;
new MutationObserver((records) => {
  for (const record of records) window.cardsPutIn += record.addedNodes.length;
}).observe(list, { childList: true });
"#;

/// A changed card replaces its old self where it stands: the cards after it stay put. Moving
/// each of them one place on was thousands of DOM moves (seconds) in a long section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_changed_card_does_not_move_the_cards_after_it() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    let events: Vec<Value> =
        (0..30).map(|n| docker(&format!("reg.example/app{n:02}:1"), "nas", "app", "")).collect();
    seed(&page, &events).await;
    page.open().await;
    let first = page.images().await.first().cloned().expect("cards");
    let list = page.section("untagged").await.get("group-cards").await;
    page.execute(COUNT_CARDS_PUT_IN, vec![list.json()]).await;

    page.acknowledge(&first).await;
    page.wait_state(&first, "acknowledged").await;
    let put_in = page.execute("return window.cardsPutIn", vec![]).await;
    assert_eq!(put_in, json!(1), "only the acknowledged card is put in anew");
    assert_eq!(page.images().await.len(), 30);
    page.assert_no_console_errors().await;
}

/// Where a control's middle is on screen, in whole pixels, as a pointer action takes it.
async fn middle_of(page: &Page, control: &Element) -> (i64, i64) {
    let point = page
        .execute(
            "const r = arguments[0].getBoundingClientRect();
             return [Math.round(r.left + r.width / 2), Math.round(r.top + r.height / 2)];",
            vec![control.json()],
        )
        .await;
    (point[0].as_i64().expect("x"), point[1].as_i64().expect("y"))
}

/// Has the page redraw its cards (as a change of the sort order does, to the same order), and
/// answers, once that is drawn, the focus key of the control at `(x, y)`. A click sent right after
/// comes within a second of a redraw, however slow the round trips of a loaded machine.
async fn redraw_and_see(page: &Page, (x, y): (i64, i64)) -> Value {
    page.execute_async(
        "const [x, y, done] = arguments;
         document.querySelector('[data-testid=\"sort\"]').dispatchEvent(new Event('change'));
         requestAnimationFrame(() => requestAnimationFrame(() =>
           done(document.elementFromPoint(x, y)?.closest('[data-action]')?.dataset.focusKey ?? null)));",
        vec![json!(x), json!(y)],
    )
    .await
}

/// Performs `actions` with one pointer of `kind` (`mouse`, `touch`, `pen`).
async fn with_pointer(page: &Page, kind: &str, actions: Vec<Value>) {
    page.perform(
        json!([{ "type": "pointer", "id": kind, "parameters": { "pointerType": kind }, "actions": actions }]),
    )
    .await;
}

/// A pointer's move to `(x, y)` in the viewport, at once.
fn move_to((x, y): (i64, i64)) -> Value {
    json!({ "type": "pointerMove", "duration": 0, "x": x, "y": y, "origin": "viewport" })
}

/// The mouse goes to `(x, y)` and rests there.
async fn rest_at(page: &Page, at: (i64, i64)) {
    with_pointer(page, "mouse", vec![move_to(at)]).await;
}

/// A pointer of `kind` that goes to `(x, y)` (a move on the spot when it is there already) and
/// presses there.
async fn press_at(page: &Page, kind: &str, at: (i64, i64)) {
    let press = [json!({ "type": "pointerDown", "button": 0 }), json!({ "type": "pointerUp", "button": 0 })];
    with_pointer(page, kind, [vec![move_to(at)], press.to_vec()].concat()).await;
}

/// A card that a live update moves under a resting mouse does not take the click aimed at the
/// card that was there (it would acknowledge an image the user never looked at), nor a click with
/// the little wobble of a hand on the mouse; once the pointer moves onto it, it does. A resting
/// click on a control that did not move, a tap and the keyboard are never held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_card_moved_under_a_resting_mouse_does_not_take_its_click() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    // Cards alike, so the newcomer's button lands where the first card's was.
    seed(&page, &apps(1..=4)).await;
    page.open().await;
    let images = page.images().await;
    let ack_of = async |image: &str| page.card(image).await.get("ack").await;
    let aimed_at = middle_of(&page, &ack_of(&images[0]).await).await;
    rest_at(&page, aimed_at).await;

    // The newest image is drawn first, in the place of the card the mouse rests on.
    const NEWCOMER: &str = "reg.example/app9:1";
    page.webhook(&docker(NEWCOMER, "nas", "app", "")).await;
    page.card(NEWCOMER).await;
    let newcomers_ack = json!(format!("ack:{NEWCOMER}"));
    for (point, what) in [(aimed_at, "on the spot"), ((aimed_at.0 + 2, aimed_at.1 + 1), "with a wobble")] {
        assert_eq!(
            redraw_and_see(&page, point).await,
            newcomers_ack,
            "the newcomer's Acknowledge is under the pointer"
        );
        press_at(&page, "mouse", point).await;
        let newcomer = page.card_info(NEWCOMER).await.expect("the newcomer's card");
        assert_eq!(newcomer["state"], "pending", "a click {what} was not aimed at it: {newcomer:#}");
        let told = page
            .execute(
                "return [arguments[0].classList.contains('unaimed'), document.activeElement?.dataset?.testid ?? null];",
                vec![page.card(NEWCOMER).await.json()],
            )
            .await;
        assert_eq!(told[0], json!(true), "the card says why the click {what} did nothing");
        assert_ne!(told[1], json!("ack"), "Enter next would not acknowledge it either");
    }
    page.wait_until("the announcement", async || {
        let said = page.execute("return document.getElementById('announcer').textContent", vec![]).await;
        said.as_str().is_some_and(|said| said.contains("moved under the pointer")).then_some(())
    })
    .await;

    // Moved onto it, the pointer aims at it.
    let moved_onto = (aimed_at.0 + 6, aimed_at.1);
    assert_eq!(redraw_and_see(&page, moved_onto).await, newcomers_ack);
    press_at(&page, "mouse", moved_onto).await;
    page.wait_state(NEWCOMER, "acknowledged").await;

    // A control that did not move takes a resting click right after a redraw.
    let second = middle_of(&page, &ack_of(&images[1]).await).await;
    rest_at(&page, second).await;
    assert_eq!(redraw_and_see(&page, second).await, json!(format!("ack:{}", images[1])));
    press_at(&page, "mouse", second).await;
    page.wait_state(&images[1], "acknowledged").await;

    // Neither a tap nor the keyboard rests anywhere first.
    let third = middle_of(&page, &ack_of(&images[2]).await).await;
    redraw_and_see(&page, third).await;
    press_at(&page, "touch", third).await;
    page.wait_state(&images[2], "acknowledged").await;
    let fourth = ack_of(&images[3]).await;
    page.execute("arguments[0].focus()", vec![fourth.json()]).await;
    redraw_and_see(&page, third).await;
    page.press(keys::ENTER).await;
    page.wait_state(&images[3], "acknowledged").await;

    let updates = page
        .wait_api("the acknowledgements to reach the server", |u| u[&images[3]]["acknowledged"] == true)
        .await;
    let acknowledged: Vec<&str> = updates
        .as_object()
        .expect("updates")
        .iter()
        .filter(|(_, u)| u["acknowledged"] == true)
        .map(|(i, _)| i.as_str())
        .collect();
    assert_eq!(acknowledged.len(), 4, "the newcomer and three clicked: {acknowledged:?}");
    assert_eq!(updates[images[0].as_str()]["acknowledged"], false, "{updates:#}");
    page.assert_no_console_errors().await;
}

/// Acknowledge dismisses the report its card shows, not a newer one of the same image: a new
/// report redrawn in place under a resting mouse does not take the click aimed at the one that
/// was there, and a click in the moment before the page draws a new report it already holds
/// (a keyboard's, which is never held up) leaves the new report pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn acknowledge_dismisses_the_report_its_card_shows() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    seed(&page, &apps(1..=3)).await;
    page.open().await;
    // Sorted by name, a new report of a card leaves it where it is.
    page.choose("sort", "name").await;
    let first = page.images().await[0].clone();
    // Cards are looked up in the scripts themselves: a redraw between finding one and using it
    // would leave a stale element.
    let received_at = async |image: &str| {
        let script = "return document.querySelector(arguments[0])?.dataset.receivedAt ?? null;";
        page.execute(script, vec![json!(card_css(image))]).await.as_str().unwrap_or_default().to_owned()
    };
    let reported_anew = async |image: &str| {
        let before = received_at(image).await;
        page.webhook(&docker(image, "pi", "app", "")).await;
        page.wait_until("the new report drawn", async || (received_at(image).await != before).then_some(()))
            .await;
    };
    let aimed_at = middle_of(&page, &page.card(&first).await.get("ack").await).await;
    rest_at(&page, aimed_at).await;
    reported_anew(&first).await;
    assert_eq!(redraw_and_see(&page, aimed_at).await, json!(format!("ack:{first}")), "the same control");
    press_at(&page, "mouse", aimed_at).await;
    let card = page.card_info(&first).await.expect("the card");
    assert_eq!(card["state"], "pending", "the click was aimed at the report before: {card:#}");
    let flashed = "return document.querySelector(arguments[0]).classList.contains('unaimed');";
    let flashed = page.execute(flashed, vec![json!(card_css(&first))]).await;
    assert_eq!(flashed, json!(true), "the card says why the click did nothing");

    // The page holds a report its card does not show yet: the card's is the bound.
    let second = page.images().await[1].clone();
    let shown = received_at(&second).await;
    reported_anew(&second).await;
    let script = r#"const card = document.querySelector(arguments[0]);
        card.dataset.receivedAt = arguments[1];
        card.querySelector('[data-testid="ack"]').click();"#;
    page.execute(script, vec![json!(card_css(&second)), json!(shown)]).await;
    page.wait_until("the refusal said", async || {
        let said = page.execute("return document.body.textContent", vec![]).await;
        said.as_str().is_some_and(|text| text.contains("reported again since")).then_some(())
    })
    .await;
    let updates = page.updates().await;
    assert_eq!(updates[second.as_str()]["acknowledged"], false, "the new report stays pending: {updates:#}");
    assert_eq!(updates[first.as_str()]["acknowledged"], false, "{updates:#}");
    page.wait_state(&second, "pending").await;
}

/// The keyboard's two cases of the same: a newer report redrawn in place under the focus (a
/// webhook arrived while Acknowledge had it), and a neighbour's Acknowledge that took the focus
/// when the acknowledged card left the Pending view (a doubled or held Enter). Either drops one
/// press, says so and keeps the focus; the next press acts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_press_meant_for_another_report_than_the_focused_one_does_nothing() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    seed(&page, &apps(1..=3)).await;
    page.open().await;
    page.choose("sort", "name").await;
    let images = page.images().await;
    let received_at = async |image: &str| {
        let script = "return document.querySelector(arguments[0])?.dataset.receivedAt ?? null;";
        page.execute(script, vec![json!(card_css(image))]).await.as_str().unwrap_or_default().to_owned()
    };
    let focused_aim =
        async || page.execute("return document.activeElement.dataset.aimKey ?? null", vec![]).await;
    let nothing_done_said = async || {
        page.wait_until("the dropped press said", async || {
            let said = page.execute("return document.getElementById('announcer').textContent", vec![]).await;
            said.as_str()
                .is_some_and(|text| text.starts_with("Nothing was done: the focus is now on"))
                .then_some(())
        })
        .await;
        page.execute("document.getElementById('announcer').textContent = ''", vec![]).await;
    };
    let focus_ack = "document.querySelector(arguments[0]).querySelector('[data-testid=\"ack\"]').focus();";

    let first = &images[0];
    page.execute(focus_ack, vec![json!(card_css(first))]).await;
    let before = received_at(first).await;
    page.webhook(&docker(first, "pi", "app", "")).await;
    let after = page
        .wait_until("the new report drawn", async || {
            let now = received_at(first).await;
            (now != before).then_some(now)
        })
        .await;
    assert_eq!(
        focused_aim().await,
        json!(format!("ack:{first}@{after}")),
        "the focus went to the new report"
    );
    page.record_requests().await;
    page.press(keys::ENTER).await;
    nothing_done_said().await;
    assert_eq!(page.writes_sent().await, Vec::<String>::new(), "the press acknowledged the unseen report");
    assert_eq!(page.card_info(first).await.expect("the card")["state"], "pending");
    assert_eq!(
        focused_aim().await,
        json!(format!("ack:{first}@{after}")),
        "the focus stays for the next press"
    );
    page.press(keys::ENTER).await;
    page.wait_state(first, "acknowledged").await;

    // The page's clock held still: a neighbour's Acknowledge is guarded for a moment after it
    // took the focus, and the press below comes within that moment on any machine.
    page.choose("filter-status", "pending").await;
    page.execute("const now = performance.now(); performance.now = () => now;", vec![]).await;
    let (second, third) = (&images[1], &images[2]);
    page.execute(focus_ack, vec![json!(card_css(second))]).await;
    page.press(keys::ENTER).await;
    page.wait_until("the neighbour's Acknowledge focused", async || {
        focused_aim()
            .await
            .as_str()
            .is_some_and(|key| key.starts_with(&format!("ack:{third}@")))
            .then_some(())
    })
    .await;
    page.record_requests().await;
    page.press(keys::ENTER).await;
    nothing_done_said().await;
    assert_eq!(page.writes_sent().await, Vec::<String>::new(), "a doubled Enter acknowledged the next card");
    page.press(keys::ENTER).await;
    page.wait_api("the third acknowledged", |updates| updates[third.as_str()]["acknowledged"] == true).await;
}

/// A toast comes up at a phone's bottom edge, over the cards: a tap already on its way to the
/// page goes to the page, not to the "Show" that came under it, until the toast holds still;
/// then the tap shows the card. So for a toast that grows with a burst's names or is pushed up by
/// another; one that did not move takes a tap at once. A key is never held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_toast_that_just_came_up_or_moved_lets_a_tap_through_to_the_page() {
    let Some(page) = Page::start(390, 800).await else { return };
    // The page's clocks held still (the arrivals below share one burst's toast, and a tap is
    // within a toast's first moment on any machine), and where each click lands recorded.
    page.before_scripts(
        "const sinceLoad = performance.now.bind(performance);
         const realNow = Date.now;
         window.heldAt = null;
         performance.now = () => window.heldAt ?? sinceLoad();
         Date.now = () => window.heldAt === null ? realNow() : window.heldDate;
         window.clicks = [];
         document.addEventListener('click', (e) => {
           clicks.push(e.target.closest('[data-testid]')?.dataset.testid ?? e.target.tagName);
         }, true);",
    )
    .await;
    let hold = async || {
        page.execute("window.heldDate = Date.now(); window.heldAt = performance.now()", vec![]).await
    };
    let a_moment_later = async || page.execute("window.heldAt += 60000", vec![]).await;
    let last_click = async || page.execute("return clicks.at(-1) ?? null", vec![]).await;
    let settling = async || {
        page.execute(
            "return [...document.querySelectorAll('#toasts > .toast')].map((t) => t.hasAttribute('data-settling'))",
            vec![],
        )
        .await
    };
    seed(&page, &apps(1..=6)).await;
    page.open().await;
    hold().await;

    page.webhook(&docker(NGINX, "nas", "web", "")).await;
    let show = page.wait_for(&testid("toast-action")).await;
    let at = middle_of(&page, &show).await;
    press_at(&page, "touch", at).await;
    let clicked = last_click().await;
    assert!(clicked.is_string() && clicked != json!("toast-action"), "the tap reached the page: {clicked}");
    assert!(page.by_testid("toast").await.displayed().await, "the toast is still up");

    // The burst's toast grows with a long name: held off again.
    a_moment_later().await;
    page.settled_toast().await;
    const LONG: &str = "reg.example/an-application-with-a-rather-long-name-to-wrap:1";
    page.webhook(&docker(LONG, "nas", "web", "")).await;
    page.wait_until("the toast to name both", async || {
        let text = page.by_testid("toast").await.text_content().await;
        text.contains("rather-long-name").then_some(())
    })
    .await;
    assert_eq!(settling().await, json!([true]), "one toast, grown and held off");
    a_moment_later().await;
    let show = page.settled_toast().await.get("toast-action").await;
    press_at(&page, "touch", middle_of(&page, &show).await).await;
    page.wait_gone(&testid("toast")).await;
    assert_eq!(last_click().await, json!("toast-action"));
    let focused = page.execute("return document.activeElement.dataset.focusKey ?? null", vec![]).await;
    assert!(
        focused.as_str().is_some_and(|key| key.ends_with(NGINX)),
        "Show went to the first card: {focused}"
    );

    // A second toast pushes the first up; once both hold still, the lower one, unmoved when the
    // upper one closes, takes a tap at once.
    page.webhook(&docker(HASS, "nas", "home", "")).await;
    page.wait_for(&testid("toast")).await;
    a_moment_later().await;
    page.settled_toast().await;
    page.execute("document.getElementById('remove-stale').click()", vec![]).await;
    page.wait_until("a second toast", async || (settling().await == json!([true, true])).then_some(())).await;
    a_moment_later().await;
    page.settled_toast().await;
    assert_eq!(settling().await, json!([false, false]));
    let closes = page.find_all(&testid("toast-close")).await;
    let (upper, lower) = (middle_of(&page, &closes[0]).await, middle_of(&page, &closes[1]).await);
    press_at(&page, "touch", upper).await;
    page.wait_until("the upper toast closed", async || (settling().await == json!([false])).then_some(()))
        .await;
    press_at(&page, "touch", lower).await;
    page.wait_gone(&testid("toast")).await;
    assert_eq!(last_click().await, json!("toast-close"));

    // The keyboard reaches a toast that has just come up, and it acts.
    page.webhook(&docker(PROMETHEUS, "nas", "metrics", "")).await;
    page.wait_for(&format!("#toasts > {}[data-settling]", testid("toast"))).await;
    page.execute("document.activeElement.blur()", vec![]).await;
    page.press("n").await;
    assert_eq!(page.active().await.attr("data-testid").await.as_deref(), Some("toast-action"));
    page.active().await.send_keys(keys::ENTER).await;
    page.wait_gone(&testid("toast")).await;
    let focused = page.execute("return document.activeElement.dataset.focusKey ?? null", vec![]).await;
    assert!(
        focused.as_str().is_some_and(|key| key.ends_with(PROMETHEUS)),
        "Show went to the new card: {focused}"
    );
    page.assert_no_console_errors().await;
}

/// A section's counts change in place: the heading the keyboard is on stays the same element (a
/// new one, focused anew, was read out again by a screen reader at every report of a scan).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_sections_counts_change_under_the_focus_without_rebuilding_its_heading() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..2]).await;
    page.open().await;
    let untagged = page.section("untagged").await;
    page.execute(
        "arguments[0].focus(); arguments[0].dataset.mark = 'kept';",
        vec![untagged.get("group-toggle").await.json()],
    )
    .await;
    const NEW: &str = "reg.example/new:1";
    page.webhook(&docker(NEW, "nas", "web", "")).await;
    page.wait_until("the count to grow", async || {
        (page.section("untagged").await.get("group-count").await.text_content().await == "3").then_some(())
    })
    .await;
    let focused = page
        .execute(
            "return [document.activeElement.dataset.mark ?? null, document.activeElement.dataset.focusKey]",
            vec![],
        )
        .await;
    assert_eq!(focused, json!(["kept", "group-toggle:untagged"]), "the same heading, still focused");
    let pending = page.section("untagged").await.get("group-pending").await.text_content().await;
    assert_eq!(pending, "3 pending");
    page.acknowledge(NEW).await;
    page.wait_until("one fewer pending", async || {
        (page.section("untagged").await.get("group-pending").await.text_content().await == "2 pending")
            .then_some(())
    })
    .await;
    let mark = page.execute("return document.activeElement.dataset.mark ?? null", vec![]).await;
    assert_eq!(mark, json!("kept"));
    page.assert_no_console_errors().await;
}

/// A mouse pressed on a card's name and moved selects the name, to copy it, and moves no card;
/// pressed on the card's grip or elsewhere on it, it drags the card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_mouse_selects_a_cards_name_rather_than_dragging_the_card() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..2]).await;
    let home = page.create_tag("home").await.to_string();
    page.open().await;
    let name = page.card(HASS).await.get("card-name").await;
    let rect = page
        .execute(
            "const r = arguments[0].getBoundingClientRect(); return [r.left + 2, r.top + r.height / 2, r.right - 2];",
            vec![name.json()],
        )
        .await;
    let (left, y, right) = (
        rect[0].as_f64().unwrap() as i64,
        rect[1].as_f64().unwrap() as i64,
        rect[2].as_f64().unwrap() as i64,
    );
    // Released over another group: a card dragged there would be moved to it.
    let over_home = page
        .execute(
            "const r = arguments[0].getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2];",
            vec![page.section(&home).await.json()],
        )
        .await;
    let over_home = (over_home[0].as_f64().unwrap() as i64, over_home[1].as_f64().unwrap() as i64);
    let press = |kind| json!({ "type": kind, "button": 0 });
    let steps = (1..=5).map(|i| move_to((left + (right - left) * i / 5, y + i * 20)));
    page.record_requests().await;
    // The button stays down between the two sets of actions: the state of the gesture half-way.
    with_pointer(&page, "mouse", [vec![move_to((left, y)), press("pointerDown")], steps.collect()].concat())
        .await;
    let selected = page.execute("return String(window.getSelection())", vec![]).await;
    assert!(
        selected.as_str().is_some_and(|text| text.contains("home-assistant")),
        "the name selected: {selected}"
    );
    assert!(page.find(".card-ghost").await.is_none(), "no card dragged");
    with_pointer(&page, "mouse", vec![move_to(over_home), press("pointerUp")]).await;
    assert_eq!(page.writes_sent().await, Vec::<String>::new(), "no card moved");
    assert!(page.updates().await[HASS]["tag"].is_null(), "no card moved");

    page.drag(&page.card(HASS).await, &page.section(&home).await, Pointer::Mouse).await;
    page.wait_in_section(HASS, &home).await;
    page.assert_no_console_errors().await;
}

/// An open "Move to…" menu holds the page's redraws; scrolled out of sight, it closes, and what
/// came meanwhile is drawn. The page stays where the user scrolled it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_move_menu_scrolled_out_of_sight_closes() {
    let Some(page) = Page::start(1280, 700).await else { return };
    seed(&page, &apps(10..40)).await;
    page.open().await;
    let first = page.images().await.remove(0);
    page.card(&first).await.get("move-menu").await.click().await;
    page.wait_for(&testid("move-options")).await;
    page.webhook(&docker(NGINX, "nas", "web", "")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(page.card_info(NGINX).await.is_none(), "held while the menu is open");

    page.execute("window.scrollTo(0, document.body.scrollHeight)", vec![]).await;
    page.wait_gone(&testid("move-options")).await;
    page.card(NGINX).await;
    let (scrolled, focused) = (
        page.execute("return window.scrollY > 500", vec![]).await,
        page.execute("return document.activeElement.dataset.focusKey ?? null", vec![]).await,
    );
    assert_eq!(scrolled, json!(true), "not scrolled back to the menu's button");
    assert_eq!(focused, json!(format!("move:{first}")), "the keyboard back on its button");
    page.assert_no_console_errors().await;
}

/// A click on a card's text (no control there) keeps the keyboard's place at that card: Tab
/// goes on from it and J to the card after it, not from the top of the list, as when a click
/// focused the whole list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_click_on_a_cards_text_keeps_the_keyboards_place_there() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()).await;
    page.open().await;
    let images = page.images().await;
    let place = async || {
        page.execute(
            "const el = document.activeElement;
             return el.closest('[data-testid=\"card\"]')?.dataset.image ?? (el.id || el.tagName);",
            vec![],
        )
        .await
    };
    page.card(&images[2]).await.get("card-name").await.click().await;
    assert_eq!(place().await, json!("BODY"), "nothing takes the focus");
    page.press(keys::TAB).await;
    assert_eq!(place().await, json!(images[2]), "Tab goes on from the card clicked");

    page.card(&images[3]).await.get("card-name").await.click().await;
    page.press("j").await;
    assert_eq!(place().await, json!(images[4]), "J goes to the card after the one clicked");
    page.card(&images[3]).await.get("card-name").await.click().await;
    page.press("k").await;
    assert_eq!(place().await, json!(images[2]), "K to the one before");

    // The list holding a fallback focus (its control gone), a click on a card's text leaves the
    // focus there: J still steps from the card clicked.
    page.execute_async(
        "const done = arguments[arguments.length - 1];
         import('./js/dom.js').then((dom) => { dom.focusRegion(document.getElementById('updates')); done(null); });",
        vec![],
    )
    .await;
    assert_eq!(place().await, json!("updates"));
    page.card(&images[1]).await.get("card-name").await.click().await;
    page.press("j").await;
    assert_eq!(place().await, json!(images[2]), "J from the card clicked, not from the top");
    page.assert_no_console_errors().await;
}

/// What the wheel scrolls under a resting mouse is aimed at: a click on it right after a redraw
/// is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn what_the_wheel_brings_under_a_resting_mouse_takes_its_click() {
    let Some(page) = Page::start(1280, 700).await else { return };
    seed(&page, &apps(10..40)).await;
    page.open().await;
    let images = page.images().await;
    // The same column one row further down: the first card that starts lower than the first.
    let rows = page
        .execute(
            "const cards = [...document.querySelectorAll('[data-testid=\"card\"]')];
             const first = cards[0].getBoundingClientRect();
             const below = cards.findIndex((c) => c.getBoundingClientRect().top > first.bottom);
             return [below, Math.round(cards[below].getBoundingClientRect().top - first.top)];",
            vec![],
        )
        .await;
    let (below, pitch) = (rows[0].as_u64().expect("a second row") as usize, rows[1].as_i64().expect("pitch"));
    let ack = page.card(&images[0]).await.get("ack").await;
    page.execute("arguments[0].scrollIntoView({ block: 'center' })", vec![ack.json()]).await;
    let point = middle_of(&page, &ack).await;
    rest_at(&page, point).await;

    page.perform(json!([{
        "type": "wheel",
        "id": "wheel",
        "actions": [{ "type": "scroll", "x": point.0, "y": point.1, "deltaX": 0, "deltaY": pitch, "duration": 0 }],
    }]))
    .await;
    let brought = json!(format!("ack:{}", images[below]));
    page.wait_until("the next row's Acknowledge under the pointer", async || {
        (redraw_and_see(&page, point).await == brought).then_some(())
    })
    .await;
    press_at(&page, "mouse", point).await;
    page.wait_state(&images[below], "acknowledged").await;
    assert_eq!(page.card_info(&images[0]).await.expect("the first card")["state"], "pending");
    page.assert_no_console_errors().await;
}

/// Before any page script: the page's clock can be moved on (`advanceClock(ms)`).
const MOVABLE_CLOCK: &str = r#"
(() => {
  const realNow = Date.now;
  let ahead = 0;
  Date.now = () => realNow() + ahead;
  window.advanceClock = (ms) => { ahead += ms; };
})();
"#;

/// Names and times as a person reads them: an image with a generic name goes by its owner too
/// ("vaultwarden/server", as on its card) in the history's title, a bare digest after `@`; a
/// relative time is rounded from the time itself ("1 h ago" for 89.5 min, not "2 h"); the
/// history counts no host for an event that names none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn names_and_times_read_as_a_person_reads_them() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()).await;
    page.webhook(&docker(VAULTWARDEN, "", "vaultwarden", "")).await;
    page.open().await;
    let words = page
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
            Promise.all([import("./js/time.js"), import("./js/image.js")]).then(([time, image]) => {
              const now = Date.UTC(2026, 5, 1, 12);
              const ago = (minutes) => time.relative(new Date(now - minutes * 60000), now);
              const named = (ref) => image.referenceLabel(image.parseImage(ref)).replace(/[\u2066-\u2069]/g, "");
              done({
                times: [ago(0.7), ago(1.5), ago(59.4), ago(89.5), ago(60 * 23.4), ago(60 * 35.5)],
                names: [named("docker.io/vaultwarden/server:1.30.5"), named("registry:443/ns/app@sha256:" + "ab".repeat(32)),
                        named("localhost:5000/app")],
              });
            });"#,
            vec![],
        )
        .await;
    assert_eq!(
        words["times"],
        json!(["just now", "2 min ago", "59 min ago", "1 h ago", "23 h ago", "1 d ago"])
    );
    assert_eq!(
        words["names"],
        json!(["vaultwarden/server:1.30.5", "ns/app@sha256:abababababab…", "app:latest"])
    );

    page.card(VAULTWARDEN).await.get("history-open").await.click().await;
    page.wait_until("the history loaded", async || {
        let summary = page.by_testid("history-summary").await.text_content().await;
        (!summary.is_empty()).then_some(summary)
    })
    .await;
    let title = page.execute("return document.getElementById('history-title').textContent", vec![]).await;
    let title = title.as_str().unwrap_or_default();
    assert_eq!(
        title.replace(['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'], ""),
        "History of vaultwarden/server:1.30.5"
    );
    let summary = page.by_testid("history-summary").await.text_content().await;
    assert_eq!(summary, "2 events · 1 digest · 1 host", "the second report named no host");
    page.assert_no_console_errors().await;
}

/// A card that comes back into view (a filter cleared) shows how long ago its update arrived
/// now, not when it was filtered out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_card_back_in_view_tells_the_time_of_now() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.before_scripts(MOVABLE_CLOCK).await;
    seed(&page, &varied_events()[..2]).await;
    page.acknowledge(HASS).await;
    page.open().await;
    let received = |card: Option<Value>| card.expect("the card")["received"]["text"].clone();
    assert_eq!(received(page.card_info(HASS).await), json!("just now"));
    page.choose("filter-status", "pending").await;
    page.wait_gone(&card_css(HASS)).await;
    page.execute("window.advanceClock(2 * 3600 * 1000)", vec![]).await;
    page.choose("filter-status", "all").await;
    page.card(HASS).await;
    assert_eq!(received(page.card_info(HASS).await), json!("2 h ago"));
    page.assert_no_console_errors().await;
}

/// Before any page script: `window.watchedCards` holds the cards an IntersectionObserver watches.
const WATCHED_CARDS: &str = r#"
(() => {
  window.watchedCards = new Set();
  const { observe, unobserve } = IntersectionObserver.prototype;
  IntersectionObserver.prototype.observe = function (el) {
    if (el.dataset?.testid === "card") window.watchedCards.add(el);
    return observe.call(this, el);
  };
  IntersectionObserver.prototype.unobserve = function (el) {
    window.watchedCards.delete(el);
    return unobserve.call(this, el);
  };
})();
"#;

/// An image whose card, sorted by name, is drawn last: on [`a_page_longer_than_the_window`],
/// out of sight.
const LATE: &str = "reg.example/zzz:1";

/// A page with `script` run before its own, 30 cards in a window of 700 pixels, sorted by name.
async fn a_page_longer_than_the_window(script: &str) -> Option<Page> {
    let page = Page::start(1280, 700).await?;
    page.before_scripts(script).await;
    seed(&page, &apps(10..40)).await;
    page.open().await;
    page.choose("sort", "name").await;
    Some(page)
}

/// A new card replaced by a newer report before it was seen is no longer watched for being seen
/// (the watcher would keep every such card in memory as long as the page is open); the card that
/// replaced it is, and so is one that comes back into the page from a filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn cards_replaced_before_they_were_seen_are_let_go() {
    let Some(page) = a_page_longer_than_the_window(WATCHED_CARDS).await else { return };
    let watched = async || {
        page.execute(
            "return [...window.watchedCards].map((c) => [c.dataset.image, c.isConnected, c.dataset.receivedAt]);",
            vec![],
        )
        .await
    };
    let mut last = Value::Null;
    for n in 1..=3 {
        page.webhook(&reported_anew(LATE, n)).await;
        let received = page
            .wait_until("the report drawn", async || {
                let at = page.card_received_at(LATE).await;
                (!at.is_null() && at != last).then_some(at)
            })
            .await;
        last = received.clone();
        page.wait_until("only the drawn card watched", async || {
            (watched().await == json!([[LATE, true, received.clone()]])).then_some(())
        })
        .await;
    }
    assert_eq!(page.card_info(LATE).await.expect("the card")["new"], "true", "still not seen");

    // Filtered out and back, it is watched again.
    page.by_testid("search").await.send_keys("app1").await;
    page.wait_gone(&card_css(LATE)).await;
    page.wait_until("nothing watched", async || (watched().await == json!([])).then_some(())).await;
    page.execute(
        "const search = document.querySelector(arguments[0]); search.value = ''; search.dispatchEvent(new Event('input'));",
        vec![json!(testid("search"))],
    )
    .await;
    page.card(LATE).await;
    page.wait_until("the card watched again", async || {
        (watched().await == json!([[LATE, true, last.clone()]])).then_some(())
    })
    .await;
    page.assert_no_console_errors().await;
}

/// A script that shortens the page's timers of `ms` to `to` milliseconds: a test then waits a
/// second, not the page's full time.
fn shortened_timers(ms: u32, to: u32) -> String {
    format!(
        r#"(() => {{
  const realSetTimeout = window.setTimeout;
  window.setTimeout = (run, ms, ...args) => realSetTimeout(run, ms === {ms} ? {to} : ms, ...args);
}})();"#
    )
}

/// A new card with only a sliver on screen (at the window's bottom edge) stays highlighted, also
/// when it was in view a moment before; once most of it stays in view it is marked seen. A sliver
/// used to count when the card had just left the view (the observer's call as it passed half).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_new_card_barely_on_screen_is_not_seen() {
    let Some(page) = a_page_longer_than_the_window(&shortened_timers(6000, 1000)).await else { return };
    page.webhook(&docker(LATE, "nas", "web", "")).await;
    page.card(LATE).await;
    // In view for two frames (the observer has called), then a fifth of it above the bottom edge.
    let shown = page
        .execute(
            "const card = document.querySelector(arguments[0]);
             card.scrollIntoView({ block: 'center' });
             const frame = () => new Promise((done) => requestAnimationFrame(() => done()));
             return frame().then(frame).then(() => {
               const box = card.getBoundingClientRect();
               window.scrollBy(0, box.top - window.innerHeight + box.height / 5);
               const after = card.getBoundingClientRect();
               return (window.innerHeight - after.top) / after.height;
             });",
            vec![json!(card_css(LATE))],
        )
        .await;
    let shown = shown.as_f64().expect("the share shown");
    assert!((0.1..0.4).contains(&shown), "the card is not a sliver on screen: {shown}");
    // Twice the page's delay: long enough for a timer wrongly started to have marked it seen.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(page.card_info(LATE).await.expect("the card")["new"], "true", "seen from a sliver");

    page.execute(
        "document.querySelector(arguments[0]).scrollIntoView({ block: 'center' })",
        vec![json!(card_css(LATE))],
    )
    .await;
    page.wait_until("the card seen", async || (page.card_info(LATE).await?["new"] == "false").then_some(()))
        .await;
    page.assert_no_console_errors().await;
}

/// A new card, once seen, loses its highlight in place: the same element, the focus where it was.
/// It was drawn anew, and the page moved the focus to the new copy of the focused button, which
/// a screen reader then read out again unasked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_seen_card_loses_its_highlight_in_place() {
    let Some(page) = Page::start(1280, 900).await else { return };
    // Long enough for the test to catch the card new on a busy machine.
    page.before_scripts(&shortened_timers(6000, 1500)).await;
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    page.webhook(&docker(LATE, "nas", "web", "")).await;
    page.wait_until("the new card highlighted", async || {
        (page.card_info(LATE).await?["new"] == "true").then_some(())
    })
    .await;
    page.execute(
        "window.newCard = document.querySelector(arguments[0]);
         window.newCard.querySelector('[data-testid=\"ack\"]').focus();
         window.focusedButton = document.activeElement;",
        vec![json!(card_css(LATE))],
    )
    .await;
    page.wait_until("the card seen", async || (page.card_info(LATE).await?["new"] == "false").then_some(()))
        .await;
    let kept = page.execute(
        "return [window.newCard === document.querySelector(arguments[0]),
                 document.activeElement === window.focusedButton,
                 !window.newCard.querySelector('[data-testid=\"new-badge\"]')];",
        vec![json!(card_css(LATE))],
    );
    assert_eq!(kept.await, json!([true, true, true]), "[the same card, the same focused button, no badge]");
    page.assert_no_console_errors().await;
}

/// A new card taller than two windows (a long list of hosts on a small screen) never has half of
/// itself on screen: with half of the window filled by it, it is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_new_card_taller_than_the_window_is_seen() {
    let Some(page) = Page::start(1280, 400).await else { return };
    page.before_scripts(&shortened_timers(6000, 300)).await;
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    for host in 0..40 {
        page.webhook(&docker(LATE, &format!("host{host:02}"), "web", "")).await;
    }
    page.wait_until("the card with every host", async || {
        (page.find_all(&testid("card-host-item")).await.len() == 40).then_some(())
    })
    .await;
    let height = page
        .execute(
            "const card = document.querySelector(arguments[0]);
             card.scrollIntoView({ block: 'start' });
             return card.getBoundingClientRect().height / window.innerHeight;",
            vec![json!(card_css(LATE))],
        )
        .await;
    assert!(height.as_f64().is_some_and(|times| times > 2.0), "the card is {height} windows tall");
    page.wait_until("the card seen", async || (page.card_info(LATE).await?["new"] == "false").then_some(()))
        .await;
    page.assert_no_console_errors().await;
}

/// Holds the page's first `tag-assignments` request back until `releaseFirstMove()` (or 10 s), and
/// counts the answered ones, so that a test can make two moves race.
const FIRST_MOVE_HELD_BACK: &str = r#"
(() => {
  const realFetch = window.fetch;
  let first = true;
  window.movesAnswered = 0;
  window.fetch = async function (input, init) {
    if (!String(input).includes("api/tag-assignments")) return realFetch.call(this, input, init);
    if (first) {
      first = false;
      await new Promise((resolve) => {
        window.releaseFirstMove = resolve;
        setTimeout(resolve, 10000);
      });
    }
    try {
      return await realFetch.call(this, input, init);
    } finally {
      window.movesAnswered += 1;
    }
  };
})();
"#;

/// A card moved twice in quick succession ends up where it was moved last, also when the first
/// request is slow to leave: the page sends a card's moves one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn two_quick_moves_of_a_card_end_where_it_was_moved_last() {
    let Some(page) = Page::start(1280, 1000).await else { return };
    seed(&page, &varied_events()[..2]).await;
    let (first, last) =
        (page.create_tag("first").await.to_string(), page.create_tag("last").await.to_string());
    page.open().await;
    page.section(&last).await;
    page.execute(FIRST_MOVE_HELD_BACK, vec![]).await;

    for target in [&first, &last] {
        page.card(NGINX).await.get("move-menu").await.click().await;
        page.wait_for(&format!(r#"{}[data-tag-id="{target}"]"#, testid("move-option"))).await.click().await;
        page.wait_gone(&testid("move-options")).await;
        page.wait_in_section(NGINX, target).await;
    }
    // Sent together, the second move is answered while the first is held; sent one after the
    // other, it waits for the first. Give it a second either way, then let the first go.
    for _ in 0..20 {
        if page.execute("return window.movesAnswered", vec![]).await != json!(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    page.execute("window.releaseFirstMove()", vec![]).await;
    page.wait_until("both moves to be answered", async || {
        (page.execute("return window.movesAnswered", vec![]).await == json!(2)).then_some(())
    })
    .await;
    assert_eq!(page.updates().await[NGINX]["tag"]["name"], "last", "the server kept the first move");
    page.wait_in_section(NGINX, &last).await;
    page.assert_no_console_errors().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn theme_toggle_cycles_and_is_remembered() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.open().await;
    let mode = async || page.by_testid("theme-toggle").await.attr("data-mode").await.unwrap_or_default();
    let theme = async || page.execute("return document.documentElement.dataset.theme ?? null", vec![]).await;
    let background = async || {
        page.execute("return getComputedStyle(document.body).backgroundColor", vec![])
            .await
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(mode().await, "system");
    assert_eq!(theme().await, Value::Null);

    page.by_testid("theme-toggle").await.click().await;
    assert_eq!(mode().await, "light");
    assert_eq!(theme().await, "light");
    let light = background().await;
    page.by_testid("theme-toggle").await.click().await;
    assert_eq!(mode().await, "dark");
    assert_eq!(theme().await, "dark");
    let dark = page.wait_until("the dark background", async || {
        let dark = background().await;
        (dark != light).then_some(dark)
    });
    let dark = dark.await;

    page.reload().await;
    page.wait_loaded().await;
    assert_eq!(mode().await, "dark", "remembered after a reload");
    assert_eq!(theme().await, "dark");
    assert_eq!(background().await, dark);

    page.by_testid("theme-toggle").await.click().await;
    assert_eq!(mode().await, "system");
    assert_eq!(theme().await, Value::Null);
    page.reload().await;
    page.wait_loaded().await;
    assert_eq!(mode().await, "system");

    // In system mode the page follows the system's scheme; an explicit choice overrides it.
    let dark_system = json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] });
    page.cdp("Emulation.setEmulatedMedia", dark_system).await;
    page.wait_until("the system's dark scheme", async || (background().await == dark).then_some(())).await;
    page.by_testid("theme-toggle").await.click().await;
    assert_eq!(mode().await, "light");
    page.wait_until("the light theme on a dark system", async || (background().await == light).then_some(()))
        .await;
    page.assert_no_console_errors().await;
}

/// The README's screenshot: a realistic set in the light theme at desktop width, with one update
/// just arrived. Always taken and checked; written to `SCREENSHOT_OUT` when that is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn screenshot_for_the_readme() {
    let Some(page) = Page::start(1280, 1100).await else { return };
    // (image, host, container, registry page, group, acknowledged)
    const IMAGES: [(&str, &str, &str, &str, &str, bool); 10] = [
        ("docker.io/library/postgres:16.3", "db-1", "postgres", "hub:_/postgres", "infrastructure", true),
        ("docker.io/library/redis:7.2.5", "db-1", "redis", "hub:_/redis", "infrastructure", false),
        ("docker.io/library/traefik:v3.0.2", "edge", "traefik", "hub:_/traefik", "infrastructure", false),
        (
            "docker.io/grafana/grafana:11.0.0",
            "monitor",
            "grafana",
            "hub:r/grafana/grafana",
            "infrastructure",
            true,
        ),
        ("lscr.io/linuxserver/jellyfin:10.9.6", "nas", "jellyfin", "", "media", false),
        (
            "ghcr.io/immich-app/immich-server:v1.106.4",
            "nas",
            "immich_server",
            "gh:immich-app/immich",
            "media",
            true,
        ),
        (
            "ghcr.io/home-assistant/home-assistant:2024.6.1",
            "pi",
            "homeassistant",
            "gh:home-assistant/core",
            "smart home",
            false,
        ),
        ("docker.io/pihole/pihole:2024.05.0", "pi", "pihole", "hub:r/pihole/pihole", "smart home", false),
        ("docker.io/vaultwarden/server:1.30.5", "nas", "vaultwarden", "hub:r/vaultwarden/server", "", false),
        ("docker.io/library/nginx:1.27.0", "edge", "web", "hub:_/nginx", "", false),
    ];
    let link = |short: &str| match short.split_once(':') {
        Some(("hub", path)) => format!("https://hub.docker.com/{path}"),
        Some(("gh", repo)) => format!("https://github.com/{repo}/pkgs/container"),
        _ => String::new(),
    };
    for (image, host, container, page_link, _, _) in IMAGES {
        page.webhook(&docker(image, host, container, &link(page_link))).await;
    }
    let mut tags = std::collections::HashMap::new();
    for name in ["infrastructure", "media", "smart home"] {
        tags.insert(name, page.create_tag(name).await);
    }
    for (image, _, _, _, group, acknowledged) in IMAGES {
        if let Some(id) = tags.get(group) {
            page.assign(image, *id).await;
        }
        if acknowledged {
            page.acknowledge(image).await;
        }
    }

    // The light theme, chosen the way a user does.
    page.open().await;
    page.by_testid("theme-toggle").await.click().await;
    assert_eq!(page.by_testid("theme-toggle").await.attr("data-mode").await.as_deref(), Some("light"));
    assert_eq!(page.cards().await.len(), IMAGES.len());
    page.wait_title("Diun Dashboard (7)").await;

    // One more arrives while the page is open: highlighted, announced by a toast.
    const KUMA: &str = "docker.io/louislam/uptime-kuma:1.23.13";
    page.webhook(&docker(KUMA, "monitor", "uptime-kuma", &link("hub:r/louislam/uptime-kuma"))).await;
    page.assign(KUMA, tags["infrastructure"]).await;
    page.wait_in_section(KUMA, &tags["infrastructure"].to_string()).await;
    page.wait_for(&testid("toast")).await;
    page.execute("document.activeElement?.blur(); window.scrollTo(0, 0); return null", vec![]).await;
    tokio::time::sleep(Duration::from_millis(400)).await; // transitions settle

    let png = page.screenshot().await;
    let (width, height) = webdriver::png_size(&png).expect("the screenshot is a PNG");
    assert_eq!((width, height), (1280, 1100), "screenshot size");
    if let Some(out) = std::env::var_os("SCREENSHOT_OUT").filter(|out| !out.is_empty()) {
        std::fs::write(&out, &png).unwrap_or_else(|err| panic!("write {out:?}: {err}"));
        eprintln!("wrote {} ({} bytes)", out.to_string_lossy(), png.len());
    }
    page.assert_no_console_errors().await;
}

#[test]
fn base64_decodes_what_webdriver_sends() {
    assert_eq!(webdriver::base64_decode("aGVsbG8="), b"hello");
    assert_eq!(webdriver::base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(webdriver::base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
    assert_eq!(webdriver::png_size(b"not a png"), None);
}

/// Groups hold up under filters and odd senders: a group created while a filter is on is drawn
/// (empty, ready to take a card), as is an empty group made before; a name with two spaces in a
/// row does not make the group filter rebuild at every redraw (an open list would close); a
/// very long DIUN status ends in an ellipsis instead of squeezing the card's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn groups_hold_up_under_filters_and_odd_names() {
    const LONG: &str = "registry.example/long/status:1";
    let Some(page) = Page::start(1280, 1200).await else { return };
    seed(&page, &varied_events()[..2]).await;
    let mut long = docker(LONG, "nas", "web", "");
    long["status"] = json!("x".repeat(80));
    page.webhook(&long).await;
    let spaced = page.create_tag("my  group").await;
    page.open().await;

    let widths = page
        .execute(
            r#"const card = document.querySelector(arguments[0]);
               const width = (id) => card.querySelector(`[data-testid="${id}"]`).getBoundingClientRect().width;
               return [width("card-status"), width("card-name"), card.getBoundingClientRect().width];"#,
            vec![json!(card_css(LONG))],
        )
        .await;
    let [status, name, card] = [0, 1, 2].map(|i| widths[i].as_f64().unwrap());
    assert!(status < card * 0.4, "the status pill takes {status} of the card's {card} px");
    assert!(name > card * 0.3, "the card's name is squeezed to {name} of {card} px");
    let title = page.card(LONG).await.get("card-status").await.attr("title").await.unwrap_or_default();
    assert!(title.ends_with(&"x".repeat(80)), "the whole status is in the title: {title:?}");

    // Under a filter: the empty group made before, and one created now, are both drawn.
    page.choose("filter-status", "pending").await;
    page.section(&spaced.to_string()).await;
    let input = page.by_testid("new-group-name").await;
    input.click().await;
    input.send_keys("prod").await;
    page.by_testid("new-group-submit").await.click().await;
    let prod = page
        .wait_until("the group prod to be created", async || {
            let tags = page.api("GET", "/api/tags", None).await.json();
            tags.as_array().unwrap().iter().find(|tag| tag["name"] == "prod").map(|tag| tag["id"].clone())
        })
        .await;
    page.section(&prod.to_string()).await;

    // A redraw (a new card arriving) keeps the group filter's options as they are.
    page.wait_until("the group filter to list prod", async || {
        page.options("filter-group").await.contains(&prod.to_string()).then_some(())
    })
    .await;
    page.execute("window.__groupOptions = [...document.getElementById('filter-group').options]", vec![])
        .await;
    page.webhook(&docker("registry.example/late/arrival:1", "nas", "web", "")).await;
    page.card("registry.example/late/arrival:1").await;
    let kept = page
        .execute(
            "const now = [...document.getElementById('filter-group').options];
             return now.length === window.__groupOptions.length && now.every((o, i) => o === window.__groupOptions[i]);",
            vec![],
        )
        .await;
    assert_eq!(kept, json!(true), "the group filter was rebuilt by a redraw");

    // Every image in a group: an empty Untagged is not drawn beside a filter's results.
    let prod = prod.as_i64().unwrap();
    for image in page.updates().await.as_object().unwrap().keys() {
        page.assign(image, prod).await;
    }
    page.wait_gone(&format!(r#"{}[data-tag-id="untagged"]"#, testid("group"))).await;
    page.choose("filter-status", "all").await;
    page.section("untagged").await;
    page.assert_no_console_errors().await;
}

/// Before any page script: a `DELETE /api/tags/<id>` is sent twice, as if another tab deleted
/// the group just before this one.
const DELETED_ELSEWHERE_FIRST: &str = r#"
(() => {
  const realFetch = window.fetch;
  window.fetch = async function (input, init) {
    if (init?.method === "DELETE" && /api\/tags\/\d+$/.test(String(input))) {
      await realFetch.call(this, input, init);
    }
    return realFetch.call(this, input, init);
  };
})();
"#;

/// Deleting a group another tab deleted first (the server answers 404) is what was asked for:
/// the page says the group was deleted, not that it could not be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_group_deleted_elsewhere_first_is_deleted_here_without_an_error() {
    let Some((page, media)) = page_with_group(DELETED_ELSEWHERE_FIRST, 2, "media", &[NGINX]).await else {
        return;
    };
    page.section(&media.to_string()).await.get("group-delete").await.click().await;
    page.section(&media.to_string()).await.get("group-delete-confirm").await.click().await;
    page.wait_gone(&format!(r#"{}[data-tag-id="{media}"]"#, testid("group"))).await;
    page.wait_until("the deletion announced", async || {
        let said = page.execute("return document.getElementById('announcer').textContent", vec![]).await;
        (said == json!("Deleted the group media")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(page.find(&testid("error-banner")).await.is_none(), "an error for a group that is gone");
    page.wait_in_section(NGINX, "untagged").await;
    assert!(page.api("GET", "/api/tags", None).await.json().as_array().unwrap().is_empty());
}

/// A group's deletion that fails, with the page filtered to that group, leaves the filter as it
/// was: deleting cleared it at once, and a refusal left the page on "All groups".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_group_deletion_refused_keeps_its_filter() {
    let Some((page, media)) = page_with_group(WRITES_ANSWER_503, 2, "media", &[NGINX]).await else { return };
    let media = media.to_string();
    page.choose("filter-group", &media).await;
    page.execute("window.writesAnswer = 'refused'", vec![]).await;
    page.section(&media).await.get("group-delete").await.click().await;
    page.section(&media).await.get("group-delete-confirm").await.click().await;
    wait_for_banner(&page, "Could not delete the group media").await;
    page.wait_until("the group's filter back", async || {
        let value = page.execute("return document.getElementById('filter-group').value", vec![]).await;
        (value == json!(media)).then_some(())
    })
    .await;
    page.section(&media).await;
    assert_eq!(page.api("GET", "/api/tags", None).await.json().as_array().map(Vec::len), Some(1));
    page.assert_no_console_errors_besides_failed_requests().await;
}

/// A group's heading reads its count in words ("2 updates"; "1 of 2 shown" when filtered): a
/// bare "2" after the name said nothing of what it counts. And a change of filters announces
/// how many updates it leaves on screen (it said nothing unless it left none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn counts_are_read_in_words() {
    let Some((page, media)) = page_with_group("", 3, "media", &[NGINX, HASS]).await else { return };
    let spoken = async || page.execute(SPOKEN_TEXT, vec![json!(format!("group-{media}-title"))]).await;
    page.wait_until("the heading read in words", async || {
        (spoken().await == json!("media 2 updates, 2 pending")).then_some(())
    })
    .await;
    let said = async || page.execute("return document.getElementById('announcer').textContent", vec![]).await;
    page.by_testid("search").await.send_keys("nginx").await;
    page.wait_until("the filtered count read in words", async || {
        (spoken().await == json!("media 1 of 2 shown, 2 pending")).then_some(())
    })
    .await;
    // A change of filters says what it leaves on screen.
    page.wait_until("the count shown announced", async || {
        (said().await == json!("1 update shown")).then_some(())
    })
    .await;
    page.by_testid("search").await.send_keys("zzz").await;
    page.wait_until("no match announced", async || {
        (said().await == json!("No updates match these filters")).then_some(())
    })
    .await;
}

/// A text selection dragged from inside the history dialog out over its backdrop leaves the
/// dialog open (the browser sends its click to the dialog element); a click on the backdrop
/// closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn selecting_text_out_of_the_history_dialog_does_not_close_it() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    page.card(NGINX).await.get("history-open").await.click().await;
    let dialog = page.wait_for(&testid("history-dialog")).await;
    let start = page
        .execute(
            "const r = document.getElementById('history-image').getBoundingClientRect();
             return [Math.round(r.left + 4), Math.round(r.top + r.height / 2)];",
            vec![],
        )
        .await;
    let (x, y) = (start[0].as_i64().unwrap(), start[1].as_i64().unwrap());
    let mut drag = vec![move_to((x, y)), json!({ "type": "pointerDown", "button": 0 })];
    drag.extend((1..=5).map(|step| move_to((x - (x - 5) * step / 5, y - (y - 5) * step / 5))));
    drag.push(json!({ "type": "pointerUp", "button": 0 }));
    with_pointer(&page, "mouse", drag).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(dialog.attr("open").await.is_some(), "a selection dragged out closed the dialog");

    press_at(&page, "mouse", (5, 5)).await;
    page.wait_gone(&testid("history-dialog")).await;
    page.assert_no_console_errors().await;
}

/// Closing an error banner from the keyboard leaves the focus on the page: on the next banner's
/// close button while there is one, then on the list of updates, never on `<body>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn closing_a_banner_from_the_keyboard_keeps_the_focus_on_the_page() {
    let Some(page) = Page::start(1280, 900).await else { return };
    seed(&page, &varied_events()[..1]).await;
    page.open().await;
    // Two names the server refuses (a control character, U+0085): two banners.
    refuse_group_names(&page, &["night\u{85}shift", "day\u{85}shift"]).await;
    let active_id = async || page.execute("return document.activeElement.id", vec![]).await;

    page.execute("document.querySelectorAll('[data-testid=\"error-dismiss\"]')[0].focus()", vec![]).await;
    page.press(keys::ENTER).await;
    page.wait_until("one banner left", async || {
        (page.find_all(&testid("error-banner")).await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(page.focus().await.0.as_deref(), Some("error-dismiss"), "on the other banner's close button");
    page.press(keys::ENTER).await;
    page.wait_gone(&testid("error-banner")).await;
    assert_eq!(active_id().await, json!("updates"), "the focus fell back to <body>");
    // Where the focus falls back has a name to be read out.
    let named = page.execute(
        "const el = document.getElementById('updates'); return [el.getAttribute('role'), el.getAttribute('aria-label')];",
        vec![],
    );
    assert_eq!(named.await, json!(["region", "Updates"]));
}

/// A sender's right-to-left override (U+202E), never closed, stays within its name: the rest of
/// the history's line ("· 1 report") still reads left to right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "drives Chromium: run by `cargo xtask test`, or with --ignored and CHROMEDRIVER set"]
async fn a_right_to_left_override_in_a_host_name_stays_in_it() {
    let Some(page) = Page::start(1280, 900).await else { return };
    page.webhook(&docker(NGINX, "nas\u{202E}", "web", "")).await;
    page.open().await;
    page.card(NGINX).await.get("history-open").await.click().await;
    page.wait_for(".digest-meta").await;
    let reading = page
        .execute(
            r#"const meta = document.querySelector(".digest-meta");
               const walker = document.createTreeWalker(meta, NodeFilter.SHOW_TEXT);
               let node;
               while ((node = walker.nextNode()) && !node.data.includes("1 report"));
               const at = node.data.indexOf("report");
               const left = (i) => {
                 const range = document.createRange();
                 range.setStart(node, i);
                 range.setEnd(node, i + 1);
                 return range.getBoundingClientRect().left;
               };
               return [meta.textContent, left(at) < left(at + 5)];"#,
            vec![],
        )
        .await;
    assert!(reading[0].as_str().unwrap().contains("nas"), "{reading}");
    assert_eq!(reading[1], json!(true), "the line after the host name reads right to left: {reading}");

    // On the card too, once a second host lists the hosts one per line: the containers after
    // the host name read left to right.
    page.active().await.send_keys(keys::ESCAPE).await;
    page.webhook(&docker(NGINX, "pi", "web", "")).await;
    page.wait_until("both hosts listed", async || {
        (page.find_all(&testid("card-host-place")).await.len() == 2).then_some(())
    })
    .await;
    let reversed = page
        .execute(
            r#"const item = document.querySelector('[data-testid="card-host-item"][data-hostname="nas\u202E"]');
               const node = item.querySelector('[data-testid="card-host-place"]').firstChild;
               const at = node.data.indexOf("web");
               const left = (i) => {
                 const range = document.createRange();
                 range.setStart(node, i);
                 range.setEnd(node, i + 1);
                 return range.getBoundingClientRect().left;
               };
               return left(at) > left(at + 2);"#,
            vec![],
        )
        .await;
    assert_eq!(reversed, json!(false), "the container after the host name reads right to left");
}
