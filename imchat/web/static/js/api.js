// The REST client (docs/api.md) and the signed-in session whose token it sends.
//
// The session is kept here, beside the only code that sends its token, so a
// 401 on the current token can end it without a view in between: whoever
// wires the app says what signing out means with onSessionExpired().

import { SESSION_KEY, readJson, removeKey, writeJson } from "./storage.js";

const API = "/api/v1";
// Sessions closer than this to their end are not resumed: the first request would fail.
const RESUME_MARGIN_MS = 60000;

let session = readJson(SESSION_KEY, null); // {token, user_id, username, expires_at}
let sessionExpired = () => {};

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

/** Whether a session read at start-up still has time to run. */
export function sessionResumable() {
  return Boolean(session) && session.expires_at > Date.now() + RESUME_MARGIN_MS;
}

/** Keep the token of a login (POST /auth/login's answer) as the session. */
export function startSession(token, username) {
  session = { token: token.access_token, user_id: token.user_id, username, expires_at: Date.now() + token.expires_in * 1000 };
  writeJson(SESSION_KEY, session);
}

export function endSession() {
  session = null;
  removeKey(SESSION_KEY);
}

/** What to do when the server refuses the current token (sign out, in practice). */
export function onSessionExpired(handler) {
  sessionExpired = handler;
}

/** Call the HTTP API; resolves to the JSON body, rejects with an ApiError. */
export async function api(method, path, body, token = session?.token) {
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
    sessionExpired("Your session has expired. Please sign in again.");
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
