// Drag and drop of cards between group sections with pointer events, so mouse, pen and touch all
// work (HTML5 drag and drop does not fire on phones). Mouse and pen drag from the grip, or from
// anywhere on a card that is neither a control nor its text to copy; touch drags from the grip at
// once, or from the card after a long press (so a normal swipe still scrolls the page). Escape
// cancels a drag.

const CARD = '[data-testid="card"]';
const GROUP = '[data-testid="group"]';
const CONTROLS = "button, a, input, select, textarea, [role='menu']";
/** A card's text a mouse selects rather than drags by: an image's name, tag or host, copied into a terminal. */
const TEXT_TO_COPY = ".card-name, .tag-chip, [data-testid='card-registry'], .card-meta dd";
const START_DISTANCE = 5;
const LONG_PRESS_MS = 350;
const EDGE = 48;
const EDGE_DELAY_MS = 400;

/**
 * root: the element holding the group sections.
 * onDrop(image, tagKey): tagKey is the target section's data-tag-id ("untagged" or an id).
 * onDragChange(active): told when a drag starts and ends (the page holds re-rendering meanwhile).
 */
export function initDragAndDrop(root, { onDrop, onDragChange }) {
  let drag = null;

  function reset() {
    if (!drag) return;
    clearTimeout(drag.pressTimer);
    cancelAnimationFrame(drag.scrollFrame);
    drag.card.classList.remove("is-dragging", "is-armed");
    drag.ghost?.remove();
    drag.target?.classList.remove("is-drop-target");
    document.body.classList.remove("is-dragging-card");
    const wasStarted = drag.started;
    drag = null;
    if (wasStarted) onDragChange(false);
  }

  function targetAt(x, y) {
    const el = document.elementFromPoint(x, y);
    const section = el && el.closest(GROUP);
    return section && root.contains(section) ? section : null;
  }

  function setTarget(section) {
    if (drag.target === section) return;
    drag.target?.classList.remove("is-drop-target");
    drag.target = section;
    if (section && section.dataset.tagId !== drag.from) section.classList.add("is-drop-target");
  }

  function start() {
    drag.started = true;
    const rect = drag.card.getBoundingClientRect();
    drag.offsetX = drag.startX - rect.left;
    drag.offsetY = drag.startY - rect.top;
    const ghost = drag.card.cloneNode(true);
    // The ghost is decoration: no test ids, ids or focusable controls in it.
    for (const el of [ghost, ...ghost.querySelectorAll("*")]) {
      el.removeAttribute("data-testid");
      el.removeAttribute("id");
      if (el.matches(CONTROLS)) el.setAttribute("tabindex", "-1");
    }
    ghost.setAttribute("aria-hidden", "true");
    ghost.classList.add("card-ghost");
    ghost.classList.remove("is-armed");
    ghost.style.width = `${rect.width}px`;
    document.body.append(ghost);
    drag.ghost = ghost;
    drag.card.classList.add("is-dragging");
    drag.card.classList.remove("is-armed");
    document.body.classList.add("is-dragging-card");
    window.getSelection()?.removeAllRanges();
    onDragChange(true);
  }

  function move(x, y) {
    drag.x = x;
    drag.y = y;
    drag.ghost.style.transform = `translate(${x - drag.offsetX}px, ${y - drag.offsetY}px) rotate(1.5deg)`;
    setTarget(targetAt(x, y));
    if (!drag.scrollFrame) autoScroll();
  }

  // Held near the top or bottom edge, the page scrolls, so every section can be reached. The
  // short wait keeps a quick drag that merely passes the edge from scrolling under the pointer.
  function autoScroll() {
    if (!drag || !drag.started) return;
    drag.scrollFrame = 0;
    const h = window.innerHeight;
    let dy = 0;
    if (drag.y < EDGE) dy = -Math.ceil((EDGE - drag.y) / 4);
    else if (drag.y > h - EDGE) dy = Math.ceil((drag.y - (h - EDGE)) / 4);
    if (!dy) {
      drag.edgeSince = 0;
      return;
    }
    const now = performance.now();
    drag.edgeSince ||= now;
    if (now - drag.edgeSince > EDGE_DELAY_MS) {
      window.scrollBy(0, dy);
      setTarget(targetAt(drag.x, drag.y));
    }
    drag.scrollFrame = requestAnimationFrame(autoScroll);
  }

  root.addEventListener("pointerdown", (e) => {
    if (drag || !e.isPrimary || (e.pointerType === "mouse" && e.button !== 0)) return;
    const card = e.target.closest(CARD);
    if (!card || !root.contains(card) || e.target.closest(CONTROLS)) return;
    const onHandle = Boolean(e.target.closest(".drag-handle"));
    if (e.pointerType !== "touch" && !onHandle && e.target.closest(TEXT_TO_COPY)) return;
    drag = {
      card,
      image: card.dataset.image,
      from: card.dataset.tagId,
      pointerId: e.pointerId,
      startX: e.clientX,
      startY: e.clientY,
      x: e.clientX,
      y: e.clientY,
      armed: e.pointerType !== "touch" || onHandle,
      started: false,
      target: null,
      ghost: null,
      pressTimer: 0,
      scrollFrame: 0,
      edgeSince: 0,
    };
    if (onHandle) e.preventDefault();
    if (!drag.armed) {
      drag.pressTimer = setTimeout(() => {
        if (!drag) return;
        drag.armed = true;
        card.classList.add("is-armed");
      }, LONG_PRESS_MS);
    }
  });

  window.addEventListener("pointermove", (e) => {
    if (!drag || e.pointerId !== drag.pointerId) return;
    // The button was let go where the page could not hear it (in another window after
    // Alt-Tab): the next click must not drop the card, and redraws must not stay held.
    if (e.pointerType === "mouse" && e.buttons === 0) return reset();
    const distance = Math.hypot(e.clientX - drag.startX, e.clientY - drag.startY);
    if (!drag.started) {
      if (!drag.armed) {
        if (distance > 8) reset(); // the finger is scrolling, not pressing
        return;
      }
      if (distance < START_DISTANCE) return;
      start();
    }
    e.preventDefault();
    move(e.clientX, e.clientY);
  });

  window.addEventListener("pointerup", (e) => {
    if (!drag || e.pointerId !== drag.pointerId) return;
    if (!drag.started) return reset();
    const section = targetAt(e.clientX, e.clientY) || drag.target;
    const { image, from } = drag;
    reset();
    // The click that follows a mouse drag must not reach whatever is under the pointer.
    const stopClick = (ev) => {
      ev.stopPropagation();
      ev.preventDefault();
    };
    window.addEventListener("click", stopClick, { capture: true, once: true });
    setTimeout(() => window.removeEventListener("click", stopClick, true), 0);
    if (section && section.dataset.tagId !== from) onDrop(image, section.dataset.tagId);
  });

  window.addEventListener("pointercancel", (e) => {
    if (drag && e.pointerId === drag.pointerId) reset();
  });

  window.addEventListener("keydown", (e) => {
    if (drag && e.key === "Escape") reset();
  });

  // Leaving the window (Alt-Tab, another app, a hidden tab) ends a drag: its pointerup may
  // never come.
  window.addEventListener("blur", reset);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) reset();
  });

  // While a touch drag is armed, the finger must not scroll the page.
  root.addEventListener(
    "touchmove",
    (e) => {
      if (drag && (drag.armed || drag.started)) e.preventDefault();
    },
    { passive: false },
  );
  root.addEventListener("contextmenu", (e) => {
    if (drag && drag.armed) e.preventDefault();
  });

  // Scripted HTML5 drag events (some test tools and assistive software send these) are honoured
  // too; cards are not `draggable`, so browsers never start a native drag themselves.
  let html5Image = null;
  root.addEventListener("dragstart", (e) => {
    // A card's link is natively draggable (into the address bar, say): that drag is the
    // link's, not a move of the card.
    if (e.target.closest?.(CONTROLS)) return;
    const card = e.target.closest?.(CARD);
    if (!card) return;
    html5Image = card.dataset.image;
    e.dataTransfer?.setData("text/plain", html5Image);
  });
  // A drag that ended anywhere else must not leave its card to the next drop from outside.
  root.addEventListener("dragend", () => {
    html5Image = null;
  });
  root.addEventListener("dragover", (e) => {
    if (e.target.closest?.(GROUP)) e.preventDefault();
  });
  root.addEventListener("drop", (e) => {
    const section = e.target.closest?.(GROUP);
    const image = e.dataTransfer?.getData("text/plain") || html5Image;
    html5Image = null;
    if (!section || !image) return;
    e.preventDefault();
    const card = [...root.querySelectorAll(CARD)].find((c) => c.dataset.image === image);
    if (card && card.dataset.tagId !== section.dataset.tagId) onDrop(image, section.dataset.tagId);
  });
}
