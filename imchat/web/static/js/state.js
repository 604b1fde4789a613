// What the client knows, in one place: the signed-in user's conversations
// (with the messages loaded so far, unread counts, marks and last seq), which
// one is open, and the profiles of the people in them. The server keeps the
// conversations and their history (docs/api.md): localStorage holds a copy
// per user only so that a reload paints at once; the server's answers win.
//
// Modules change it with the functions here, or on the conversation objects
// they return, then call save() to keep it and changed() to have it repainted:
// the views subscribe with onChange(), so no module below them imports a view.

import { PROFILES_KEY, readJson, stateKey, writeJson } from "./storage.js";

const KEEP_MESSAGES = 200; // per conversation, in localStorage: older ones come from the server

// {key, conversations: {id: Conversation}, activeId, loaded, readSent}: the
// last two are this page's only, never saved: the conversations whose newest
// history page came from the server, and the read marks this page sent.
let store = null;
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
  const saved = readJson(key, null)?.conversations ?? {};
  const conversations = Object.fromEntries(Object.entries(saved).map(([id, conv]) => [id, { ...blankConversation(id), ...conv }]));
  store = { key, conversations, activeId: null, loaded: new Set(), readSent: new Map() };
}

export function save() {
  if (!store) return;
  const kept = Object.fromEntries(Object.entries(store.conversations).map(([id, conv]) => [id, cachedCopy(conv)]));
  writeJson(store.key, { conversations: kept });
}

/** What is kept of `conv`: its newest messages; older ones come back from the server. */
function cachedCopy(conv) {
  if (conv.messages.length <= KEEP_MESSAGES) return conv;
  return { ...conv, messages: conv.messages.slice(-KEEP_MESSAGES), hasOlder: true };
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

/** A new conversation's fields; a copy saved by an older client gets the missing ones. */
function blankConversation(id) {
  return {
    id,
    kind: id.startsWith("g:") ? "group" : "direct",
    peer: null, // direct: the other user's id
    group: null, // group: the group id
    title: "", // group: its name, once fetched
    messages: [], // ascending: the newest page, what was loaded below it, what arrived since
    hasOlder: false, // the server has messages below the oldest one here
    unread: 0,
    lastSeq: 0,
    countedSeq: 0, // the highest seq `unread` accounts for (the server's count, or a live message)
    readSeq: 0, // this user's read mark, as far as this page knows it
    peerDelivered: 0, // direct: the other user's marks, from their receipts
    peerRead: 0,
    updatedAt: Date.now(),
    left: false, // group: the user is no longer a member
    role: null, // group: the user's role (owners and admins may delete any message)
  };
}

/** The conversation `id`, created from `seed` ({kind, peer, group, title...}) when new. */
export function ensureConversation(id, seed) {
  let conv = store.conversations[id];
  if (!conv) {
    conv = { ...blankConversation(id), ...seed };
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
  if (store.activeId !== id) {
    store.replyTo = null;
    store.editing = null;
  }
  store.activeId = id;
  const conv = id === null ? undefined : store.conversations[id];
  if (conv) conv.unread = 0;
}

/** The user is looking at `conv`: what arrives in it is read at once. */
export function isVisible(conv) {
  return store.activeId === conv.id && document.visibilityState === "visible";
}

/** Whether `conv`'s newest history page came from the server since this page loaded. */
export function historyLoaded(conv) {
  return store.loaded.has(conv.id);
}

/** The server has newer messages than those here: the next open loads the newest page again. */
export function historyStale(conv) {
  store.loaded.delete(conv.id);
}

/** The read mark this page sent for `conv` (0: none yet). */
export function readSent(conv) {
  return store.readSent.get(conv.id) ?? 0;
}

export function noteReadSent(conv, seq) {
  store.readSent.set(conv.id, Math.max(readSent(conv), seq));
}

/** The seq of the open conversation's message the composer answers (null: none). */
export function replyTo() {
  return store.replyTo ?? null;
}

export function setReplyTo(seq) {
  store.replyTo = seq;
  if (seq !== null) store.editing = null;
  changed();
}

/** The seq of the open conversation's own message the composer edits (null: none). */
export function editing() {
  return store.editing ?? null;
}

export function setEditing(seq) {
  store.editing = seq;
  if (seq !== null) store.replyTo = null;
  changed();
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
  conv.updatedAt = Math.max(conv.updatedAt, message.ts);
}

/**
 * A message of the server (a `msg` frame or history's M) as the client keeps
 * it. `editedAt` and `reactions` only when the frame carries them: a `msg`
 * frame has neither, and must not wipe what history said of a known message.
 */
export function messageFrom(frame, me) {
  const own = frame.from === me;
  const message = {
    msgId: frame.msg_id,
    seq: frame.seq,
    from: frame.from,
    body: frame.deleted ? null : frame.body,
    deleted: Boolean(frame.deleted),
    replyTo: frame.reply_to ?? null,
    ts: frame.ts,
    state: own ? "sent" : "received",
  };
  if ("edited_at" in frame) message.editedAt = frame.edited_at;
  if ("reactions" in frame) message.reactions = frame.reactions ?? {};
  return message;
}

/** The message with `seq` in `conv` (never a note), or undefined. */
export function messageAt(conv, seq) {
  return conv.messages.find((m) => !m.note && m.seq === seq);
}

/** Add a server message unless it is there (history and live frames overlap); whether it was new. */
export function addMessage(conv, message) {
  const known = conv.messages.find((m) => m.msgId === message.msgId || (!m.note && m.seq === message.seq));
  if (known) {
    // The server's copy wins (an edit or a delete), the local delivery state stays.
    Object.assign(known, { ...message, state: known.state === "failed" ? "sent" : message.state });
    return false;
  }
  insertMessage(conv, message);
  conv.lastSeq = Math.max(conv.lastSeq, message.seq);
  return true;
}

/**
 * The newest page of history replaces what was kept below its top: the cache
 * may have gaps. Unacked sends, messages newer than the page and the group
 * notes within it stay (notes are this browser's own: the server keeps none).
 */
export function replaceNewest(conv, page, hasMore) {
  const low = page.length ? page[0].seq : Infinity;
  const high = page.length ? page[page.length - 1].seq : 0;
  const kept = conv.messages.filter((m) => (m.note ? !hasMore || m.seq > low : m.seq === undefined || m.seq > high));
  conv.messages = page.concat(kept);
  sortMessages(conv);
  conv.hasOlder = hasMore;
  if (high) conv.lastSeq = Math.max(conv.lastSeq, high);
  store.loaded.add(conv.id);
}

/** The lowest seq loaded (for the page below it), or null. */
export function oldestSeq(conv) {
  const first = conv.messages.find((m) => !m.note && m.seq !== undefined);
  return first ? first.seq : null;
}

/** The highest seq of a message in `conv` that this page knows of. */
export function newestSeq(conv) {
  return conv.messages.reduce((top, m) => (m.note || m.seq === undefined ? top : Math.max(top, m.seq)), conv.lastSeq);
}

/** Others' messages loaded above `seq`: the unread ones a server count may not hold yet. */
export function othersAbove(conv, seq, me) {
  return conv.messages.filter((m) => !m.note && m.seq > seq && m.from !== me).length;
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
