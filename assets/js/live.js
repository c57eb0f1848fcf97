// The server's change feed (GET api/stream, Server-Sent Events). The stream counts as open only
// once its first event (`hello`) arrived, so a proxy that holds the response back leaves the page
// polling. The browser reconnects a broken stream by itself; when it gives up (an HTTP error, a
// proxy answering something else) we start a new one with a growing delay. A hidden tab pauses its
// stream: over HTTP/1.1 a browser keeps at most six connections per server, and every open stream
// holds one, so a few background tabs must not starve the visible one.
//
// A connection that died without a word (a laptop's sleep, a NAT or proxy dropping it, the
// server's host gone) fires no `error`: the page would say Live and show nothing new until its
// slow safety poll. The server sends `ping` after every quiet `ping_ms` (named in `hello`), so a
// stream silent for PINGS_MISSED of them is dropped and started again.

const RETRY_MIN_MS = 5000;
const RETRY_MAX_MS = 60000;
const PINGS_MISSED = 2.5;

/**
 * url: relative, so the page also works under a sub-path.
 * onOpen(epoch): the stream is open (again): anything may have changed meanwhile. `epoch` names
 *   the server process that numbers the changes (see sync.js), or is null.
 * onChange(change): {kind: "update"|"acknowledge"|"tag"|"remove", image?, seq?} or {kind: "resync"}.
 * onDown(wasOpen): the stream broke or could not open.
 * Returns { isOpen(), pause(), resume() }.
 */
export function connectStream(url, { onOpen, onChange, onDown }) {
  let source = null;
  let open = false;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = 0;
  let silenceTimer = 0;
  let silenceMs = 0; // 0 while the server names no ping interval (an older one)

  function heard() {
    clearTimeout(silenceTimer);
    silenceTimer = silenceMs ? setTimeout(silent, silenceMs) : 0;
  }

  function silent() {
    const wasOpen = open;
    pause();
    start();
    onDown(wasOpen);
  }

  function parse(data) {
    try {
      const change = JSON.parse(data);
      return change && typeof change === "object" ? change : { kind: "resync" };
    } catch {
      return { kind: "resync" };
    }
  }

  function start() {
    retryTimer = 0;
    const es = new EventSource(url);
    source = es;
    es.addEventListener("hello", (e) => {
      retryMs = RETRY_MIN_MS;
      const hello = parse(e.data);
      silenceMs = hello.ping_ms > 0 ? hello.ping_ms * PINGS_MISSED : 0;
      heard();
      if (!open) {
        open = true;
        onOpen(hello.epoch ?? null);
      }
    });
    es.addEventListener("change", (e) => {
      heard();
      onChange(parse(e.data));
    });
    es.addEventListener("resync", () => {
      heard();
      onChange({ kind: "resync" });
    });
    es.addEventListener("ping", heard);
    es.addEventListener("error", () => {
      if (es !== source) return;
      clearTimeout(silenceTimer);
      const wasOpen = open;
      open = false;
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        source = null;
        retryTimer = setTimeout(start, retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      }
      onDown(wasOpen);
    });
  }

  function pause() {
    clearTimeout(retryTimer);
    clearTimeout(silenceTimer);
    retryTimer = 0;
    source?.close();
    source = null;
    open = false;
  }

  function resume() {
    if (!source && !retryTimer && "EventSource" in window) start();
  }

  resume();
  return { isOpen: () => open, pause, resume };
}
