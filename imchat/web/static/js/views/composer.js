// The message box: grows with the text, counts down near the limit, Enter
// sends; above it, the message being answered (Reply on a message).

import { MAX_BODY, sendMessage } from "../chat.js";
import { $ } from "../dom.js";
import * as state from "../state.js";

export function wireComposer() {
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
  $("#reply-cancel").addEventListener("click", () => state.setReplyTo(null));
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    if (sendMessage(input.value)) {
      input.value = "";
      resize();
      state.changed({ scroll: "bottom" });
    }
  });
  resize();
}
