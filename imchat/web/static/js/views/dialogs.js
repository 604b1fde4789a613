// The "New chat" and "New group" dialogs, and what every dialog shares.

import { createGroup, startDirectChat } from "../chat.js";
import { $, showError } from "../dom.js";
import { openConversation } from "./conversation.js";
import { wireMembers } from "./members.js";

export function wireDialogs() {
  document.querySelectorAll("dialog [data-close]").forEach((button) => {
    button.addEventListener("click", () => button.closest("dialog").close());
  });
  wireFormDialog({
    opener: "#new-chat",
    dialog: "#chat-dialog",
    form: "#chat-form",
    errorBox: "#chat-error",
    submit: "#chat-submit",
    action: async () => openConversation(await startDirectChat($("#chat-username").value)),
  });
  wireFormDialog({
    opener: "#new-group",
    dialog: "#group-dialog",
    form: "#group-form",
    errorBox: "#group-error",
    submit: "#group-submit",
    action: async () => openConversation(await createGroup($("#group-name").value, $("#group-members").value)),
  });
  wireMembers();
}

/** A dialog opened blank by `opener` whose form runs `action` on submit. */
function wireFormDialog({ opener, dialog, form, errorBox, submit, action }) {
  $(opener).addEventListener("click", () => {
    $(form).reset();
    showError($(errorBox), "");
    $(dialog).showModal();
  });
  $(form).addEventListener("submit", (event) => {
    event.preventDefault();
    runInDialog(dialog, errorBox, submit, action);
  });
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
