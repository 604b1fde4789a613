// The REST client (docs/api.md) and the signed-in session whose token it sends.
//
// The session is kept here, beside the only code that sends its token, so a
// 401 on the current token can end it without a view in between: whoever
// wires the app says what signing out means with onSessionExpired().

import { SESSION_KEY, readJson, removeKey, writeJson } from "./storage.js";

const API = "/api/v1";
// Access tokens are short-lived (15 min): renewed silently this long before they expire.
const REFRESH_MARGIN_MS = 60000;

let session = readJson(SESSION_KEY, null); // {token, refresh_token, user_id, username, expires_at}
let sessionExpired = () => {};
let refreshing = null; // the refresh under way: one at a time, whoever asks

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** The signed-in user's session, or null. */
export function currentSession() {
  return session;
}

/** Whether a session read at start-up can go on: its refresh token renews the access token. */
export function sessionResumable() {
  return Boolean(session?.refresh_token);
}

/** Keep the tokens of a login or a refresh (POST /auth/login's answer) as the session. */
export function startSession(token, username) {
  session = {
    token: token.access_token,
    refresh_token: token.refresh_token,
    user_id: token.user_id,
    username,
    expires_at: Date.now() + token.expires_in * 1000,
  };
  writeJson(SESSION_KEY, session);
}

export function endSession() {
  session = null;
  refreshing = null;
  removeKey(SESSION_KEY);
}

/** End the session of `token` on the server (its sockets everywhere close with 4401). */
export function logout(token) {
  return api("POST", "/auth/logout", undefined, token).catch(() => {});
}

/** The session's access token, renewed first when it is about to expire. */
export async function freshToken() {
  if (session && session.expires_at - Date.now() < REFRESH_MARGIN_MS) await refreshSession();
  return session?.token;
}

/** POST /auth/refresh once for every caller waiting; a refused refresh signs out. */
function refreshSession() {
  if (refreshing) return refreshing;
  const { refresh_token: refreshToken, username } = session;
  refreshing = (async () => {
    try {
      const response = await fetch(`${API}/auth/refresh`, {
        method: "POST",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: refreshToken }),
      });
      if (response.ok) {
        // Another tab may have signed out meanwhile: only the session refreshed is renewed.
        if (session?.refresh_token === refreshToken) startSession(await response.json(), username);
      } else if (response.status === 401 && session?.refresh_token === refreshToken) {
        sessionExpired("Your session has ended. Please sign in again.");
      }
    } catch {
      // Offline: the old token is tried, and the next call refreshes again.
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** A one-use ticket for the WebSocket URL (no token in URLs: proxies log them). */
export async function wsTicket() {
  const { ticket } = await api("POST", "/auth/ws-ticket");
  return ticket;
}

/** The server closed a socket with 4401: the session ended (logout elsewhere, password change). */
export function sessionEnded() {
  if (session) sessionExpired("You were signed out. Please sign in again.");
}

/** What to do when the server refuses the current token (sign out, in practice). */
export function onSessionExpired(handler) {
  sessionExpired = handler;
}

/** Call the HTTP API; resolves to the JSON body, rejects with an ApiError. */
export async function api(method, path, body, token) {
  if (token === undefined) token = await freshToken(); // null: send none (a login)
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
  // Only the current token ends the session: a stale socket's check must not sign a newer login out.
  if (response.status === 401 && token && session && token === session.token) {
    sessionExpired("Your session has ended. Please sign in again.");
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
