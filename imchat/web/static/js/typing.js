// Typing indicators (docs/protocol.md, Typing): who is typing in which
// conversation, shown for a few seconds after their last `typing` frame, and
// when this user's own `typing` frame may go again (one per 2.2 s at most).

import * as state from "./state.js";

const SHOW_MS = 4000; // after the last frame received
// The gateway relays one frame per 2 s and drops the rest: a little over it,
// so that a frame sent at the end of the window is not one the gateway drops.
const SEND_EVERY_MS = 2200;

const typers = new Map(); // conversation id -> Map(user id -> shown until, ms)
const lastSent = new Map(); // conversation id -> when this user's last frame went

/** A `typing` frame of another participant. */
export function receiveTyping(frame) {
  let users = typers.get(frame.conversation_id);
  if (!users) {
    users = new Map();
    typers.set(frame.conversation_id, users);
  }
  users.set(frame.user_id, Date.now() + SHOW_MS);
  state.changed();
  setTimeout(() => state.changed(), SHOW_MS + 50); // the indicator goes unless renewed
}

/** `userId` sent a message in `conversationId`: they stopped typing. */
export function stoppedTyping(conversationId, userId) {
  typers.get(conversationId)?.delete(userId);
}

/** Who is typing in `conv` now (user ids). */
export function typingIn(conv) {
  const users = typers.get(conv.id);
  if (!users) return [];
  const now = Date.now();
  return [...users].filter(([, until]) => until > now).map(([userId]) => userId);
}

/**
 * How long until this user's next `typing` frame for `conv` may go: 0 when it
 * may go now (and it counts as sent). The gateway drops frames closer than
 * 2 s, so the client keeps a slightly slower pace (a send does not restart it).
 */
export function typingWait(conv) {
  const now = Date.now();
  const wait = (lastSent.get(conv.id) ?? 0) + SEND_EVERY_MS - now;
  if (wait > 0) return wait;
  lastSent.set(conv.id, now);
  return 0;
}
