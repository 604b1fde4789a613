// The conversation pane: its header (with the peer's presence and the
// menu), the messages (grouped by day and by sender, with the group notes
// between them), who is typing, the newest page of history when it opens and
// older pages as the user scrolls to the top.

import { markRead } from "../chat.js";
import { $, h } from "../dom.js";
import { dayLabel, lastSeenText, paintAvatar, startOfDay } from "../format.js";
import { loadNewest, loadOlder, loadingOlder } from "../history.js";
import { conversationTitle, nameOf, profileOf } from "../profiles.js";
import { presenceOf } from "../presence.js";
import * as state from "../state.js";
import { typingIn } from "../typing.js";
import { syncComposer } from "./composer.js";
import { renderMenu } from "./menu.js";
import { DELETED_TEXT, failedNode, messageNode } from "./message.js";

// Closer than this to the top of the messages, the page above is loaded.
const LOAD_OLDER_PX = 150;

/** Loading older pages when the user scrolls near the top of the messages. */
export function wireConversation() {
  $("#messages").addEventListener("scroll", loadOlderIfAtTop, { passive: true });
}

function loadOlderIfAtTop() {
  const conv = state.activeConversation();
  if (conv?.hasOlder && $("#messages").scrollTop < LOAD_OLDER_PX) loadOlder(conv);
}

export function openConversation(id) {
  state.setActive(id);
  state.save();
  $("#chat-screen").classList.add("show-pane");
  state.changed({ scroll: "bottom" });
  $("#composer-input").focus();
  const conv = state.conversation(id);
  if (conv) loadNewest(conv).then(loadOlderIfAtTop); // a short first page leaves nothing to scroll
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
  if (!conv) {
    syncComposer();
    return false;
  }
  markRead(conv);
  renderHeader(conv);
  $("#composer").hidden = conv.left;
  $("#composer-note").hidden = !conv.left;
  $("#composer-note").textContent = conv.left ? "You're no longer a member of this group." : "";
  renderMenu(conv);
  renderMessages(conv, scroll);
  renderTyping(conv);
  renderBars(conv);
  syncComposer();
  return true;
}

/** The message the composer answers or edits, above the composer. */
function renderBars(conv) {
  const quoted = state.replyTo() === null ? undefined : state.messageAt(conv, state.replyTo());
  $("#reply-bar").hidden = !quoted || conv.left;
  $("#reply-text").textContent = quoted ? `Replying to ${nameOf(quoted.from)}: ${quoted.body ?? DELETED_TEXT}` : "";
  const edited = state.editing() === null ? undefined : state.messageAt(conv, state.editing());
  $("#edit-bar").hidden = !edited || conv.left;
  $("#edit-text").textContent = edited ? `Editing: ${edited.body ?? ""}` : "";
}

/** "Bob is typing…" while a `typing` frame is fresh. */
function renderTyping(conv) {
  const names = typingIn(conv).map(nameOf);
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = "Several people are typing…";
  $("#typing").textContent = text;
  $("#typing").classList.toggle("active", Boolean(text));
}

function renderHeader(conv) {
  const title = conversationTitle(conv);
  $("#conv-title").textContent = title;
  paintAvatar($("#conv-avatar"), conv.kind === "group" ? conv.group : conv.peer, title, conv.kind === "group" ? "group" : "");
  $("#members-btn").hidden = conv.kind !== "group";
  const dot = $("#conv-presence-dot");
  if (conv.kind === "group") {
    $("#conv-subtitle").textContent = conv.memberCount ? `${conv.memberCount} members` : "Group";
    dot.hidden = true;
    return;
  }
  const profile = profileOf(conv.peer);
  const presence = presenceOf(conv.peer);
  const parts = [profile ? `@${profile.username}` : ""];
  if (presence) {
    const text = presence.status === "online" ? "online" : lastSeenText(presence.lastSeen);
    parts.push(h("span", { class: `presence-text ${presence.status}`, dataset: { testid: "presence-text", status: presence.status } }, text));
  }
  $("#conv-subtitle").replaceChildren(...parts.flatMap((part, i) => (i ? [" · ", part] : [part])));
  dot.hidden = !presence;
  dot.className = `presence-dot ${presence?.status ?? ""}`.trim();
  dot.dataset.status = presence?.status ?? "";
}

function renderMessages(conv, scroll) {
  const box = $("#messages");
  const fromBottom = box.scrollHeight - box.scrollTop;
  const nearBottom = fromBottom - box.clientHeight < 80;
  const nodes = [historyTop(conv)];
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
  // Older messages went in above: what the user was reading stays where it was.
  if (scroll === "anchor" && !nearBottom) box.scrollTop = box.scrollHeight - fromBottom;
  else if (scroll === "bottom" || nearBottom) box.scrollTop = box.scrollHeight;
}

/** The top of the loaded messages: more to load, or the start of the conversation. */
function historyTop(conv) {
  if (!state.historyLoaded(conv)) return h("div", { class: "history-top", dataset: { testid: "history-top" } });
  const text = conv.hasOlder ? (loadingOlder(conv) ? "Loading earlier messages…" : "") : "This is the start of the conversation";
  return h("div", { class: "history-top", dataset: { testid: "history-top", more: String(conv.hasOlder) } }, text);
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
