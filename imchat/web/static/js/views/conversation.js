// The conversation pane: its header, the messages (grouped by day and by
// sender, with their delivery state) and the group notes between them.

import { currentSession } from "../api.js";
import { retryMessage } from "../chat.js";
import { $, ICONS, h, svgIcon } from "../dom.js";
import { avatar, avatarColor, dayLabel, paintAvatar, startOfDay, timeFormat } from "../format.js";
import { conversationTitle, fullNameOf, nameOf, profileOf } from "../profiles.js";
import * as state from "../state.js";

// How an own message's state is shown; a new state is one more entry in each.
const STATE_LABELS = { sending: () => "Sending…", sent: (m) => `Sent (#${m.seq})`, failed: () => "Not sent" };
const STATE_ICONS = { sending: ICONS.clock, sent: ICONS.check, failed: ICONS.alert };

export function openConversation(id) {
  state.setActive(id);
  state.save();
  $("#chat-screen").classList.add("show-pane");
  state.changed({ scroll: "bottom" });
  $("#composer-input").focus();
}

/** Back to the list (on a phone the list and the pane take the screen in turn). */
export function closeConversation() {
  state.setActive(null);
  $("#chat-screen").classList.remove("show-pane");
  state.changed();
}

/** Paint the open conversation, if any; returns whether messages were painted (and `scroll` used). */
export function renderConversation(scroll) {
  const conv = state.activeConversation();
  $("#pane-empty").hidden = Boolean(conv);
  $("#conversation").hidden = !conv;
  if (!conv) return false;
  if (state.isVisible(conv) && conv.unread) {
    conv.unread = 0;
    state.save();
  }
  renderHeader(conv);
  $("#composer").hidden = conv.left;
  $("#composer-note").hidden = !conv.left;
  $("#composer-note").textContent = conv.left ? "You're no longer a member of this group." : "";
  renderMessages(conv, scroll);
  return true;
}

function renderHeader(conv) {
  const title = conversationTitle(conv);
  $("#conv-title").textContent = title;
  paintAvatar($("#conv-avatar"), conv.kind === "group" ? conv.group : conv.peer, title, conv.kind === "group" ? "group" : "");
  const profile = conv.kind === "direct" ? profileOf(conv.peer) : null;
  $("#conv-subtitle").textContent =
    conv.kind === "group" ? (conv.memberCount ? `${conv.memberCount} members` : "Group") : profile ? `@${profile.username}` : "";
  $("#members-btn").hidden = conv.kind !== "group";
}

function renderMessages(conv, scroll) {
  const box = $("#messages");
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const nodes = [];
  let lastDay = null;
  const items = conv.messages;
  items.forEach((message, i) => {
    const day = startOfDay(message.ts);
    if (day !== lastDay) {
      nodes.push(h("div", { class: "day" }, dayLabel(message.ts)));
      lastDay = day;
    }
    if (message.note) {
      nodes.push(h("div", { class: "note", dataset: { testid: "note" } }, eventText(message.note)));
      return;
    }
    // Consecutive messages of one sender on one day share a bubble group.
    const sameAs = (other) => other && !other.note && other.from === message.from && startOfDay(other.ts) === day;
    nodes.push(messageNode(conv, message, !sameAs(items[i - 1]), !sameAs(items[i + 1])));
    if (message.state === "failed") nodes.push(failedNode(message));
  });
  box.replaceChildren(...nodes);
  if (scroll === "bottom" || nearBottom) box.scrollTop = box.scrollHeight;
}

function messageNode(conv, message, first, last) {
  const own = message.from === currentSession().user_id;
  const showSender = conv.kind === "group" && !own && first;
  const classes = ["msg", own ? "own" : "", first ? "first" : "", last ? "last" : ""].filter(Boolean).join(" ");
  return h(
    "div",
    {
      class: classes,
      dataset: { testid: "message", state: own ? message.state : "received", seq: message.seq ?? "", cid: message.cid ?? "", from: message.from },
    },
    own ? null : avatar(message.from, fullNameOf(message.from), "small"),
    h(
      "div",
      { class: "bubble" },
      showSender ? h("span", { class: "sender", style: `color:${avatarColor(message.from)}` }, fullNameOf(message.from)) : null,
      h("div", { class: "body" }, message.body),
      h("div", { class: "meta" }, h("time", { datetime: new Date(message.ts).toISOString() }, timeFormat.format(message.ts)), own ? stateMark(message) : null),
    ),
  );
}

function stateMark(message) {
  const label = STATE_LABELS[message.state]?.(message);
  return h("span", { class: "tick", title: label, "aria-label": label, dataset: { testid: "message-state" } }, svgIcon(STATE_ICONS[message.state] ?? ICONS.check));
}

function failedNode(message) {
  return h(
    "div",
    { class: "msg-error", role: "alert", dataset: { testid: "message-error" } },
    svgIcon(ICONS.alert),
    h("span", {}, message.error || "Not sent."),
    h("button", { type: "button", class: "link", onclick: () => retryMessage(message.cid) }, "Retry"),
  );
}

/** A group event in words, worded at paint time: names may arrive after the event. */
function eventText(frame) {
  const who = nameOf(frame.user_id);
  const actor = frame.actor_id ? nameOf(frame.actor_id) : null;
  if (frame.event === "member_added") {
    if (frame.role === "owner" && frame.actor_id === frame.user_id) return `${who} created the group`;
    return actor && frame.actor_id !== frame.user_id ? `${actor} added ${who === "You" ? "you" : who}` : `${who} joined`;
  }
  if (frame.event === "member_removed") {
    if (!actor || frame.actor_id === frame.user_id) return `${who} left`;
    return `${actor} removed ${who === "You" ? "you" : who}`;
  }
  if (frame.event === "role_changed") return `${who} ${who === "You" ? "are" : "is"} now ${frame.role}`;
  return `Group changed (${frame.event})`;
}
