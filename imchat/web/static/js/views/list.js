// The conversation list in the sidebar: one entry a conversation, newest
// first, filtered by the search box.

import { $, h } from "../dom.js";
import { avatar, listTime } from "../format.js";
import { currentSession } from "../api.js";
import { conversationTitle, nameOf } from "../profiles.js";
import { presenceOf } from "../presence.js";
import * as state from "../state.js";
import { typingIn } from "../typing.js";
import { openConversation } from "./conversation.js";

export function renderList() {
  const filter = $("#conv-filter").value.trim().toLowerCase();
  const list = $("#conv-list");
  const all = state.sortedConversations();
  const shown = all.filter((conv) => !filter || conversationTitle(conv).toLowerCase().includes(filter));
  list.replaceChildren(...shown.map(conversationItem));
  $("#conv-empty").hidden = all.length > 0;
  list.hidden = all.length === 0;
}

function conversationItem(conv) {
  const title = conversationTitle(conv);
  const seed = conv.kind === "group" ? conv.group : conv.peer;
  const last = state.lastMessage(conv);
  return h(
    "li",
    {
      class: `conv-item${conv.unread ? " has-unread" : ""}`,
      "aria-current": conv.id === state.activeId() ? "true" : "false",
      tabindex: "0",
      role: "button",
      dataset: { convId: conv.id, testid: "conversation" },
      onclick: () => openConversation(conv.id),
      onkeydown: (event) => {
        if (event.key === "Enter") openConversation(conv.id);
      },
    },
    h("span", { class: "avatar-wrap" }, avatar(seed, title, conv.kind === "group" ? "group" : ""), presenceDot(conv)),
    h("div", { class: "conv-main" }, h("div", { class: "conv-name" }, title), h("div", { class: "conv-preview" }, previewOf(conv))),
    h("div", { class: "conv-meta" }, h("span", { class: "conv-time" }, listTime(last?.ts ?? conv.updatedAt)), unreadBadge(conv)),
  );
}

function unreadBadge(conv) {
  if (!conv.unread) return null;
  return h("span", { class: "unread-badge", "aria-label": `${conv.unread} unread` }, conv.unread > 99 ? "99+" : conv.unread);
}

/** A direct conversation's dot: green while the other user is online, grey after. */
function presenceDot(conv) {
  const presence = conv.kind === "direct" ? presenceOf(conv.peer) : null;
  if (!presence) return null;
  const label = presence.status === "online" ? "online" : "offline";
  return h("i", { class: `presence-dot ${presence.status}`, role: "img", "aria-label": label, title: label, dataset: { testid: "presence", status: presence.status } });
}

function previewOf(conv) {
  if (typingIn(conv).length) return "typing…";
  const last = state.lastMessage(conv);
  if (!last) return conv.kind === "group" ? "Group created — say hello!" : "No messages yet";
  const body = last.deleted ? "This message was deleted" : last.body;
  if (last.from === currentSession().user_id) return `You: ${body}`;
  return conv.kind === "group" ? `${nameOf(last.from)}: ${body}` : body;
}
