// One repaint of the chat screen from the state: the list, the open
// conversation and the tab title. Called through state.onChange (wired in
// app.js), so any module may ask for a repaint without importing a view.

import * as state from "../state.js";
import { renderConversation } from "./conversation.js";
import { renderList } from "./list.js";

let renderQueued = false;
let pendingScroll = null; // kept until a conversation is painted to use it

/** Batch renders into one frame: a burst of pending messages paints once. */
export function render(options = {}) {
  if (options.scroll) pendingScroll = options.scroll;
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    if (!state.isLoaded()) return;
    renderList();
    if (renderConversation(pendingScroll)) pendingScroll = null;
    renderTitle();
  });
}

function renderTitle() {
  const unread = state.totalUnread();
  document.title = unread ? `(${unread}) imchat` : "imchat";
}
