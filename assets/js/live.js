// The server's change feed (GET api/stream, Server-Sent Events). The stream counts as open only
// once its first event (`hello`) arrived, so a proxy that holds the response back leaves the page
// polling. The browser reconnects a broken stream by itself; when it gives up (an HTTP error, a
// proxy answering something else) we start a new one with a growing delay. A hidden tab pauses its
// stream: over HTTP/1.1 a browser keeps at most six connections per server, and every open stream
// holds one, so a few background tabs must not starve the visible one.

const RETRY_MIN_MS = 5000;
const RETRY_MAX_MS = 60000;

/**
 * url: relative, so the page also works under a sub-path.
 * onOpen(epoch): the stream is open (again): anything may have changed meanwhile. `epoch` names
 *   the server process that numbers the changes (see sync.js), or is null.
 * onChange(change): {kind: "update"|"acknowledge"|"tag", image?, seq?} or {kind: "resync"}.
 * onDown(wasOpen): the stream broke or could not open.
 * Returns { isOpen(), pause(), resume() }.
 */
export function connectStream(url, { onOpen, onChange, onDown }) {
  let source = null;
  let open = false;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = 0;

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
      if (!open) {
        open = true;
        onOpen(parse(e.data).epoch ?? null);
      }
    });
    es.addEventListener("change", (e) => onChange(parse(e.data)));
    es.addEventListener("resync", () => onChange({ kind: "resync" }));
    es.addEventListener("error", () => {
      if (es !== source) return;
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
