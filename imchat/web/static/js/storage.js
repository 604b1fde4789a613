// localStorage as a JSON cache. A failed read or write degrades to memory
// only: private modes, full quotas and hand-edited values must never stop the chat.

export const SESSION_KEY = "imchat.session";
export const PROFILES_KEY = "imchat.profiles";

/** Where one user's conversations are kept: per user, so a shared browser keeps them apart. */
export function stateKey(userId) {
  return `imchat.state.${userId}`;
}

export function readJson(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw ? JSON.parse(raw) : fallback;
  } catch {
    return fallback;
  }
}

export function writeJson(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch (err) {
    // A full quota must not stop the chat; history is then kept in memory only.
    console.warn("imchat: could not save", key, err);
  }
}

export function removeKey(key) {
  localStorage.removeItem(key);
}
