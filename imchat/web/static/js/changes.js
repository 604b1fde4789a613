// Edits, deletes and reactions (docs/protocol.md, Edits, deletes and
// reactions): the frames this user sends, kept until their ack or error (and
// sent again with the same id after a reconnect: the server answers a repeat
// with the first ack), and the `update` frames that carry a message's new
// state to every participant, the author included. Nothing changes here
// before the server's `update`: what everyone sees is what the server applied.

import { currentSession } from "./api.js";
import { refreshMessage, updateQuoted } from "./history.js";
import * as state from "./state.js";

// The server's default IMCHAT_EDIT_WINDOW_SECONDS: past it Edit is not
// offered; a shorter window on the server answers `forbidden`, shown.
export const EDIT_WINDOW_MS = 86400 * 1000;
export const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🎉"];

const pending = new Map(); // change id -> its frame

const ERROR_TEXT = {
  edit: { forbidden: "You can't edit this message any more.", not_found: "This message can't be edited: it was deleted." },
  delete: { forbidden: "You can't delete this message.", not_found: "This message was already deleted." },
  react: { forbidden: "You can't react in this conversation.", not_found: "This message was deleted.", bad_request: "This message has too many different reactions." },
};

/** Whether the user may edit `message` (their own, not deleted, within the window). */
export function canEdit(message) {
  const own = message.from === currentSession().user_id;
  return own && !message.deleted && message.seq !== undefined && Date.now() - message.ts < EDIT_WINDOW_MS;
}

/** Whether the user may delete `message`: their own within the window, or any as a group's owner or admin. */
export function canDelete(conv, message) {
  if (message.deleted || message.seq === undefined) return false;
  const moderator = conv.kind === "group" && (conv.role === "owner" || conv.role === "admin");
  return moderator || canEdit(message);
}

/** Whether the user has reacted to `message` with `emoji`. */
export function reacted(message, emoji) {
  return (message.reactions?.[emoji] ?? []).includes(currentSession().user_id);
}

function changeId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The frames for `send` (the socket's): each waits for its ack, sent again on reconnect. */
function change(send, type, conv, seq, fields) {
  const frame = { type, id: changeId(), conversation_id: conv.id, seq, ...fields };
  pending.set(frame.id, frame);
  send(frame);
}

export function editFrame(send, conv, seq, body) {
  change(send, "edit", conv, seq, { body });
}

export function deleteFrame(send, conv, seq) {
  change(send, "delete", conv, seq, {});
}

/** Toggle the user's `emoji` on message `seq`. */
export function reactFrame(send, conv, message, emoji) {
  change(send, "react", conv, message.seq, { emoji, on: !reacted(message, emoji) });
}

/** Signing out: the next user's socket must not send this one's changes. */
export function forgetChanges() {
  pending.clear();
}

/** The changes still waiting for their ack (sent again on every connect). */
export function unackedChanges() {
  return [...pending.values()];
}

/** An ack of one of our changes; false when `frame` answers something else. */
export function changeAcked(frame) {
  return pending.delete(frame.id);
}

/** The words for an error answering one of our changes, or null when it answers something else. */
export function changeRefused(frame) {
  const sent = pending.get(frame.id);
  if (!sent) return null;
  pending.delete(frame.id);
  const conv = state.isLoaded() ? state.conversation(sent.conversation_id) : null;
  if (conv) refreshMessage(conv, sent.seq); // what the server has now (deleted meanwhile, say)
  return ERROR_TEXT[sent.type]?.[frame.code] ?? frame.message ?? "That didn't work.";
}

/** An `update` frame: the message's new state (edited, deleted or reactions). */
export function receiveUpdate(frame) {
  const conv = state.conversation(frame.conversation_id);
  if (!conv) return;
  const fresh = state.messageFrom(frame.message, currentSession().user_id);
  const fields = { body: fresh.body, deleted: fresh.deleted, editedAt: fresh.editedAt ?? null, reactions: fresh.reactions ?? {} };
  const known = state.messageAt(conv, frame.seq);
  if (known) Object.assign(known, fields);
  updateQuoted(conv, frame.seq, fields);
  if (fresh.deleted && state.activeId() === conv.id) {
    if (state.editing() === frame.seq) state.setEditing(null);
    if (state.replyTo() === frame.seq) state.setReplyTo(null);
  }
  state.save();
  state.changed();
}
