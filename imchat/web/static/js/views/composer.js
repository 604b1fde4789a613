// The message box: grows with the text, counts down near the limit, Enter
// sends; says "typing" to the others while the user types. Above it, the
// message being answered (Reply on a message) or edited (Edit on one's own).

import { MAX_BODY, editMessage, sendMessage, userTyping } from "../chat.js";
import { $ } from "../dom.js";
import * as state from "../state.js";

let resize = () => {};
let trailing = null; // the typing frame due at the end of the 2 s window, while the user types
let editingShown = null; // the seq whose text the box holds for editing, or null

export function wireComposer() {
  const input = $("#composer-input");
  const count = $("#composer-count");
  resize = () => {
    input.style.height = "";
    // Grow with the text, up to a limit; an empty box keeps its one-row height.
    if (input.value) input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
    const left = MAX_BODY - input.value.length;
    count.hidden = left > 200;
    count.textContent = String(left);
    count.classList.toggle("over", left < 0);
    $("#send").disabled = !input.value.trim();
  };
  input.addEventListener("input", () => {
    resize();
    typed();
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter breaks the line; never while an IME is composing.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("#composer").requestSubmit();
    } else if (event.key === "Escape" && (state.editing() !== null || state.replyTo() !== null)) {
      state.setEditing(null);
      state.setReplyTo(null);
    }
  });
  $("#reply-cancel").addEventListener("click", () => state.setReplyTo(null));
  $("#edit-cancel").addEventListener("click", () => state.setEditing(null));
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const editing = state.editing();
    if (editing !== null ? editMessage(editing, input.value) : sendMessage(input.value)) {
      editingShown = null;
      input.value = "";
      resize();
      state.changed({ scroll: editing !== null ? undefined : "bottom" });
    }
  });
  resize();
}

/**
 * Tell the others the user is typing: now, or when the 2 s window ends if
 * they typed within it and the box still has text then (editing is not typing).
 */
function typed() {
  if (!$("#composer-input").value.trim() || state.editing() !== null) return;
  const wait = userTyping();
  if (wait && !trailing) {
    trailing = setTimeout(() => {
      trailing = null;
      typed();
    }, wait);
  }
}

/**
 * Editing ended without a save (cancelled, another conversation opened, the
 * message deleted meanwhile): the box lets go of the old text. Called on
 * every repaint of the conversation.
 */
export function syncComposer() {
  if (editingShown === null || state.editing() === editingShown) return;
  editingShown = null;
  $("#composer-input").value = "";
  resize();
}

/** Edit `message` (the user's own) in the box: Enter saves, Escape cancels. */
export function editInComposer(message) {
  const input = $("#composer-input");
  editingShown = message.seq;
  state.setEditing(message.seq);
  input.value = message.body ?? "";
  resize();
  input.focus();
}
