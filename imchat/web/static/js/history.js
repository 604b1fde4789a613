// A conversation's history from the server (GET /conversations/{id}/messages,
// docs/api.md): the newest page when it is opened, older pages as the user
// scrolls up. Pages merge into the state by seq, so history and live frames
// may overlap without doubling a message.

import { api, currentSession } from "./api.js";
import * as state from "./state.js";

const PAGE_SIZE = 50;
const inFlight = new Map(); // "conversation id:newest|older" -> its request, so one is asked for once

function pagePath(conv, query) {
  return `/conversations/${encodeURIComponent(conv.id)}/messages?limit=${PAGE_SIZE}${query}`;
}

/**
 * Run `load` unless the same request for `conv` is under way; resolves when it
 * is done. `load` resolves to the repaint options (null: nothing changed),
 * used once the request no longer counts as under way.
 */
function once(conv, which, load) {
  const key = `${conv.id}:${which}`;
  if (!inFlight.has(key)) {
    const request = load().catch(() => null).then((repaint) => {
      inFlight.delete(key);
      if (repaint) {
        state.save();
        state.changed(repaint);
      }
    });
    inFlight.set(key, request);
    state.changed(); // "Loading…" at the top
  }
  return inFlight.get(key);
}

function toMessages(page) {
  const me = currentSession().user_id;
  return page.messages.map((m) => state.messageFrom(m, me));
}

/**
 * Load `conv`'s newest page, unless this page already did. A conversation the
 * server does not know yet (a direct chat before its first message) is empty;
 * any other failure keeps what the cache has, and the next open tries again.
 */
export function loadNewest(conv) {
  if (state.historyLoaded(conv)) return Promise.resolve();
  return once(conv, "newest", async () => {
    let page;
    try {
      page = await api("GET", pagePath(conv, ""));
    } catch (err) {
      if (err.status !== 404) return null;
      page = { messages: [], has_more: false };
    }
    if (!state.isLoaded() || state.conversation(conv.id) !== conv) return null; // signed out meanwhile
    state.replaceNewest(conv, toMessages(page), page.has_more);
    return state.activeId() === conv.id ? { scroll: "bottom" } : {};
  });
}

/** Load the page below the oldest message loaded; the view keeps its scroll position. */
export function loadOlder(conv) {
  const oldest = state.oldestSeq(conv);
  if (!conv.hasOlder || !state.historyLoaded(conv) || oldest === null) return Promise.resolve();
  return once(conv, "older", async () => {
    const page = await api("GET", pagePath(conv, `&before_seq=${oldest}`)).catch(() => null);
    if (!page || !state.isLoaded() || state.conversation(conv.id) !== conv) return { scroll: "anchor" };
    for (const message of toMessages(page)) state.addMessage(conv, message);
    conv.hasOlder = page.has_more;
    return { scroll: "anchor" };
  });
}

/** Whether an older page of `conv` is on its way (the view says so at the top). */
export function loadingOlder(conv) {
  return inFlight.has(`${conv.id}:older`);
}

// Messages quoted by a reply but not loaded (above the pages loaded): fetched
// one by one, kept in memory apart from the conversation's messages (which
// stay a run of pages without gaps). "conversation id:seq" -> {message} (null
// while on its way or when it could not be fetched).
const quoted = new Map();

/** The history page that holds just message `seq`. */
function onePath(conv, seq) {
  return `/conversations/${encodeURIComponent(conv.id)}/messages?after_seq=${seq - 1}&limit=1`;
}

/** The message `seq` of `conv` for a quote: loaded, fetched before, or null (and asked for). */
export function quotedMessage(conv, seq) {
  const loaded = state.messageAt(conv, seq);
  if (loaded) return loaded;
  const key = `${conv.id}:${seq}`;
  if (!quoted.has(key)) {
    quoted.set(key, { message: null });
    api("GET", onePath(conv, seq))
      .then((page) => {
        const found = toMessages(page).find((m) => m.seq === seq);
        if (!found) return;
        quoted.set(key, { message: found });
        state.changed();
      })
      .catch(() => {
        // The quote stays unshown until the next reload: no request per repaint.
      });
  }
  return quoted.get(key).message;
}

/**
 * Read message `seq` of `conv` again from the server (a change of it was
 * refused: it may have been deleted or edited while this page was away).
 */
export async function refreshMessage(conv, seq) {
  const page = await api("GET", onePath(conv, seq)).catch(() => null);
  const fresh = page && toMessages(page).find((m) => m.seq === seq);
  const known = fresh && state.isLoaded() && state.messageAt(conv, seq);
  if (!known) return;
  Object.assign(known, { body: fresh.body, deleted: fresh.deleted, editedAt: fresh.editedAt ?? null, reactions: fresh.reactions ?? {} });
  state.save();
  state.changed();
}

/** An `update` of message `seq`: a quote of it shows its new state too. */
export function updateQuoted(conv, seq, fields) {
  const entry = quoted.get(`${conv.id}:${seq}`);
  if (entry?.message) Object.assign(entry.message, fields);
}
