// The conversation's menu in its header (direct conversations): block or
// unblock the other person.

import { isBlocked } from "../blocks.js";
import { blockPeer, unblockPeer } from "../chat.js";
import { $, toast } from "../dom.js";
import { fullNameOf } from "../profiles.js";
import * as state from "../state.js";

function setMenuOpen(open) {
  $("#conv-menu").hidden = !open;
  $("#conv-menu-btn").setAttribute("aria-expanded", String(open));
}

export function wireMenu() {
  $("#conv-menu-btn").addEventListener("click", (event) => {
    event.stopPropagation();
    setMenuOpen($("#conv-menu").hidden);
    if (!$("#conv-menu").hidden) $("#block-btn").focus();
  });
  document.addEventListener("click", (event) => {
    if (!$("#conv-menu-box").contains(event.target)) setMenuOpen(false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("#conv-menu").hidden) {
      setMenuOpen(false);
      $("#conv-menu-btn").focus();
    }
  });
  $("#block-btn").addEventListener("click", toggleBlock);
}

async function toggleBlock() {
  const conv = state.activeConversation();
  setMenuOpen(false);
  if (!conv || conv.kind !== "direct") return;
  try {
    if (isBlocked(conv.peer)) await unblockPeer(conv);
    else await blockPeer(conv);
  } catch (err) {
    toast(err.message, "error");
  }
}

/** The menu of `conv`: only direct conversations have one. */
export function renderMenu(conv) {
  const direct = conv.kind === "direct";
  $("#conv-menu-box").hidden = !direct;
  if (!direct) {
    setMenuOpen(false);
    $("#block-note").hidden = true;
    return;
  }
  const blocked = isBlocked(conv.peer);
  $("#block-btn").textContent = `${blocked ? "Unblock" : "Block"} ${fullNameOf(conv.peer)}`;
  $("#block-note").hidden = !blocked;
  $("#block-note").textContent = blocked ? `You blocked ${fullNameOf(conv.peer)}: they can't message you or see when you're online.` : "";
}
