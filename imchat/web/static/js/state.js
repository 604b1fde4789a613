// What the client knows, in one place: the signed-in user's conversations
// (with their messages, unread counts and last seq), which one is open, and
// the profiles of the people in them. The server keeps no history for clients
// (docs/protocol.md): this browser's localStorage is the only copy, per user.
//
// Modules change it with the functions here, or on the conversation objects
// they return, then call save() to keep it and changed() to have it repainted:
// the views subscribe with onChange(), so no module below them imports a view.

import { PROFILES_KEY, readJson, stateKey, writeJson } from "./storage.js";

const KEEP_MESSAGES = 500; // per conversation, in localStorage

let store = null; // {key, conversations: {id: Conversation}, activeId}
const profiles = new Map(Object.entries(readJson(PROFILES_KEY, {})));
const listeners = [];

// ---------------------------------------------------------------- changes
/** Call `listener(options)` after every change worth a repaint. */
export function onChange(listener) {
  listeners.push(listener);
}

/** Something changed: tell the views (options: {scroll: "bottom"} and the like). */
export function changed(options = {}) {
  for (const listener of listeners) listener(options);
}

// ------------------------------------------------------------ persistence
/** Read the user's conversations from this browser; none is open yet. */
export function load(userId) {
  const key = stateKey(userId);
  const saved = readJson(key, null);
  store = { key, conversations: saved?.conversations ?? {}, activeId: null };
}

export function save() {
  if (store) writeJson(store.key, { conversations: store.conversations });
}

/** Forget the conversations in memory (signing out); what was saved stays. */
export function unload() {
  store = null;
}

export function isLoaded() {
  return store !== null;
}

/**
 * Another tab of the same user saved (a storage event): adopt its copy, as both
 * tabs get every message. Returns whether anything was adopted.
 */
export function adoptSaved(key, newValue) {
  if (!store || key !== store.key || !newValue) return false;
  const saved = readJson(store.key, null);
  if (!saved?.conversations) return false;
  store.conversations = saved.conversations;
  return true;
}

// ---------------------------------------------------------- conversations
export function conversation(id) {
  return store.conversations[id];
}

export function allConversations() {
  return Object.values(store.conversations);
}

/** Newest activity first, as the list shows them. */
export function sortedConversations() {
  return allConversations().sort((a, b) => b.updatedAt - a.updatedAt);
}

/** The conversation `id`, created from `seed` ({kind, peer, group, title...}) when new. */
export function ensureConversation(id, seed) {
  let conv = store.conversations[id];
  if (!conv) {
    conv = {
      id,
      kind: id.startsWith("g:") ? "group" : "direct",
      peer: null, // direct: the other user's id
      group: null, // group: the group id
      title: "", // group: its name, once fetched
      messages: [],
      unread: 0,
      lastSeq: 0,
      updatedAt: Date.now(),
      left: false, // group: the user is no longer a member
      ...seed,
    };
    store.conversations[id] = conv;
  }
  return conv;
}

export function activeId() {
  return store.activeId;
}

export function activeConversation() {
  return store.conversations[store.activeId];
}

/** Open conversation `id` (null: none), which reads everything in it. */
export function setActive(id) {
  store.activeId = id;
  const conv = id === null ? undefined : store.conversations[id];
  if (conv) conv.unread = 0;
}

/** The user is looking at `conv`: what arrives in it is read at once. */
export function isVisible(conv) {
  return store.activeId === conv.id && document.visibilityState === "visible";
}

export function totalUnread() {
  return allConversations().reduce((sum, conv) => sum + conv.unread, 0);
}

// --------------------------------------------------------------- messages
/** Messages carry `order`: the seq once known; unacked sends sort last. */
function orderOf(message) {
  return message.seq ?? Number.MAX_SAFE_INTEGER;
}

export function sortMessages(conv) {
  conv.messages.sort((a, b) => orderOf(a) - orderOf(b) || a.ts - b.ts);
}

export function insertMessage(conv, message) {
  conv.messages.push(message);
  sortMessages(conv);
  if (conv.messages.length > KEEP_MESSAGES) conv.messages.splice(0, conv.messages.length - KEEP_MESSAGES);
  conv.updatedAt = Math.max(conv.updatedAt, message.ts);
}

/** The newest message that is not a note (a group event). */
export function lastMessage(conv) {
  for (let i = conv.messages.length - 1; i >= 0; i -= 1) {
    if (!conv.messages[i].note) return conv.messages[i];
  }
  return null;
}

/** The user's own message with client id `cid`, and its conversation. */
export function findOwn(cid) {
  for (const conv of allConversations()) {
    const message = conv.messages.find((m) => m.cid === cid);
    if (message) return { conv, message };
  }
  return null;
}

/** Every own message still waiting for its ack, with its conversation. */
export function* unacked() {
  for (const conv of allConversations()) {
    for (const message of conv.messages) {
      if (message.state === "sending") yield { conv, message };
    }
  }
}

// --------------------------------------------------------------- profiles
export function knownProfile(userId) {
  return profiles.get(userId);
}

export function rememberProfile(profile) {
  profiles.set(profile.user_id, {
    user_id: profile.user_id,
    username: profile.username,
    display_name: profile.display_name ?? null,
  });
  writeJson(PROFILES_KEY, Object.fromEntries(profiles));
}
