// One message of the conversation pane: its bubble, the line it quotes
// (reply_to), its reactions, "(edited)", its time and, for the user's own
// messages, the send state and the other user's receipt (delivered, read);
// beside it the actions on it (reply, react, edit, delete).

import { currentSession } from "../api.js";
import { retryMessage } from "../chat.js";
import { ICONS, h, svgIcon } from "../dom.js";
import { avatar, avatarColor, timeFormat } from "../format.js";
import { quotedMessage } from "../history.js";
import { fullNameOf, nameOf } from "../profiles.js";
import { messageActions, reactionsNode } from "./actions.js";

// How an own message's state is shown; a new state is one more entry in each.
const STATE_LABELS = { sending: () => "Sending…", sent: (m) => `Sent (#${m.seq})`, failed: () => "Not sent" };
const STATE_ICONS = { sending: ICONS.clock, sent: ICONS.check, failed: ICONS.alert };
// Past "sent", what the other user's receipts say (direct conversations).
const RECEIPT_LABELS = { delivered: "Delivered", read: "Read" };
export const DELETED_TEXT = "This message was deleted";

/** The other user's receipt for an own sent message: "read", "delivered" or "". */
export function receiptOf(conv, message) {
  if (conv.kind !== "direct" || message.state !== "sent" || message.seq === undefined) return "";
  if (message.seq <= conv.peerRead) return "read";
  return message.seq <= conv.peerDelivered ? "delivered" : "";
}

export function messageNode(conv, message, first, last) {
  const own = message.from === currentSession().user_id;
  const showSender = conv.kind === "group" && !own && first;
  const classes = ["msg", own ? "own" : "", first ? "first" : "", last ? "last" : "", message.deleted ? "deleted" : ""].filter(Boolean).join(" ");
  const receipt = own ? receiptOf(conv, message) : "";
  const dataset = { testid: "message", state: own ? message.state : "received", seq: message.seq ?? "", cid: message.cid ?? "", from: message.from, receipt };
  return h(
    "div",
    { class: classes, dataset },
    own ? null : avatar(message.from, fullNameOf(message.from), "small"),
    h(
      "div",
      { class: "bubble" },
      showSender ? senderNode(message.from) : null,
      quoteNode(conv, message),
      bodyNode(message),
      reactionsNode(conv, message),
      h("div", { class: "meta" }, editedMark(message), h("time", { datetime: new Date(message.ts).toISOString() }, timeFormat.format(message.ts)), own ? stateMark(message, receipt) : null),
    ),
    messageActions(conv, message),
  );
}

function senderNode(userId) {
  const node = h("span", { class: "sender" }, fullNameOf(userId));
  node.style.color = avatarColor(userId); // a property, not a style attribute: the CSP allows it
  return node;
}

function bodyNode(message) {
  if (message.deleted) return h("div", { class: "body deleted", dataset: { testid: "deleted" } }, DELETED_TEXT);
  return h("div", { class: "body" }, message.body);
}

function editedMark(message) {
  if (!message.editedAt || message.deleted) return null;
  return h("span", { class: "edited", title: `Edited at ${timeFormat.format(message.editedAt)}`, dataset: { testid: "edited" } }, "(edited)");
}

/** The message it answers, in one line: from the loaded history, else fetched. */
function quoteNode(conv, message) {
  if (!message.replyTo) return null;
  const quoted = quotedMessage(conv, message.replyTo);
  if (!quoted) return h("div", { class: "quote", dataset: { testid: "quote", seq: message.replyTo } }, "…");
  const text = quoted.deleted ? DELETED_TEXT : quoted.body;
  return h("div", { class: "quote", dataset: { testid: "quote", seq: quoted.seq } }, h("span", { class: "quote-from" }, nameOf(quoted.from)), " ", text);
}

function stateMark(message, receipt) {
  const label = RECEIPT_LABELS[receipt] ?? STATE_LABELS[message.state]?.(message);
  const icon = receipt ? ICONS.checks : (STATE_ICONS[message.state] ?? ICONS.check);
  return h("span", { class: `tick ${receipt}`.trim(), title: label, "aria-label": label, dataset: { testid: "message-state" } }, svgIcon(icon));
}

export function failedNode(message) {
  return h(
    "div",
    { class: "msg-error", role: "alert", dataset: { testid: "message-error" } },
    svgIcon(ICONS.alert),
    h("span", {}, message.error || "Not sent."),
    h("button", { type: "button", class: "link", onclick: () => retryMessage(message.cid) }, "Retry"),
  );
}
