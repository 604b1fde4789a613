// Whether the people of the user's direct conversations are online, and when
// they were last seen: the conversation list's `presence` after each connect,
// then the `presence` frames (docs/protocol.md, Presence). Kept in memory
// only: a reload reads the list again.

import * as state from "./state.js";

const presence = new Map(); // user id -> {status: "online" | "offline", lastSeen: ms | null}

/** The list's `presence` of a direct conversation's peer (null: blocked either way, unknown). */
export function adoptPresence(userId, view) {
  if (view) presence.set(userId, { status: view.status, lastSeen: view.last_seen ?? null });
  else presence.delete(userId);
}

/** A `presence` frame: a peer came online or went offline. */
export function receivePresence(frame) {
  presence.set(frame.user_id, { status: frame.status, lastSeen: frame.last_seen ?? null });
  state.changed();
}

/** What is known of `userId`'s presence, or null. */
export function presenceOf(userId) {
  return presence.get(userId) ?? null;
}

/** Forget `userId`'s presence (a block: none comes any more), or everyone's (signing out). */
export function forgetPresence(userId = null) {
  if (userId === null) presence.clear();
  else presence.delete(userId);
}
