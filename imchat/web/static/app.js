// imchat web client: one ES module, no build step, no dependencies.
//
// The server keeps no message history for clients: conversations (list,
// unread counts, last message, last seq) live in this browser, in
// localStorage per user. The WebSocket protocol is docs/protocol.md.

const API = "/api/v1";
const MAX_BODY = 4000;
const KEEP_MESSAGES = 500; // per conversation, in localStorage
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
const PING_EVERY_MS = 20000;
const PONG_WAIT_MS = 10000;
const SESSION_KEY = "imchat.session";
const PROFILES_KEY = "imchat.profiles";

const ERROR_TEXT = {
  not_found: "This person or group doesn't exist any more.",
  forbidden: "You're not a member of this group.",
  rate_limited: "You're sending too fast. Wait a moment and retry.",
  unavailable: "The server couldn't take this message right now.",
  too_large: "This message is too long.",
};

// ------------------------------------------------------------------ helpers
const $ = (selector) => document.querySelector(selector);

/** A DOM element with properties and children (strings become text, never HTML). */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function svgIcon(path) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
  p.setAttribute("d", path);
  svg.append(p);
  return svg;
}

const ICONS = {
  clock: "M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20zM12 6v6l4 2",
  check: "M20 6L9 17l-5-5",
  alert: "M12 8v4M12 16h.01M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20z",
};

/** A client message id: random, so unique per sender without coordination. */
function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // randomUUID exists only in secure contexts; plain http on a LAN host has not.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function readJson(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : fallback;
  } catch {
    return fallback;
  }
}

function writeJson(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch (err) {
    // A full quota must not stop the chat; history is then kept in memory only.
    console.warn("imchat: could not save", key, err);
  }
}

function directConversationId(a, b) {
  // The server's id of a direct conversation (docs/protocol.md).
  return a < b ? `d:${a}:${b}` : `d:${b}:${a}`;
}

const AVATAR_COLORS = ["#4f46e5", "#0891b2", "#059669", "#d97706", "#db2777", "#7c3aed", "#2563eb", "#dc2626", "#0d9488", "#9333ea"];

function avatarColor(seed) {
  let hash = 0;
  for (const ch of seed) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return AVATAR_COLORS[hash % AVATAR_COLORS.length];
}

function initials(name) {
  const words = name.replace(/[_@]/g, " ").trim().split(/\s+/).filter(Boolean);
  if (!words.length) return "?";
  const letters = words.length > 1 ? words[0][0] + words[1][0] : words[0].slice(0, 2);
  return letters.toUpperCase();
}

function paintAvatar(node, seed, name, extraClass = "") {
  node.className = `avatar ${extraClass}`.trim();
  node.style.background = avatarColor(seed);
  node.textContent = initials(name);
}

function avatar(seed, name, extraClass = "") {
  const node = h("span", { "aria-hidden": "true" });
  paintAvatar(node, seed, name, extraClass);
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const shortDayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

function startOfDay(ts) {
  const d = new Date(ts);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

function dayLabel(ts) {
  const today = startOfDay(Date.now());
  const day = startOfDay(ts);
  if (day === today) return "Today";
  if (day === today - 86400000) return "Yesterday";
  return dayFormat.format(ts);
}

function listTime(ts) {
  if (!ts) return "";
  const today = startOfDay(Date.now());
  if (ts >= today) return timeFormat.format(ts);
  if (ts >= today - 86400000) return "Yesterday";
  return shortDayFormat.format(ts);
}

function toast(text, kind = "") {
  const node = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  $("#toasts").append(node);
  setTimeout(() => node.remove(), 6000);
}

function showError(box, text) {
  box.textContent = text;
  box.hidden = !text;
}

// --------------------------------------------------------------------- API
class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Call the HTTP API; resolves to the JSON body, rejects with an ApiError. */
async function api(method, path, body, token = session?.token) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "network", "Can't reach the server. Check your connection and try again.");
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.ok) return data;
  const error = data?.error ?? {};
  if (response.status === 401 && token && session && token === session.token) {
    signOut("Your session has expired. Please sign in again.");
  }
  throw new ApiError(response.status, error.code ?? "error", friendlyApiMessage(response, error), error.details);
}

function friendlyApiMessage(response, error) {
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    return `Too many attempts. Try again${wait ? ` in ${wait} s` : " later"}.`;
  }
  if (response.status === 503) return "The server is having trouble right now. Try again in a moment.";
  if (response.status >= 500) return "Something went wrong on the server. Try again.";
  return error.message ? error.message.charAt(0).toUpperCase() + error.message.slice(1) : `Request failed (${response.status}).`;
}

// ------------------------------------------------------------ session/state
let session = readJson(SESSION_KEY, null); // {token, user_id, username, expires_at}
let state = null; // {conversations: {id: Conversation}, activeId}
let socket = null;
const profiles = new Map(Object.entries(readJson(PROFILES_KEY, {})));
const profileRequests = new Map();
const groupRequests = new Map();

function stateKey() {
  return `imchat.state.${session.user_id}`;
}

function loadState() {
  const saved = readJson(stateKey(), null);
  state = { conversations: saved?.conversations ?? {}, activeId: null };
}

function saveState() {
  if (session && state) writeJson(stateKey(), { conversations: state.conversations });
}

/** The cached profile of a user, fetched once; re-renders when it arrives. */
function profileOf(userId) {
  const known = profiles.get(userId);
  if (known) return known;
  if (!profileRequests.has(userId) && session) {
    const request = api("GET", `/users/${encodeURIComponent(userId)}`)
      .then((profile) => {
        rememberProfile(profile);
        render();
      })
      .catch(() => {
        // Unknown users stay shown by a short id; asked again after a reload.
      });
    profileRequests.set(userId, request);
  }
  return null;
}

function rememberProfile(profile) {
  profiles.set(profile.user_id, {
    user_id: profile.user_id,
    username: profile.username,
    display_name: profile.display_name ?? null,
  });
  writeJson(PROFILES_KEY, Object.fromEntries(profiles));
}

function nameOf(userId) {
  if (session && userId === session.user_id) return "You";
  const profile = profileOf(userId);
  return profile ? profile.display_name || profile.username : "…";
}

function fullNameOf(userId) {
  const profile = profileOf(userId);
  return profile ? profile.display_name || profile.username : "…";
}

// ------------------------------------------------------------- conversations
function conversationFor(id, seed) {
  let conv = state.conversations[id];
  if (!conv) {
    conv = {
      id,
      kind: id.startsWith("g:") ? "group" : "direct",
      peer: null,
      group: null,
      title: "",
      messages: [],
      unread: 0,
      lastSeq: 0,
      updatedAt: Date.now(),
      left: false,
      ...seed,
    };
    state.conversations[id] = conv;
  }
  if (conv.kind === "group" && !conv.title) fetchGroupTitle(conv);
  return conv;
}

function fetchGroupTitle(conv) {
  if (groupRequests.has(conv.group)) return;
  const request = api("GET", `/groups/${encodeURIComponent(conv.group)}`)
    .then((group) => {
      conv.title = group.name;
      conv.memberCount = group.member_count;
      saveState();
      render();
    })
    .catch(() => {
      groupRequests.delete(conv.group); // retried on the next message
    });
  groupRequests.set(conv.group, request);
}

function conversationTitle(conv) {
  if (conv.kind === "group") return conv.title || "Group";
  return fullNameOf(conv.peer);
}

/** Messages carry `order`: the seq once known; unacked sends sort last. */
function orderOf(message) {
  return message.seq ?? Number.MAX_SAFE_INTEGER;
}

function insertMessage(conv, message) {
  conv.messages.push(message);
  conv.messages.sort((a, b) => orderOf(a) - orderOf(b) || a.ts - b.ts);
  if (conv.messages.length > KEEP_MESSAGES) conv.messages.splice(0, conv.messages.length - KEEP_MESSAGES);
  conv.updatedAt = Math.max(conv.updatedAt, message.ts);
}

function lastMessage(conv) {
  for (let i = conv.messages.length - 1; i >= 0; i -= 1) {
    if (!conv.messages[i].note) return conv.messages[i];
  }
  return null;
}

function isVisible(conv) {
  return state.activeId === conv.id && document.visibilityState === "visible";
}

// ------------------------------------------------------------ server frames
const deliveredDue = new Map(); // conversation id -> highest seq to confirm

function onFrame(frame) {
  switch (frame.type) {
    case "msg":
      receiveMessage(frame);
      break;
    case "ack":
      receiveAck(frame);
      break;
    case "error":
      receiveError(frame);
      break;
    case "event":
      receiveEvent(frame);
      break;
    case "synced":
      socket.markSynced(frame.count);
      break;
    default:
      break; // pong and anything newer: nothing to do
  }
}

function receiveMessage(frame) {
  const me = session.user_id;
  const own = frame.from === me;
  const seed = frame.group
    ? { kind: "group", group: frame.group }
    : { kind: "direct", peer: own ? frame.to : frame.from };
  const conv = conversationFor(frame.conversation_id, seed);
  const known = conv.messages.find((m) => m.msgId === frame.msg_id || (m.seq === frame.seq && m.seq !== undefined));
  if (!known) {
    insertMessage(conv, {
      msgId: frame.msg_id,
      seq: frame.seq,
      from: frame.from,
      body: frame.body,
      ts: frame.ts,
      state: own ? "sent" : "received",
    });
    if (!own && !isVisible(conv)) conv.unread += 1;
  }
  conv.lastSeq = Math.max(conv.lastSeq, frame.seq);
  if (!own) confirmDelivered(conv.id, frame.seq);
  saveState();
  render();
}

/**
 * The message is stored in this browser and shown in the list: tell the
 * server it arrived, so it is not pushed again. Batched per conversation.
 */
function confirmDelivered(conversationId, seq) {
  const due = deliveredDue.get(conversationId) ?? 0;
  deliveredDue.set(conversationId, Math.max(due, seq));
  queueMicrotask(flushDelivered);
}

function flushDelivered() {
  for (const [conversationId, seq] of deliveredDue) {
    if (socket?.send({ type: "delivered", conversation_id: conversationId, seq })) deliveredDue.delete(conversationId);
  }
}

function findOwn(cid) {
  for (const conv of Object.values(state.conversations)) {
    const message = conv.messages.find((m) => m.cid === cid);
    if (message) return { conv, message };
  }
  return null;
}

function receiveAck(frame) {
  const found = findOwn(frame.id);
  if (!found) return;
  const { conv, message } = found;
  const duplicate = conv.messages.find((m) => m !== message && m.msgId === frame.msg_id);
  if (duplicate) conv.messages.splice(conv.messages.indexOf(duplicate), 1); // echo from another tab
  Object.assign(message, { msgId: frame.msg_id, seq: frame.seq, ts: frame.ts, state: "sent", error: null });
  conv.messages.sort((a, b) => orderOf(a) - orderOf(b) || a.ts - b.ts);
  conv.lastSeq = Math.max(conv.lastSeq, frame.seq);
  saveState();
  render();
}

function receiveError(frame) {
  const text = ERROR_TEXT[frame.code] ?? frame.message ?? "Something went wrong.";
  const found = frame.id ? findOwn(frame.id) : null;
  if (!found) {
    toast(text, "error");
    return;
  }
  Object.assign(found.message, { state: "failed", error: text });
  saveState();
  render();
}

function receiveEvent(frame) {
  const me = session.user_id;
  const id = `g:${frame.group}`;
  const concernsMe = frame.user_id === me;
  if (!state.conversations[id] && !(concernsMe && frame.event === "member_added")) return;
  const conv = conversationFor(id, { kind: "group", group: frame.group });
  if (frame.event === "member_added" && concernsMe) conv.left = false;
  if (frame.event === "member_removed" && concernsMe) conv.left = true;
  if (frame.event === "member_added" || frame.event === "member_removed") fetchGroupTitle(conv);
  const ts = frame.ts ?? Date.now();
  // Notes sort just after the last message seen: they have no seq of their own.
  const event = { event: frame.event, user_id: frame.user_id, actor_id: frame.actor_id, role: frame.role };
  // Worded when shown, not now: the names may still be on their way from the API.
  insertMessage(conv, { note: event, ts, seq: conv.lastSeq + 0.5 });
  saveState();
  render();
}

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

// ------------------------------------------------------------------ socket
/** The WebSocket with reconnects: 0.5 s doubling to 10 s, with jitter. */
class ChatSocket {
  constructor(token) {
    this.token = token;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.pingTimer = null;
    this.pongDeadline = null;
    this.retryAt = 0;
    this.closed = false;
    this.synced = false;
    this.status = "connecting";
  }

  open() {
    clearTimeout(this.timer);
    if (this.closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    this.synced = false;
    this.setStatus("connecting");
    ws.onopen = () => {
      this.resendUnacked();
      flushDelivered();
      this.keepAlive();
    };
    ws.onmessage = (event) => {
      this.pongDeadline = null;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      onFrame(frame);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      if (!this.closed) this.scheduleReconnect();
    };
  }

  markSynced(count) {
    this.synced = true;
    this.attempt = 0; // a full handshake and sync: the next drop starts over at 0.5 s
    this.setStatus("online");
    if (count) render();
  }

  /** Unacked sends go again with the same id: the server answers a duplicate with the first ack. */
  resendUnacked() {
    for (const conv of Object.values(state.conversations)) {
      for (const message of conv.messages) {
        if (message.state === "sending") this.send(sendFrame(conv, message));
      }
    }
  }

  keepAlive() {
    clearInterval(this.pingTimer);
    // A dead network can leave a socket looking open: ping, and drop it if nothing comes back.
    this.pingTimer = setInterval(() => {
      if (this.pongDeadline && Date.now() > this.pongDeadline) {
        this.ws?.close();
        return;
      }
      if (this.send({ type: "ping" }) && !this.pongDeadline) this.pongDeadline = Date.now() + PONG_WAIT_MS;
    }, PING_EVERY_MS / 2);
  }

  scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5)); // jitter: +-25 %
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.setStatus("offline");
    this.timer = setTimeout(() => this.open(), delay);
    this.checkToken();
  }

  /** A refused upgrade looks like any other drop to a browser: ask the API whether the token still works. */
  checkToken() {
    api("GET", "/users/me", undefined, this.token).catch(() => {
      // 401 signs out inside api(); anything else: keep retrying.
    });
  }

  /** Close the current socket (it cannot work) and go through the reconnect loop. */
  drop() {
    this.ws?.close();
  }

  retryNow() {
    if (this.ws || this.closed) return;
    this.open();
  }

  send(frame) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.pingTimer);
    this.ws?.close(1000);
    this.ws = null;
  }

  setStatus(status) {
    this.status = status;
    renderConnection();
  }
}

function sendFrame(conv, message) {
  const target = conv.kind === "group" ? { group: conv.group } : { to: conv.peer };
  return { type: "send", id: message.cid, ...target, body: message.body };
}

// ----------------------------------------------------------------- actions
function sendMessage(text) {
  const conv = state.conversations[state.activeId];
  const body = text.trim();
  if (!conv || !body || body.length > MAX_BODY || conv.left) return false;
  const message = { cid: newClientId(), from: session.user_id, body, ts: Date.now(), state: "sending" };
  insertMessage(conv, message);
  saveState();
  socket.send(sendFrame(conv, message)); // offline: it goes on the next connect
  render();
  return true;
}

function retryMessage(cid) {
  const found = findOwn(cid);
  if (!found) return;
  Object.assign(found.message, { state: "sending", error: null });
  saveState();
  socket.send(sendFrame(found.conv, found.message));
  render();
}

function openConversation(id) {
  state.activeId = id;
  const conv = state.conversations[id];
  if (conv) conv.unread = 0;
  saveState();
  $("#chat-screen").classList.add("show-pane");
  render({ scroll: "bottom" });
  $("#composer-input").focus();
}

async function lookupUser(raw) {
  const username = raw.trim().replace(/^@/, "").toLowerCase();
  if (!username) throw new ApiError(400, "bad_request", "Enter a username.");
  try {
    const profile = await api("GET", `/users/by-username/${encodeURIComponent(username)}`);
    rememberProfile(profile);
    return profile;
  } catch (err) {
    if (err.status === 404) throw new ApiError(404, "not_found", `No one is called “${username}”. Check the spelling.`);
    throw err;
  }
}

async function startDirectChat(username) {
  const profile = await lookupUser(username);
  if (profile.user_id === session.user_id) throw new ApiError(400, "bad_request", "That's you! Pick someone else to chat with.");
  const id = directConversationId(session.user_id, profile.user_id);
  conversationFor(id, { kind: "direct", peer: profile.user_id });
  openConversation(id);
}

async function createGroup(name, usernames) {
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
  const memberIds = results.map((r) => r.value.user_id).filter((id) => id !== session.user_id);
  const group = await api("POST", "/groups", { name: title, member_ids: memberIds });
  const conv = conversationFor(`g:${group.group_id}`, { kind: "group", group: group.group_id, title: group.name });
  conv.memberCount = group.member_count;
  openConversation(conv.id);
}

function signOut(reason) {
  socket?.close();
  socket = null;
  saveState();
  session = null;
  state = null;
  localStorage.removeItem(SESSION_KEY);
  document.title = "imchat";
  showAuth(reason);
}

// -------------------------------------------------------------- rendering
let renderQueued = false;
let pendingScroll = null;

/** Batch renders into one frame: a burst of pending messages paints once. */
function render(options = {}) {
  if (options.scroll) pendingScroll = options.scroll;
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    if (!state) return;
    renderList();
    renderConversation();
    renderTitle();
  });
}

function sortedConversations() {
  return Object.values(state.conversations).sort((a, b) => b.updatedAt - a.updatedAt);
}

function previewOf(conv) {
  const last = lastMessage(conv);
  if (!last) return conv.kind === "group" ? "Group created — say hello!" : "No messages yet";
  if (last.from === session.user_id) return `You: ${last.body}`;
  return conv.kind === "group" ? `${nameOf(last.from)}: ${last.body}` : last.body;
}

function renderList() {
  const filter = $("#conv-filter").value.trim().toLowerCase();
  const list = $("#conv-list");
  const all = sortedConversations();
  const shown = all.filter((conv) => !filter || conversationTitle(conv).toLowerCase().includes(filter));
  list.replaceChildren(
    ...shown.map((conv) => {
      const title = conversationTitle(conv);
      const seed = conv.kind === "group" ? conv.group : conv.peer;
      const last = lastMessage(conv);
      return h(
        "li",
        {
          class: `conv-item${conv.unread ? " has-unread" : ""}`,
          "aria-current": conv.id === state.activeId ? "true" : "false",
          tabindex: "0",
          role: "button",
          dataset: { convId: conv.id, testid: "conversation" },
          onclick: () => openConversation(conv.id),
          onkeydown: (event) => {
            if (event.key === "Enter") openConversation(conv.id);
          },
        },
        avatar(seed, title, conv.kind === "group" ? "group" : ""),
        h("div", { class: "conv-main" }, h("div", { class: "conv-name" }, title), h("div", { class: "conv-preview" }, previewOf(conv))),
        h(
          "div",
          { class: "conv-meta" },
          h("span", { class: "conv-time" }, listTime(last?.ts ?? conv.updatedAt)),
          conv.unread ? h("span", { class: "unread-badge", "aria-label": `${conv.unread} unread` }, conv.unread > 99 ? "99+" : conv.unread) : null,
        ),
      );
    }),
  );
  $("#conv-empty").hidden = all.length > 0;
  list.hidden = all.length === 0;
}

function renderConversation() {
  const conv = state.conversations[state.activeId];
  $("#pane-empty").hidden = Boolean(conv);
  $("#conversation").hidden = !conv;
  if (!conv) return;
  if (isVisible(conv) && conv.unread) {
    conv.unread = 0;
    saveState();
  }
  const title = conversationTitle(conv);
  $("#conv-title").textContent = title;
  paintAvatar($("#conv-avatar"), conv.kind === "group" ? conv.group : conv.peer, title, conv.kind === "group" ? "group" : "");
  const profile = conv.kind === "direct" ? profileOf(conv.peer) : null;
  $("#conv-subtitle").textContent =
    conv.kind === "group" ? (conv.memberCount ? `${conv.memberCount} members` : "Group") : profile ? `@${profile.username}` : "";
  $("#members-btn").hidden = conv.kind !== "group";
  $("#composer").hidden = conv.left;
  $("#composer-note").hidden = !conv.left;
  $("#composer-note").textContent = conv.left ? "You're no longer a member of this group." : "";
  renderMessages(conv);
}

function renderMessages(conv) {
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
    const prev = items[i - 1];
    const next = items[i + 1];
    const sameAs = (other) => other && !other.note && other.from === message.from && startOfDay(other.ts) === day;
    nodes.push(messageNode(conv, message, !sameAs(prev), !sameAs(next)));
    if (message.state === "failed") {
      nodes.push(
        h(
          "div",
          { class: "msg-error", role: "alert", dataset: { testid: "message-error" } },
          svgIcon(ICONS.alert),
          h("span", {}, message.error || "Not sent."),
          h("button", { type: "button", class: "link", onclick: () => retryMessage(message.cid) }, "Retry"),
        ),
      );
    }
  });
  box.replaceChildren(...nodes);
  if (pendingScroll === "bottom" || nearBottom) box.scrollTop = box.scrollHeight;
  pendingScroll = null;
}

function messageNode(conv, message, first, last) {
  const own = message.from === session.user_id;
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
  const labels = { sending: "Sending…", sent: `Sent (#${message.seq})`, failed: "Not sent" };
  const icons = { sending: ICONS.clock, sent: ICONS.check, failed: ICONS.alert };
  return h("span", { class: "tick", title: labels[message.state], "aria-label": labels[message.state], dataset: { testid: "message-state" } }, svgIcon(icons[message.state] ?? ICONS.check));
}

function renderConnection() {
  const box = $("#conn-state");
  const status = socket?.status ?? "offline";
  box.dataset.state = status;
  const retry = $("#conn-retry");
  retry.hidden = status !== "offline";
  if (status === "online") $("#conn-text").textContent = "Online";
  else if (status === "connecting") $("#conn-text").textContent = "Connecting…";
  else {
    const seconds = Math.max(0, Math.ceil((socket.retryAt - Date.now()) / 1000));
    $("#conn-text").textContent = seconds ? `Offline · retry in ${seconds}s` : "Offline · retrying…";
  }
}

function renderTitle() {
  const unread = Object.values(state.conversations).reduce((sum, conv) => sum + conv.unread, 0);
  document.title = unread ? `(${unread}) imchat` : "imchat";
}

// ------------------------------------------------------------- auth screen
let authMode = "login";

function showAuth(message) {
  $("#chat-screen").hidden = true;
  $("#auth-screen").hidden = false;
  setAuthMode("login");
  showError($("#auth-error"), message ?? "");
  $("#auth-password").value = "";
  $("#auth-username").focus();
}

function setAuthMode(mode) {
  authMode = mode;
  const register = mode === "register";
  $("#tab-login").setAttribute("aria-selected", String(!register));
  $("#tab-register").setAttribute("aria-selected", String(register));
  document.querySelectorAll(".register-only").forEach((node) => {
    node.hidden = !register;
  });
  $("#auth-title").textContent = register ? "Create your account" : "Welcome back";
  $("#auth-lead").textContent = register ? "Pick a username your friends can find you by." : "Sign in to pick up your conversations.";
  $("#auth-submit").textContent = register ? "Create account" : "Sign in";
  $("#auth-password").autocomplete = register ? "new-password" : "current-password";
  showError($("#auth-error"), "");
  clearFieldErrors();
}

function clearFieldErrors() {
  document.querySelectorAll("#auth-form .field-error").forEach((node) => {
    node.textContent = "";
  });
  document.querySelectorAll("#auth-form input").forEach((node) => node.removeAttribute("aria-invalid"));
}

function fieldError(name, text) {
  const box = document.querySelector(`#auth-form .field-error[data-for="${name}"]`);
  if (!box) return false;
  box.textContent = text;
  document.querySelector(`#auth-form input[name="${name}"]`)?.setAttribute("aria-invalid", "true");
  return true;
}

function validateAuth(form) {
  let ok = true;
  const username = form.username.value.trim();
  if (authMode === "register" && !/^[a-z0-9_]{3,32}$/.test(username)) {
    ok = fieldError("username", "3 to 32 characters: lowercase letters, digits and _.") && false;
  }
  if (!username) ok = fieldError("username", "Enter your username.") && false;
  const password = form.password.value;
  if (authMode === "register" && (password.length < 8 || password.length > 128)) {
    ok = fieldError("password", "Use 8 to 128 characters.") && false;
  }
  if (!password) ok = fieldError("password", "Enter your password.") && false;
  return ok;
}

async function submitAuth(event) {
  event.preventDefault();
  const form = event.target;
  clearFieldErrors();
  showError($("#auth-error"), "");
  if (!validateAuth(form)) return;
  const username = form.username.value.trim();
  const password = form.password.value;
  const button = $("#auth-submit");
  button.disabled = true;
  try {
    if (authMode === "register") {
      const displayName = form.display_name.value.trim();
      await api("POST", "/auth/register", { username, password, ...(displayName ? { display_name: displayName } : {}) }, null);
    }
    const token = await api("POST", "/auth/login", { username, password }, null);
    session = { token: token.access_token, user_id: token.user_id, username, expires_at: Date.now() + token.expires_in * 1000 };
    writeJson(SESSION_KEY, session);
    form.reset();
    await startChat();
  } catch (err) {
    const details = err.details && typeof err.details === "object" ? Object.entries(err.details) : [];
    const placed = details.filter(([name, problems]) => fieldError(name, [].concat(problems).join(" ")));
    if (!placed.length || placed.length < details.length) {
      showError($("#auth-error"), err.status === 409 ? `The username “${username}” is taken. Try another one.` : err.message);
    }
  } finally {
    button.disabled = false;
  }
}

// --------------------------------------------------------------- chat boot
async function startChat() {
  loadState();
  $("#auth-screen").hidden = true;
  $("#chat-screen").hidden = false;
  const me = await api("GET", "/users/me").catch((err) => {
    if (err.status === 401) return null; // api() already signed out
    return { user_id: session.user_id, username: session.username }; // offline: carry on from storage
  });
  if (!me || !session) return;
  rememberProfile(me);
  const myName = me.display_name || me.username;
  $("#me-name").textContent = myName;
  paintAvatar($("#me-avatar"), me.user_id, myName);
  socket = new ChatSocket(session.token);
  socket.open();
  render();
}

function wireDialogs() {
  document.querySelectorAll("dialog [data-close]").forEach((button) => {
    button.addEventListener("click", () => button.closest("dialog").close());
  });

  $("#new-chat").addEventListener("click", () => {
    $("#chat-form").reset();
    showError($("#chat-error"), "");
    $("#chat-dialog").showModal();
  });
  $("#chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runInDialog("#chat-dialog", "#chat-error", "#chat-submit", () => startDirectChat($("#chat-username").value));
  });

  $("#new-group").addEventListener("click", () => {
    $("#group-form").reset();
    showError($("#group-error"), "");
    $("#group-dialog").showModal();
  });
  $("#group-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runInDialog("#group-dialog", "#group-error", "#group-submit", () => createGroup($("#group-name").value, $("#group-members").value));
  });

  $("#members-btn").addEventListener("click", openMembers);
  $("#members-form").addEventListener("submit", (event) => {
    event.preventDefault();
    addMember();
  });
  $("#leave-group").addEventListener("click", leaveGroup);
}

/** Run a dialog's action: close on success, else show why in the dialog. */
async function runInDialog(dialog, errorBox, submit, action) {
  showError($(errorBox), "");
  $(submit).disabled = true;
  try {
    await action();
    $(dialog).close();
  } catch (err) {
    showError($(errorBox), err.message);
  } finally {
    $(submit).disabled = false;
  }
}

async function openMembers() {
  const conv = state.conversations[state.activeId];
  if (!conv || conv.kind !== "group") return;
  showError($("#members-error"), "");
  $("#member-list").replaceChildren(h("li", {}, "Loading…"));
  $("#members-dialog-title").textContent = conversationTitle(conv);
  $("#members-dialog").showModal();
  await refreshMembers(conv);
}

async function refreshMembers(conv) {
  try {
    const members = await api("GET", `/groups/${encodeURIComponent(conv.group)}/members`);
    await Promise.allSettled(members.map((m) => profileRequests.get(m.user_id) ?? (profileOf(m.user_id), profileRequests.get(m.user_id))));
    conv.memberCount = members.length;
    const mine = members.find((m) => m.user_id === session.user_id);
    $("#add-member").hidden = !mine || mine.role === "member";
    $("#member-list").replaceChildren(
      ...members.map((m) => {
        const profile = profileOf(m.user_id);
        const name = m.user_id === session.user_id ? "You" : fullNameOf(m.user_id);
        return h(
          "li",
          {},
          avatar(m.user_id, fullNameOf(m.user_id), "small"),
          h("div", { class: "who" }, name, profile ? h("small", {}, `@${profile.username}`) : null),
          h("span", { class: `role ${m.role}` }, m.role),
        );
      }),
    );
    render();
  } catch (err) {
    $("#member-list").replaceChildren();
    showError($("#members-error"), err.message);
  }
}

async function addMember() {
  const conv = state.conversations[state.activeId];
  showError($("#members-error"), "");
  $("#member-submit").disabled = true;
  try {
    const profile = await lookupUser($("#member-username").value);
    await api("POST", `/groups/${encodeURIComponent(conv.group)}/members`, { user_id: profile.user_id });
    $("#member-username").value = "";
    await refreshMembers(conv);
  } catch (err) {
    showError($("#members-error"), err.status === 409 ? "They're already in the group." : err.message);
  } finally {
    $("#member-submit").disabled = false;
  }
}

async function leaveGroup() {
  const conv = state.conversations[state.activeId];
  if (!conv || !confirm(`Leave “${conversationTitle(conv)}”?`)) return;
  try {
    await api("DELETE", `/groups/${encodeURIComponent(conv.group)}/members/${encodeURIComponent(session.user_id)}`);
    conv.left = true;
    saveState();
    $("#members-dialog").close();
    render();
  } catch (err) {
    showError($("#members-error"), err.message);
  }
}

function wireComposer() {
  const input = $("#composer-input");
  const count = $("#composer-count");
  const resize = () => {
    input.style.height = "";
    // Grow with the text, up to a limit; an empty box keeps its one-row height.
    if (input.value) input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
    const left = MAX_BODY - input.value.length;
    count.hidden = left > 200;
    count.textContent = String(left);
    count.classList.toggle("over", left < 0);
    $("#send").disabled = !input.value.trim();
  };
  input.addEventListener("input", resize);
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter breaks the line; never while an IME is composing.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    if (sendMessage(input.value)) {
      input.value = "";
      resize();
      render({ scroll: "bottom" });
    }
  });
  resize();
}

function wireChrome() {
  $("#tab-login").addEventListener("click", () => setAuthMode("login"));
  $("#tab-register").addEventListener("click", () => setAuthMode("register"));
  $("#auth-form").addEventListener("submit", submitAuth);
  $("#logout").addEventListener("click", () => signOut(""));
  $("#conn-retry").addEventListener("click", () => socket?.retryNow());
  $("#back").addEventListener("click", () => {
    state.activeId = null;
    $("#chat-screen").classList.remove("show-pane");
    render();
  });
  $("#conv-filter").addEventListener("input", () => render());
  document.addEventListener("visibilitychange", () => {
    if (state) render();
    if (document.visibilityState === "visible") socket?.retryNow();
  });
  window.addEventListener("online", () => socket?.retryNow());
  // The browser knows the network is gone before the socket notices: drop it now.
  window.addEventListener("offline", () => socket?.drop());
  // Another tab of the same user saved: adopt its copy (both get every message).
  window.addEventListener("storage", (event) => {
    if (!session || !state || event.key !== stateKey() || !event.newValue) return;
    const saved = readJson(stateKey(), null);
    if (saved?.conversations) {
      state.conversations = saved.conversations;
      render();
    }
  });
  setInterval(() => {
    if (socket?.status === "offline") renderConnection(); // the countdown
  }, 1000);
}

function boot() {
  wireChrome();
  wireDialogs();
  wireComposer();
  if (session && session.expires_at > Date.now() + 60000) {
    startChat();
  } else {
    const expired = Boolean(session);
    session = null;
    localStorage.removeItem(SESSION_KEY);
    showAuth(expired ? "Your session has expired. Please sign in again." : "");
  }
}

boot();
