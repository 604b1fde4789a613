// The WebSocket to the gateway (docs/protocol.md): connect, reconnect with
// backoff, keep-alive pings, frames in and out, and the bookkeeping that makes
// a drop lose nothing: unacked sends go again on every connect, and
// "delivered" and "read" marks wait for an open socket.

import { api, freshToken, wsTicket } from "./api.js";

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
const PING_EVERY_MS = 20000;
const PONG_WAIT_MS = 10000;
const SESSION_ENDED = 4401; // the server's close code: logout elsewhere, password changed

/** The frame that sends `message` (an own message with its client id) in `conv`. */
export function sendFrame(conv, message) {
  const target = conv.kind === "group" ? { group: conv.group } : { to: conv.peer };
  const reply = message.replyTo ? { reply_to: message.replyTo } : {};
  return { type: "send", id: message.cid, ...target, body: message.body, ...reply };
}

/**
 * The WebSocket with reconnects: 0.5 s doubling to 10 s, with jitter.
 *
 * `onFrame(frame)` gets every frame the server sends, `onStatus(socket)` each
 * change of `status` ("connecting", "online", "offline"), and `unsent()` lists
 * the send frames to repeat on every connect.
 */
export class ChatSocket {
  constructor({ onFrame, onStatus, onEnded, unsent }) {
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.onEnded = onEnded;
    this.unsent = unsent;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.pingTimer = null;
    this.pongDeadline = null;
    this.retryAt = 0;
    this.closed = false;
    this.synced = false;
    this.status = "connecting";
    // Marks to send, per frame type: conversation id -> highest seq.
    this.marksDue = { delivered: new Map(), read: new Map() };
  }

  async open() {
    clearTimeout(this.timer);
    if (this.closed) return;
    this.setStatus("connecting");
    let query;
    try {
      query = `ticket=${encodeURIComponent(await wsTicket())}`;
    } catch (err) {
      if (err.status !== 503) return this.scheduleReconnect(); // 401 signed out inside api()
      query = `token=${encodeURIComponent(await freshToken())}`; // no tickets: the token will do
    }
    if (this.closed || this.ws) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
    this.ws = ws;
    this.synced = false;
    ws.onopen = () => {
      this.resendUnacked();
      this.flushMarks();
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
      this.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      if (event.code === SESSION_ENDED) return this.onEnded();
      if (!this.closed) this.scheduleReconnect();
    };
  }

  /** The server's "synced" frame: the pending messages are all in. */
  markSynced() {
    this.synced = true;
    this.attempt = 0; // a full handshake and sync: the next drop starts over at 0.5 s
    this.setStatus("online");
  }

  /** Unacked sends go again with the same id: the server answers a duplicate with the first ack. */
  resendUnacked() {
    for (const frame of this.unsent()) this.send(frame);
  }

  /**
   * The message is stored in this browser and shown in the list: tell the
   * server it arrived, so it is not pushed again. Batched per conversation.
   */
  confirmDelivered(conversationId, seq) {
    this.noteMark("delivered", conversationId, seq);
  }

  /** The user has seen the conversation up to `seq`. Batched per conversation. */
  confirmRead(conversationId, seq) {
    this.noteMark("read", conversationId, seq);
  }

  noteMark(type, conversationId, seq) {
    const due = this.marksDue[type];
    due.set(conversationId, Math.max(due.get(conversationId) ?? 0, seq));
    queueMicrotask(() => this.flushMarks());
  }

  flushMarks() {
    for (const [type, due] of Object.entries(this.marksDue)) {
      for (const [conversationId, seq] of due) {
        if (this.send({ type, conversation_id: conversationId, seq })) due.delete(conversationId);
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
    api("GET", "/users/me").catch(() => {
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
    this.onStatus(this);
  }
}
