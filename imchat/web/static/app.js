// imchat web client, the entry module: wires the modules under js/ together
// and starts. ES modules loaded by the browser as they are: no build step,
// no dependencies.
//
//   js/api.js      REST client and the session (token) it sends
//   js/socket.js   WebSocket: reconnect with backoff, resend, delivered and read
//   js/state.js    conversations, profiles, localStorage; onChange/changed
//   js/profiles.js names of users and groups, fetched once
//   js/chat.js     server frames into the state, the user's actions
//   js/inbox.js    the conversation list, unread counts, receipts, from the server
//   js/history.js  a conversation's history pages from the server, quoted messages
//   js/changes.js  edits, deletes and reactions: frames out, `update` frames in
//   js/typing.js, js/presence.js, js/blocks.js  who types, who is online, whom the user blocks
//   js/push.js     Web Push: the service worker, the subscription, notification clicks
//   js/views/      the screens and dialogs; render.js repaints on changes
//
// The server keeps the conversations and their history (docs/api.md);
// localStorage holds a copy per user so that a reload paints at once. The
// WebSocket protocol is docs/protocol.md.

import { api, currentSession, endSession, logout, onSessionExpired, sessionResumable } from "./js/api.js";
import { connect, connection, disconnect, forgetSession, onNotice } from "./js/chat.js";
import { $, toast } from "./js/dom.js";
import * as state from "./js/state.js";
import { showAuth, wireAuth } from "./js/views/auth.js";
import { wireComposer } from "./js/views/composer.js";
import { wireActions } from "./js/views/actions.js";
import { wireConfirm } from "./js/views/confirm.js";
import { refreshConversations } from "./js/inbox.js";
import { onOpenConversation, startPush, stopPush, takeLinkedConversation, wirePush } from "./js/push.js";
import { closeConversation, openConversation, wireConversation } from "./js/views/conversation.js";
import { wireDialogs } from "./js/views/dialogs.js";
import { renderConnection, renderMe } from "./js/views/header.js";
import { wireMenu } from "./js/views/menu.js";
import { render } from "./js/views/render.js";

/** Show the chat of the session just started or resumed, and connect. */
async function startChat() {
  const session = currentSession();
  state.load(session.user_id);
  $("#auth-screen").hidden = true;
  $("#chat-screen").hidden = false;
  const me = await api("GET", "/users/me").catch((err) => {
    if (err.status === 401) return null; // api() already signed out
    return { user_id: session.user_id, username: session.username }; // offline: carry on from storage
  });
  if (!me || !currentSession()) return;
  state.rememberProfile(me);
  renderMe(me);
  connect(renderConnection);
  render();
  // Again after each reconnect's sync: what happened meanwhile. Then the
  // conversation a notification's link names, now that it is known.
  refreshConversations().then(openLinkedConversation);
  startPush();
}

/** Open the conversation a notification asked for (fetching the list when it is new here). */
async function openNotified(id) {
  if (!state.isLoaded()) return;
  if (!state.conversation(id)) await refreshConversations();
  if (state.conversation(id)) openConversation(id);
}

function openLinkedConversation() {
  const id = takeLinkedConversation();
  if (id) openNotified(id);
}

function signOut(reason) {
  disconnect();
  state.save(); // before the session goes: it names where the state is kept
  endSession();
  state.unload();
  forgetSession();
  document.title = "imchat";
  showAuth(reason);
}

function wireChrome() {
  // The push subscription goes first, while the token still works; then the
  // server ends the session (its other tabs' sockets too).
  $("#logout").addEventListener("click", () => {
    const token = currentSession()?.token;
    stopPush().finally(() => {
      signOut("");
      if (token) logout(token);
    });
  });
  window.addEventListener("hashchange", openLinkedConversation);
  onOpenConversation(openNotified);
  $("#conn-retry").addEventListener("click", () => connection()?.retryNow());
  $("#back").addEventListener("click", closeConversation);
  $("#conv-filter").addEventListener("input", () => render());
  // Coming back to the page reads the open conversation (render sends the read mark).
  window.addEventListener("focus", () => state.isLoaded() && render());
  document.addEventListener("visibilitychange", () => {
    if (state.isLoaded()) render();
    if (document.visibilityState === "visible") connection()?.retryNow();
  });
  window.addEventListener("online", () => connection()?.retryNow());
  // The browser knows the network is gone before the socket notices: drop it now.
  window.addEventListener("offline", () => connection()?.drop());
  // Another tab of the same user saved: adopt its copy (both get every message).
  window.addEventListener("storage", (event) => {
    if (currentSession() && state.adoptSaved(event.key, event.newValue)) render();
  });
  setInterval(() => {
    const socket = connection();
    if (socket?.status === "offline") renderConnection(socket); // the countdown
  }, 1000);
}

function boot() {
  state.onChange(render);
  onSessionExpired(signOut);
  onNotice((text) => toast(text, "error"));
  wireAuth(startChat);
  wireChrome();
  wireDialogs();
  wireComposer();
  wireConversation();
  wirePush();
  wireMenu();
  wireConfirm();
  wireActions();
  if (sessionResumable()) {
    startChat();
  } else {
    const expired = Boolean(currentSession());
    endSession();
    showAuth(expired ? "Your session has expired. Please sign in again." : "");
  }
}

boot();
