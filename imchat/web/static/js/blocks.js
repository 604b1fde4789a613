// The users this one blocks (docs/api.md, Blocks): read after each connect,
// changed from a direct conversation's menu. A blocked user cannot send this
// one direct messages; neither sees the other's typing or presence.

import { api } from "./api.js";
import { forgetPresence } from "./presence.js";
import * as state from "./state.js";

let blocked = new Set();

/** Read the list from the server; a failure keeps what is known. */
export async function refreshBlocks() {
  const answer = await api("GET", "/users/me/blocks").catch(() => null);
  if (!answer || !state.isLoaded()) return;
  blocked = new Set(answer.blocked);
  state.changed();
}

export function isBlocked(userId) {
  return blocked.has(userId);
}

export async function block(userId) {
  await api("POST", "/users/me/blocks", { user_id: userId });
  blocked.add(userId);
  forgetPresence(userId);
  state.changed();
}

export async function unblock(userId) {
  await api("DELETE", `/users/me/blocks/${encodeURIComponent(userId)}`);
  blocked.delete(userId);
  state.changed();
}

/** Signing out: the next user's list is read afresh. */
export function forgetBlocks() {
  blocked = new Set();
}
