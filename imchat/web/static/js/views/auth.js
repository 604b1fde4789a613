// The sign-in / create-account screen. Checks what it can before asking the
// server, and places the server's field errors under their fields.

import { api, startSession } from "../api.js";
import { $, showError } from "../dom.js";

let authMode = "login";
let signedIn = async () => {};

/** Wire the screen; `onSignedIn()` runs once a login has started a session. */
export function wireAuth(onSignedIn) {
  signedIn = onSignedIn;
  $("#tab-login").addEventListener("click", () => setAuthMode("login"));
  $("#tab-register").addEventListener("click", () => setAuthMode("register"));
  $("#auth-form").addEventListener("submit", submitAuth);
}

/** Show the screen in sign-in mode, with `message` (why) above the form. */
export function showAuth(message) {
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

/** Show `text` under the field `name`; false when the form has no such field. */
function fieldError(name, text) {
  const box = document.querySelector(`#auth-form .field-error[data-for="${name}"]`);
  if (!box) return false;
  box.textContent = text;
  document.querySelector(`#auth-form input[name="${name}"]`)?.setAttribute("aria-invalid", "true");
  return true;
}

// The server's rules for new accounts (docs/api.md), checked here first so the
// form answers at once.
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
    startSession(token, username);
    form.reset();
    await signedIn();
  } catch (err) {
    showAuthFailure(err, username);
  } finally {
    button.disabled = false;
  }
}

/** Field errors go under their fields; the rest (or a 409) above the form. */
function showAuthFailure(err, username) {
  const details = err.details && typeof err.details === "object" ? Object.entries(err.details) : [];
  const placed = details.filter(([name, problems]) => fieldError(name, [].concat(problems).join(" ")));
  if (!placed.length || placed.length < details.length) {
    showError($("#auth-error"), err.status === 409 ? `The username “${username}” is taken. Try another one.` : err.message);
  }
}
