// Which change notices still need a refetch. The server numbers every change it announces on
// the change stream (`seq`, within the epoch its `hello` names) and marks each read the page
// refreshes from with how far the numbering had come when the read began (`X-Change-Seq:
// <epoch>/<n>`). A notice numbered n or less is already in that read: an action's own notice,
// which usually arrives while or after the action's refresh runs, then costs no second fetch.
// Without numbers (an older server, a resync, another replica behind the same address) every
// notice is fetched for, as before.

/** `<epoch>/<n>` as {epoch, seq}; null when absent or malformed. */
export function parseMark(text) {
  const match = /^([^/]+)\/(\d+)$/.exec(text ?? "");
  return match ? { epoch: match[1], seq: Number(match[2]) } : null;
}

/** What several reads all include: the lowest mark, or null unless all have one of one epoch. */
export function commonMark(marks) {
  if (!marks.length || marks.some((mark) => !mark || mark.epoch !== marks[0].epoch)) return null;
  return { epoch: marks[0].epoch, seq: Math.min(...marks.map((mark) => mark.seq)) };
}

export class Coverage {
  constructor() {
    this.epoch = null; // the stream's
    this.covered = null; // the last snapshot's mark, when of the stream's epoch
    this.unseen = null; // notices no snapshot is known to include: {seq, always}
  }

  /** The stream (re)opened: anything may have changed meanwhile. */
  streamOpened(epoch) {
    this.epoch = typeof epoch === "string" && epoch ? epoch : null;
    if (this.covered?.epoch !== this.epoch) this.covered = null;
    this.#remember(null);
  }

  /** A notice arrived; true when it still needs a fetch. */
  notice(change) {
    const seq = this.epoch && Number.isSafeInteger(change?.seq) ? change.seq : null;
    if (seq !== null && this.covered && seq <= this.covered.seq) return false;
    this.#remember(seq);
    return true;
  }

  /** Some notice is not known to be in the page yet. */
  get behind() {
    return this.unseen !== null;
  }

  /** A fetch of every read begins: it includes whatever was noticed before. */
  fetchStarted() {
    const before = this.unseen;
    this.unseen = null;
    return before;
  }

  /** That fetch answered, with the reads' common mark (or null). */
  fetchDone(mark) {
    if (mark && mark.epoch === this.epoch && (!this.covered || mark.seq >= this.covered.seq)) this.covered = mark;
    const unseen = this.unseen;
    if (unseen && !unseen.always && this.covered && unseen.seq <= this.covered.seq) this.unseen = null;
  }

  /** That fetch failed: what it was to include is still unseen. */
  fetchFailed(before) {
    if (before) this.unseen = this.unseen ? merge(this.unseen, before) : before;
  }

  #remember(seq) {
    const notice = seq === null ? { seq: 0, always: true } : { seq, always: false };
    this.unseen = this.unseen ? merge(this.unseen, notice) : notice;
  }
}

function merge(a, b) {
  return { seq: Math.max(a.seq, b.seq), always: a.always || b.always };
}
