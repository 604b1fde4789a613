// The chat itself, without the DOM: the socket of the signed-in session, what
// each server frame does to the state, and the user's actions (send, retry,
// start a chat, groups, edit, delete, react, typing, block). Views call these
// and repaint on state.changed().

import { ApiError, api, currentSession, sessionEnded } from "./api.js";
import { block, forgetBlocks, refreshBlocks, unblock } from "./blocks.js";
import { changeAcked, changeRefused, deleteFrame, editFrame, forgetChanges, reactFrame, receiveUpdate, unackedChanges } from "./changes.js";
import { receiveReceipt, refreshConversation, refreshConversations } from "./inbox.js";
import { forgetPresence, presenceOf, receivePresence } from "./presence.js";
import { fetchGroupTitle, lookupUser, profileArrived } from "./profiles.js";
import { ChatSocket, sendFrame } from "./socket.js";
import * as state from "./state.js";
import { receiveTyping, stoppedTyping, typingWait } from "./typing.js";

export const MAX_BODY = 4000;

const ERROR_TEXT = {
  not_found: "This person or group doesn't exist any more.",
  forbidden: "You're not a member of this group.",
  rate_limited: "You're sending too fast. Wait a moment and retry.",
  unavailable: "The server couldn't take this message right now.",
  too_large: "This message is too long.",
};
// A direct send refused: the recipient blocks the sender (docs/protocol.md, Blocks).
const DIRECT_ERROR_TEXT = { ...ERROR_TEXT, forbidden: "This person isn't accepting your messages." };

let socket = null;
let notify = () => {};
const presenceAsked = new Set(); // direct conversations read once for their peer's presence

/** Who shows the server's errors that belong to no message of ours (a toast, in practice). */
export function onNotice(handler) {
  notify = handler;
}

// ----------------------------------------------------------------- socket
/** Open the session's socket; `onStatus(socket)` on each change of its status. */
export function connect(onStatus) {
  socket = new ChatSocket({
    onFrame,
    onStatus,
    onEnded: sessionEnded,
    unsent: () => [...Array.from(state.unacked(), ({ conv, message }) => sendFrame(conv, message)), ...unackedChanges()],
  });
  socket.open();
}

export function disconnect() {
  socket?.close();
  socket = null;
}

/** Signing out: what this page knew of the user beyond the state (kept per user) goes. */
export function forgetSession() {
  forgetChanges();
  forgetPresence();
  forgetBlocks();
  presenceAsked.clear();
}

/** The current socket, or null when signed out. */
export function connection() {
  return socket;
}

// ---------------------------------------------------------- server frames
/** What each frame type does; pong and anything newer: nothing. */
const FRAME_HANDLERS = new Map([
  ["msg", receiveMessage],
  ["ack", receiveAck],
  ["error", receiveError],
  ["event", receiveEvent],
  ["synced", receiveSynced],
  ["receipt", receiveReceipt],
  ["typing", receiveTyping],
  ["presence", receivePresence],
  ["update", receiveUpdate],
]);

function onFrame(frame) {
  FRAME_HANDLERS.get(frame.type)?.(frame);
}

/** The conversation, created when new; a group without its name yet goes to fetch it. */
function conversationFor(id, seed) {
  const conv = state.ensureConversation(id, seed);
  if (conv.kind === "group" && !conv.title) fetchGroupTitle(conv);
  return conv;
}

function receiveMessage(frame) {
  const me = currentSession().user_id;
  const own = frame.from === me;
  const seed = frame.group ? { kind: "group", group: frame.group } : { kind: "direct", peer: own ? frame.to : frame.from };
  const conv = conversationFor(frame.conversation_id, seed);
  const added = state.addMessage(conv, state.messageFrom(frame, me));
  stoppedTyping(conv.id, frame.from);
  // Frames come in seq order: one at or below countedSeq is in the server's count already.
  if (added && !own && !state.isVisible(conv) && frame.seq > conv.countedSeq) conv.unread += 1;
  conv.countedSeq = Math.max(conv.countedSeq, frame.seq);
  if (!own) socket.confirmDelivered(conv.id, frame.seq);
  learnPresence(conv);
  state.save();
  state.changed();
}

/**
 * A direct conversation that began after the list was read: no `presence`
 * frame tells of a peer already online, so the server's view of it is read
 * once (C's `presence`).
 */
function learnPresence(conv) {
  if (conv.kind !== "direct" || presenceOf(conv.peer) || presenceAsked.has(conv.id)) return;
  presenceAsked.add(conv.id);
  refreshConversation(conv.id);
}

/**
 * The user sees `conv` (open in a visible page): everything in it is read.
 * Tells the server once per new highest seq; the server tells the user's
 * other devices, whose badges clear.
 */
export function markRead(conv) {
  if (!socket || !state.isVisible(conv)) return;
  conv.unread = 0;
  const seq = state.newestSeq(conv);
  if (seq <= Math.max(conv.readSeq, state.readSent(conv))) return;
  // Not conv.readSeq: that is the server's mark, and a read lost with this page must go again.
  state.noteReadSent(conv, seq);
  socket.confirmRead(conv.id, seq);
  state.save();
}

function receiveAck(frame) {
  const found = state.findOwn(frame.id);
  if (!found) {
    changeAcked(frame); // an edit, delete or react: its `update` shows it
    return;
  }
  const { conv, message } = found;
  const duplicate = conv.messages.find((m) => m !== message && m.msgId === frame.msg_id);
  if (duplicate) conv.messages.splice(conv.messages.indexOf(duplicate), 1); // echo from another tab
  Object.assign(message, { msgId: frame.msg_id, seq: frame.seq, ts: frame.ts, state: "sent", error: null });
  state.sortMessages(conv);
  conv.lastSeq = Math.max(conv.lastSeq, frame.seq);
  learnPresence(conv);
  state.save();
  state.changed();
}

function receiveError(frame) {
  const refusedChange = frame.id ? changeRefused(frame) : null;
  if (refusedChange) {
    notify(refusedChange);
    return;
  }
  const found = frame.id ? state.findOwn(frame.id) : null;
  const words = found?.conv.kind === "direct" ? DIRECT_ERROR_TEXT : ERROR_TEXT;
  const text = words[frame.code] ?? frame.message ?? "Something went wrong.";
  if (!found) {
    notify(text);
    return;
  }
  Object.assign(found.message, { state: "failed", error: text });
  state.save();
  state.changed();
}

function receiveEvent(frame) {
  const id = `g:${frame.group}`;
  const concernsMe = frame.user_id === currentSession().user_id;
  if (!state.conversation(id) && !(concernsMe && frame.event === "member_added")) return;
  const conv = conversationFor(id, { kind: "group", group: frame.group });
  if (frame.event === "member_added" && concernsMe) conv.left = false;
  if (frame.event === "member_removed" && concernsMe) conv.left = true;
  if (concernsMe && frame.event !== "member_removed") conv.role = frame.role ?? conv.role;
  if (frame.event === "member_added" || frame.event === "member_removed") fetchGroupTitle(conv);
  const ts = frame.ts ?? Date.now();
  // Notes sort just after the last message seen: they have no seq of their own.
  const event = { event: frame.event, user_id: frame.user_id, actor_id: frame.actor_id, role: frame.role };
  // Worded when shown, not now: the names may still be on their way from the API.
  state.insertMessage(conv, { note: event, ts, seq: conv.lastSeq + 0.5 });
  state.save();
  state.changed();
}

/** Pending messages are all in: the list (and what other devices did meanwhile) comes from the server. */
function receiveSynced(frame) {
  socket.markSynced();
  if (frame.count) state.changed();
  refreshConversations();
  refreshBlocks();
  refreshRoles();
}

/** The user's role in each of their groups (GET /groups): owners and admins may delete any message. */
async function refreshRoles() {
  const answer = await api("GET", "/groups").catch(() => null);
  if (!answer || !state.isLoaded()) return;
  for (const group of answer.groups) {
    const conv = state.conversation(`g:${group.group_id}`);
    if (conv) conv.role = group.role;
  }
  state.save();
  state.changed();
}

// ---------------------------------------------------------------- actions
/** Send `text` in the open conversation; false when there is nothing to send. */
export function sendMessage(text) {
  const conv = state.activeConversation();
  const body = text.trim();
  if (!conv || !body || body.length > MAX_BODY || conv.left) return false;
  const replyTo = state.replyTo();
  const message = { cid: newClientId(), from: currentSession().user_id, body, replyTo, ts: Date.now(), state: "sending" };
  state.insertMessage(conv, message);
  state.setReplyTo(null);
  state.save();
  socket.send(sendFrame(conv, message)); // offline: it goes on the next connect
  state.changed();
  return true;
}

/**
 * The user is typing in the open conversation: say so, at most every 2.2 s.
 * Returns 0 when the frame went (or none is wanted), else the ms until one may.
 */
export function userTyping() {
  const conv = state.activeConversation();
  if (!conv || conv.left) return 0;
  const wait = typingWait(conv);
  if (!wait) socket?.send({ type: "typing", conversation_id: conv.id });
  return wait;
}

const sendChange = (frame) => socket?.send(frame); // offline: it goes on the next connect

/** Edit own message `seq` of the open conversation to `text`; false when there is nothing to send. */
export function editMessage(seq, text) {
  const conv = state.activeConversation();
  const body = text.trim();
  const message = conv && state.messageAt(conv, seq);
  if (!message || !body || body.length > MAX_BODY) return false;
  state.setEditing(null);
  if (body !== message.body) editFrame(sendChange, conv, seq, body);
  return true;
}

/** Delete message `seq` of `conv` for everyone. */
export function deleteMessage(conv, seq) {
  deleteFrame(sendChange, conv, seq);
}

/** Add or take back the user's `emoji` on `message` of `conv`. */
export function toggleReaction(conv, message, emoji) {
  reactFrame(sendChange, conv, message, emoji);
}

/** Block the peer of direct conversation `conv`. */
export async function blockPeer(conv) {
  await block(conv.peer);
}

/** Unblock the peer of `conv`; their presence comes back with the list. */
export async function unblockPeer(conv) {
  await unblock(conv.peer);
  refreshConversations();
}

/** Send a failed message again, with the same client id. */
export function retryMessage(cid) {
  const found = state.findOwn(cid);
  if (!found) return;
  Object.assign(found.message, { state: "sending", error: null });
  state.save();
  socket.send(sendFrame(found.conv, found.message));
  state.changed();
}

/** A client message id: random, so unique per sender without coordination. */
function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID exists only in secure contexts; plain http on a LAN host has not.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function directConversationId(a, b) {
  // The server's id of a direct conversation (docs/protocol.md).
  return a < b ? `d:${a}:${b}` : `d:${b}:${a}`;
}

/** The direct conversation with `username`, created when new; resolves to its id. */
export async function startDirectChat(username) {
  const profile = await lookupUser(username);
  const me = currentSession().user_id;
  if (profile.user_id === me) throw new ApiError(400, "bad_request", "That's you! Pick someone else to chat with.");
  const id = directConversationId(me, profile.user_id);
  conversationFor(id, { kind: "direct", peer: profile.user_id });
  return id;
}

/** Create a group named `name` with the people in `usernames`; resolves to its conversation id. */
export async function createGroup(name, usernames) {
  const title = name.trim();
  if (!title) throw new ApiError(400, "bad_request", "Give the group a name.");
  const wanted = [...new Set(usernames.split(/[\s,]+/).map((u) => u.replace(/^@/, "").toLowerCase()).filter(Boolean))];
  const results = await Promise.allSettled(wanted.map((u) => lookupUser(u)));
  const unknown = wanted.filter((_, i) => results[i].status === "rejected");
  if (unknown.length) {
    const first = results.find((r) => r.status === "rejected").reason;
    if (first.status !== 404) throw first;
    throw new ApiError(404, "not_found", `Unknown username${unknown.length > 1 ? "s" : ""}: ${unknown.join(", ")}.`);
  }
  const me = currentSession().user_id;
  const memberIds = results.map((r) => r.value.user_id).filter((id) => id !== me);
  const group = await api("POST", "/groups", { name: title, member_ids: memberIds });
  const conv = conversationFor(`g:${group.group_id}`, { kind: "group", group: group.group_id, title: group.name });
  conv.memberCount = group.member_count;
  conv.role = "owner";
  return conv.id;
}

/** The members of `conv`'s group, once their profiles are known (or failed). */
export async function groupMembers(conv) {
  const members = await api("GET", `/groups/${encodeURIComponent(conv.group)}/members`);
  await Promise.allSettled(members.map((m) => profileArrived(m.user_id)));
  conv.memberCount = members.length;
  return members;
}

export async function addMember(conv, username) {
  const profile = await lookupUser(username);
  await api("POST", `/groups/${encodeURIComponent(conv.group)}/members`, { user_id: profile.user_id });
}

export async function leaveGroup(conv) {
  await api("DELETE", `/groups/${encodeURIComponent(conv.group)}/members/${encodeURIComponent(currentSession().user_id)}`);
  conv.left = true;
  state.save();
}
