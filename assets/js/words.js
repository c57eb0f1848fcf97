// Words for the page's text.

/** "1 update", "3 updates": a count and its noun, which takes an "s" unless there is one. */
export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
