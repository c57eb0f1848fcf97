// What the buttons do. Each change is shown at once (an overlay on the last server snapshot),
// sent to the server, and rolled back with a visible error if the server refuses.

import { api, ApiError } from "./api.js";
import { addOverlay, commitOverlay, confirmedView, dropOverlay, pendingEntries, view } from "./state.js";
import { showError, announce } from "./feedback.js";
import { displayName, parseImage } from "./image.js";
import { plural, isolated } from "./words.js";

const nowIso = () => new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
const shortName = (image) => isolated(displayName(parseImage(image)));

/** Shows `entry` acknowledged, if it is the report the request named (`until`: the newest one it
 * covers) or an older one: a report that arrived while the request was on its way stays pending
 * on the server, and so it does here. */
function acknowledgeEntry(entry, until) {
  if (entry && !entry.acknowledged && !(until && entry.received_at > until)) {
    entry.acknowledged = true;
    entry.acknowledged_at = nowIso();
  }
}

/** refresh(): fetch a new snapshot (returns a promise). */
export function createActions(refresh) {
  // A card's moves reach the server one after the other: two sent together (a quick drag, then
  // the menu) may be handled in either order, and the card would stay where it went first.
  const lastMove = new Map();
  function afterEarlierMoves(image, call) {
    const move = (lastMove.get(image) ?? Promise.resolve()).catch(() => {}).then(call);
    lastMove.set(image, move);
    const forget = () => {
      if (lastMove.get(image) === move) lastMove.delete(image);
    };
    move.then(forget, forget);
    return move;
  }

  // Asked right after a fresh snapshot (the dismissal's check): nothing to fetch again.
  function nothingToDismiss() {
    announce("Nothing to dismiss: no update is pending");
    return Promise.resolve(true);
  }

  /** Whether the [image, entry] pairs asked to be acknowledged are, in `v`: some acknowledged,
   * and each acknowledged, gone, or reported anew since (a newer report stays pending on the
   * server, as asked). */
  function coveredOrSuperseded(v, pairs) {
    const acknowledged = ([image]) => v.updates[image]?.acknowledged === true;
    const passed = ([image, asked]) => {
      const now = v.updates[image];
      return !now || now.received_at !== asked.received_at;
    };
    return pairs.some(acknowledged) && pairs.every((pair) => acknowledged(pair) || passed(pair));
  }

  /** The newest `received_at` of [image, entry] pairs (the server's fixed-width UTC format sorts
   * as text). */
  function newestReport(pairs) {
    return pairs.reduce((newest, [, entry]) => (entry.received_at > newest ? entry.received_at : newest), "") || null;
  }

  /**
   * Whether the server's state, read after `err`, should decide between success and failure: a
   * server error may come after the write was applied (a database that did not answer in time,
   * then committed; a connection lost after the COMMIT), and so may no answer at all (the
   * connection broke on its way back; a server that is gone fails the read at once). Not after
   * the request's time ran out: the read would make the error wait as long again.
   */
  const outcomeUnsure = (err) =>
    !(err instanceof ApiError) || err.status >= 500 || (err.status === 0 && !err.timedOut);

  /**
   * Runs `call` on each of `items`, four at a time: one that fails must not stop the ones after
   * it, as the user confirmed them all. The failures, in order.
   */
  async function eachInFours(items, call) {
    const failures = [];
    for (let i = 0; i < items.length; i += 4) {
      const results = await Promise.allSettled(items.slice(i, i + 4).map(call));
      for (const result of results) if (result.status === "rejected") failures.push(result.reason);
    }
    return failures;
  }

  /** One error for a run of which `failures` failed, after what `done` says went; unsure if any of them is. */
  function partly(done, failures) {
    const decisive = failures.find(outcomeUnsure) ?? failures[0];
    return new ApiError(
      `${done}; ${failures.length} ${failures.length === 1 ? "was" : "were"} not: ${failures[0].message}`,
      decisive instanceof ApiError ? decisive.status : 500,
      { timedOut: decisive.timedOut === true },
    );
  }

  /**
   * Shows `apply` at once, sends `call`, and says how it went. After a failure whose outcome is
   * unsure, a fresh snapshot decides: `done(view)` true means what was asked for holds on the
   * server, and the page says so rather than "Could not …" over a card that shows it done. (A
   * later write to the same card, sent before that snapshot was read, can make a done write
   * look not done: the message is then wrong, and the cards right.) `judgeTimeouts`: a request
   * whose time ran out is judged so too, the wait notwithstanding (a removal said to have failed
   * would otherwise vanish at the next refresh).
   */
  async function optimistic(apply, call, { failure, success, done, judgeTimeouts = false }) {
    const id = addOverlay(apply);
    const succeeded = (result) => {
      if (success) announce(typeof success === "function" ? success(result) : success);
      return true;
    };
    let read = false;
    try {
      const result = await call();
      commitOverlay(id);
      return succeeded(result);
    } catch (err) {
      // Kept while the snapshot is read: the card does not flip back and forth meanwhile.
      read = done && (outcomeUnsure(err) || (judgeTimeouts && err?.timedOut === true)) ? await refresh() : false;
      dropOverlay(id);
      // Judged on what the server holds: another write still on its way may show the same.
      if (read && done(confirmedView())) return succeeded(undefined);
      showError(err.message, { title: failure });
      return false;
    } finally {
      if (!read) refresh();
    }
  }

  /**
   * What a run of per-image requests that named each card's report answered: 409s are images
   * reported anew since (they stay as they are, as asked), 404s images gone already (nothing
   * left to do); the rest failed.
   */
  function outcomes(errors) {
    const kept = errors.filter((err) => err?.status === 409).length;
    const failures = errors.filter((err) => err?.status !== 404 && err?.status !== 409);
    return { kept, failures };
  }

  /**
   * Sends `request(image, received_at)` for each of `shown` ([image, entry] pairs), four at a
   * time, after `apply` shows them done, and says how it went: "<did> N <noun>s", and those
   * reported anew since, which stay as they are (`stays`).
   */
  function perCard(shown, { request, did, noun, stays, apply, failure, done, judgeTimeouts = false }) {
    let kept = 0;
    const went = (failed = 0) => `${did} ${plural(shown.length - kept - failed, noun)}`;
    return optimistic(
      apply,
      async () => {
        const run = outcomes(await eachInFours(shown, ([image, entry]) => request(image, entry.received_at)));
        kept = run.kept;
        if (run.failures.length) {
          const stayed = kept ? `, ${kept} reported anew ${stays}` : "";
          throw partly(`${went(run.failures.length)}${stayed}`, run.failures);
        }
      },
      {
        failure,
        success: () => (kept ? `${went()}; ${plural(kept, noun)} reported anew meanwhile ${stays}` : went()),
        done,
        judgeTimeouts,
      },
    );
  }

  /**
   * Acknowledges each of `shown` ([image, entry] pairs) up to the report its card showed, one
   * request each: one reported anew meanwhile stays pending (409), and is said.
   */
  function acknowledgeEach(shown, failure) {
    if (!shown.length) return nothingToDismiss();
    const untilFor = new Map(shown.map(([image, entry]) => [image, entry.received_at]));
    return perCard(shown, {
      request: api.acknowledge,
      did: "Dismissed",
      noun: "update",
      stays: "stayed pending",
      apply: (v) => untilFor.forEach((until, image) => acknowledgeEntry(v.updates[image], until)),
      failure,
      // Each acknowledged, gone, or reported anew (which stays pending).
      done: (v) =>
        shown.every(([image, asked]) => {
          const now = v.updates[image];
          return !now || now.acknowledged || now.received_at !== asked.received_at;
        }),
    });
  }

  return {
    /** Settles once every card's move sent so far has been answered: a group's dismissal goes by
     * the server's groups, where a card the page already draws elsewhere may still be. */
    movesSettled() {
      return Promise.allSettled([...lastMove.values()]);
    },

    /** Acknowledges `image` up to `seen`, the report its card showed: the page's state can hold a
     * newer one already (drawn at the next frame), which the user has not seen and which stays
     * pending (409). */
    acknowledge(image, seen) {
      // Not on the page (removed elsewhere): without the report shown, one DIUN sent since could
      // be dismissed unseen.
      if (!seen) return Promise.resolve(true);
      return optimistic(
        (v) => acknowledgeEntry(v.updates[image], seen),
        () => api.acknowledge(image, seen),
        {
          failure: `Could not acknowledge ${shortName(image)}`,
          success: `Acknowledged ${shortName(image)}`,
          done: (v) => v.updates[image]?.acknowledged === true,
        },
      );
    },

    /** Forgets an image whose container is gone: its card, its group and its history. `seen`:
     * the report the user was shown when they chose to; one that arrived since keeps it (409). */
    remove(image, seen) {
      // Not on the page (removed elsewhere): without the report shown, one DIUN sent since could
      // be removed unseen.
      if (!seen) return Promise.resolve(true);
      return optimistic(
        (v) => {
          // Not a report that came since: it stays, and the server says so (409).
          if (v.updates[image]?.received_at === seen) delete v.updates[image];
        },
        // Gone already (removed in another tab): what was asked for is done.
        () =>
          api.remove(image, seen).catch((err) => {
            if (err.status !== 404) throw err;
          }),
        {
          failure: `Could not remove ${shortName(image)}`,
          success: `Removed ${shortName(image)}`,
          done: (v) => !v.updates[image],
          judgeTimeouts: true,
        },
      );
    },

    /**
     * Forgets many images at once (housekeeping), each as `remove` does with the report the user
     * was shown: `shown` is [[image, entry]]. One reported anew since (409) stays; one gone
     * already (404) is done.
     */
    removeMany(shown) {
      if (!shown.length) return Promise.resolve(true);
      return perCard(shown, {
        request: api.remove,
        did: "Removed",
        noun: "image",
        stays: "stayed",
        // Not a report that came since: it stays, and the server says so (409).
        apply: (v) => {
          for (const [image, entry] of shown) if (v.updates[image]?.received_at === entry.received_at) delete v.updates[image];
        },
        failure: "Could not remove every image",
        // Each gone, or reported anew (which keeps it).
        done: (v) => shown.every(([image, entry]) => v.updates[image]?.received_at !== entry.received_at),
        judgeTimeouts: true,
      });
    },

    acknowledgeAll() {
      const shown = pendingEntries();
      // Nothing shown (dismissed elsewhere meanwhile): a request without a bound would dismiss
      // whatever arrived since, unseen.
      if (!shown.length) return nothingToDismiss();
      const until = newestReport(shown);
      return optimistic(
        (v) => Object.values(v.updates).forEach((entry) => acknowledgeEntry(entry, until)),
        () => api.acknowledgeAll(until),
        {
          failure: "Could not dismiss all updates",
          success: (r) => `Dismissed ${plural(r?.count ?? shown.length, "update")}`,
          done: (v) => coveredOrSuperseded(v, shown),
        },
      );
    },

    /** key: a tag id as a string, or "untagged" (which has no server call: one PATCH per image). */
    acknowledgeGroup(key) {
      const shown = pendingEntries(key);
      if (key === "untagged") return acknowledgeEach(shown, "Could not dismiss the group");
      if (!shown.length) return nothingToDismiss();
      const images = shown.map(([image]) => image);
      // Up to the group's newest report, in one request.
      const until = newestReport(shown);
      return optimistic(
        (v) => images.forEach((image) => acknowledgeEntry(v.updates[image], until)),
        () => api.acknowledgeTag(Number(key), until),
        {
          failure: "Could not dismiss the group",
          success: (r) => `Dismissed ${plural(r?.count ?? images.length, "update")}`,
          done: (v) => coveredOrSuperseded(v, shown),
        },
      );
    },

    /** The pending updates the filters show, as [image, entry] pairs: each up to its card's report. */
    acknowledgeShown(shown) {
      return acknowledgeEach(shown, "Could not dismiss the updates shown");
    },

    deleteGroup(key) {
      const id = Number(key);
      const name = view().tags.find((t) => t.id === id)?.name ?? "group";
      return optimistic(
        (v) => {
          v.tags = v.tags.filter((t) => t.id !== id);
          for (const entry of Object.values(v.updates)) if (entry.tag && entry.tag.id === id) entry.tag = null;
        },
        // Gone already (deleted in another tab): what was asked for is done.
        () =>
          api.deleteTag(id).catch((err) => {
            if (err.status !== 404) throw err;
          }),
        {
          failure: `Could not delete the group ${name}`,
          success: `Deleted the group ${name}`,
          done: (v) => !v.tags.some((t) => t.id === id),
        },
      );
    },

    /** key: the target group's id as a string, or "untagged". */
    move(image, key) {
      const tag = key === "untagged" ? null : view().tags.find((t) => String(t.id) === String(key));
      if (key !== "untagged" && !tag) {
        // The group went away (deleted elsewhere) while the menu or a drag was open.
        showError(`Could not move ${shortName(image)}: that group no longer exists`);
        return Promise.resolve(false);
      }
      const target = tag ? tag.name : "Untagged";
      return optimistic(
        (v) => {
          if (v.updates[image]) v.updates[image].tag = tag ? { id: tag.id, name: tag.name } : null;
        },
        () => afterEarlierMoves(image, () => (tag ? api.assign(image, tag.id) : api.unassign(image))),
        {
          failure: `Could not move ${shortName(image)} to ${target}`,
          success: `Moved ${shortName(image)} to ${target}`,
          done: (v) => (v.updates[image]?.tag?.id ?? null) === (tag ? tag.id : null),
        },
      );
    },

    /** Resolves to the new tag, or throws the ApiError after showing it. */
    async createGroup(name) {
      let read = false;
      try {
        const tag = await api.createTag(name);
        announce(`Created the group ${tag?.name ?? name}`);
        return tag;
      } catch (err) {
        // Created all the same (see `outcomeUnsure`): the snapshot has it.
        read = outcomeUnsure(err) && (await refresh());
        const created = read && confirmedView().tags.find((t) => t.name === name);
        if (created) {
          announce(`Created the group ${created.name}`);
          return created;
        }
        showError(err.message, { title: "Could not create the group" });
        throw err;
      } finally {
        if (!read) await refresh();
      }
    },
  };
}
