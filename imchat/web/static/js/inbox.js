// The conversation list from the server (GET /conversations, docs/api.md) and
// the marks that move it: unread counts, this user's read mark from any of
// their devices, and the other user's delivered and read marks (`receipt`
// frames, docs/protocol.md). Asked for on sign-in and after each reconnect.

import { api, currentSession } from "./api.js";
import { loadNewest } from "./history.js";
import { adoptPresence } from "./presence.js";
import * as state from "./state.js";

const LIST_PAGE = 100;
const MAX_LIST_PAGES = 50; // 5,000 conversations: past that, the oldest wait for a later version

/** Fetch every page of the user's conversations into the state; a failure keeps the cache. */
export async function refreshConversations() {
  const user = currentSession()?.user_id;
  let before = null;
  for (let i = 0; i < MAX_LIST_PAGES; i += 1) {
    const cursor = before ? `&before=${encodeURIComponent(before)}` : "";
    const page = await api("GET", `/conversations?limit=${LIST_PAGE}${cursor}`).catch(() => null);
    if (!page || !state.isLoaded() || currentSession()?.user_id !== user) return;
    page.conversations.forEach(adopt);
    state.save();
    state.changed();
    if (!page.next) return;
    before = page.next;
  }
}

/** Fetch one conversation (its unread count after a read elsewhere, a new peer's presence). */
export async function refreshConversation(id) {
  const view = await api("GET", `/conversations/${encodeURIComponent(id)}`).catch(() => null);
  if (!view || !state.isLoaded() || !state.conversation(id)) return;
  adopt(view);
  state.save();
  state.changed();
}

function seedOf(view) {
  const seed = { kind: view.kind, updatedAt: view.last_activity ?? Date.now() };
  if (view.kind === "group") return { ...seed, group: view.group_id, title: view.name ?? "" };
  return { ...seed, peer: view.peer_id };
}

/** Take the server's view of a conversation (C of docs/api.md) into the state. */
function adopt(view) {
  const me = currentSession().user_id;
  const conv = state.ensureConversation(view.conversation_id, seedOf(view));
  if (view.kind === "group") Object.assign(conv, { title: view.name ?? conv.title, left: false });
  const known = state.newestSeq(conv);
  if (view.last_message) {
    const last = state.messageFrom(view.last_message, me);
    delete last.reactions; // C's last_message carries {}: history has the reactions
    state.addMessage(conv, last);
  }
  if (view.kind === "direct") adoptPresence(view.peer_id, view.presence);
  conv.updatedAt = Math.max(conv.updatedAt, view.last_activity ?? 0);
  conv.lastSeq = Math.max(conv.lastSeq, view.last_seq);
  conv.readSeq = Math.max(conv.readSeq, view.read_seq);
  // A direct conversation carries the other user's marks too: ticks survive a reload.
  conv.peerDelivered = Math.max(conv.peerDelivered ?? 0, view.peer_delivered_seq ?? 0);
  conv.peerRead = Math.max(conv.peerRead ?? 0, view.peer_read_seq ?? 0);
  conv.unread = unreadOf(conv, view, me);
  conv.countedSeq = Math.max(conv.countedSeq, view.last_seq);
  if (view.last_seq > known) catchUp(conv);
}

/**
 * The server's count, plus others' messages that arrived live above what it
 * counted. A read this page sent and the server has not applied yet counts as
 * read; an open, visible conversation has nothing unread.
 */
function unreadOf(conv, view, me) {
  if (state.isVisible(conv)) return 0;
  const base = state.readSent(conv) >= view.last_seq ? 0 : view.unread;
  return base + state.othersAbove(conv, Math.max(view.last_seq, conv.readSeq, state.readSent(conv)), me);
}

/** Messages came while this page was away: the newest page is loaded again, now if it is open. */
function catchUp(conv) {
  state.historyStale(conv);
  if (state.activeId() === conv.id) loadNewest(conv);
}

/** A `receipt` frame: marks of this user (another device read) or of another participant. */
export function receiveReceipt(frame) {
  const conv = state.conversation(frame.conversation_id);
  if (!conv) return;
  if (frame.user_id === currentSession().user_id) {
    readElsewhere(conv, frame.read_seq);
  } else if (conv.kind === "direct") {
    conv.peerDelivered = Math.max(conv.peerDelivered, frame.delivered_seq, frame.read_seq);
    conv.peerRead = Math.max(conv.peerRead, frame.read_seq);
  } else {
    return; // groups' read marks are not shown (yet)
  }
  state.save();
  state.changed();
}

function readElsewhere(conv, readSeq) {
  conv.readSeq = Math.max(conv.readSeq, readSeq);
  if (conv.readSeq >= Math.max(conv.countedSeq, state.newestSeq(conv))) conv.unread = 0;
  else refreshConversation(conv.id); // read partly: the server counts what is left
}
