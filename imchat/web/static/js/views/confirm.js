// "Delete for everyone?": the dialog that confirms a delete before its frame goes.

import { deleteMessage } from "../chat.js";
import { $ } from "../dom.js";
import { nameOf } from "../profiles.js";

let target = null; // {conv, seq}: what the open dialog deletes

export function wireConfirm() {
  $("#delete-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (target) deleteMessage(target.conv, target.seq);
    target = null;
    $("#delete-dialog").close();
  });
}

/** Ask before deleting `message` of `conv` for everyone. */
export function confirmDelete(conv, message) {
  target = { conv, seq: message.seq };
  const whose = nameOf(message.from) === "You" ? "your message" : `${nameOf(message.from)}'s message`;
  $("#delete-lead").textContent = `Delete ${whose} for everyone in this conversation? This can't be undone.`;
  $("#delete-dialog").showModal();
}
