// Words for the page's text.

/** "1 update", "3 updates": a count and its noun, which takes an "s" unless there is one. */
export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/**
 * A sender's text (an image or host name) set apart inside a sentence: a right-to-left override
 * in it, never closed, would otherwise turn the rest of the line around. The isolate's end
 * closes whatever the text opened (first strong isolate … pop directional isolate).
 */
export const isolated = (text) => `\u2068${text}\u2069`;
