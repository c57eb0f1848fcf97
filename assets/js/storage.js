// localStorage that never throws: private modes and blocked storage just forget.

const PREFIX = "diun-dashboard:";

export function load(key, fallback) {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

export function save(key, value) {
  try {
    localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    /* quota or privacy mode: not worth bothering the user */
  }
}

export function has(key) {
  try {
    return localStorage.getItem(PREFIX + key) !== null;
  } catch {
    return false;
  }
}

/**
 * Calls `apply(value)` when another tab saves `key` (the browser tells every other tab of the
 * origin), with `fallback` when it removed it or saved something unreadable.
 */
export function onChange(key, fallback, apply) {
  window.addEventListener("storage", (e) => {
    if (e.storageArea !== localStorage || (e.key !== null && e.key !== PREFIX + key)) return;
    let value = fallback;
    try {
      if (e.newValue !== null && e.key !== null) value = JSON.parse(e.newValue);
    } catch {
      /* left as the fallback */
    }
    apply(value);
  });
}
