// The actions on one message, beside its bubble: Reply, React (a small fixed
// picker), Edit and Delete (own messages within the edit window; any message
// for a group's owner or admins); and the reactions under a bubble, with
// their counts, each a button that toggles the user's own.

import { toggleReaction } from "../chat.js";
import { REACTIONS, canDelete, canEdit, reacted } from "../changes.js";
import { ICONS, h, svgIcon } from "../dom.js";
import { nameOf } from "../profiles.js";
import * as state from "../state.js";
import { editInComposer } from "./composer.js";
import { confirmDelete } from "./confirm.js";

let picker = null; // {convId, seq}: the message whose reaction picker is open

/** A click elsewhere or Escape closes the reaction picker. */
export function wireActions() {
  const close = () => {
    if (picker === null) return;
    picker = null;
    state.changed();
  };
  document.addEventListener("click", (event) => {
    // Any message's buttons handle their own clicks (the one clicked may be repainted already).
    if (!event.target.closest?.(".msg-actions")) close();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") close();
  });
}

function pickerOpen(conv, message) {
  return picker !== null && picker.convId === conv.id && picker.seq === message.seq;
}

function togglePicker(conv, message) {
  picker = pickerOpen(conv, message) ? null : { convId: conv.id, seq: message.seq };
  state.changed();
}

function button(label, icon, onclick, extra = {}) {
  return h("button", { type: "button", class: "msg-action", title: label, "aria-label": label, onclick, ...extra }, svgIcon(icon));
}

/** The buttons beside `message` (none for a deleted or unsent one). */
export function messageActions(conv, message) {
  if (message.seq === undefined || message.deleted || conv.left) return null;
  const open = pickerOpen(conv, message);
  return h(
    "div",
    { class: `msg-actions${open ? " open" : ""}` },
    button("Reply", ICONS.reply, () => state.setReplyTo(message.seq)),
    button("React", ICONS.smile, () => togglePicker(conv, message), { "aria-expanded": String(open) }),
    canEdit(message) ? button("Edit", ICONS.pencil, () => editInComposer(message)) : null,
    canDelete(conv, message) ? button("Delete", ICONS.trash, () => confirmDelete(conv, message)) : null,
    open ? pickerNode(conv, message) : null,
  );
}

function pickerNode(conv, message) {
  return h(
    "div",
    { class: "reaction-picker", role: "group", "aria-label": "Pick a reaction", dataset: { testid: "reaction-picker" } },
    REACTIONS.map((emoji) =>
      h(
        "button",
        {
          type: "button",
          class: `pick${reacted(message, emoji) ? " mine" : ""}`,
          "aria-label": `React with ${emoji}`,
          "aria-pressed": String(reacted(message, emoji)),
          onclick: () => {
            picker = null;
            toggleReaction(conv, message, emoji);
            state.changed();
          },
        },
        emoji,
      ),
    ),
  );
}

/** The reactions under a bubble: emoji and count; the user's own ones pressed. */
export function reactionsNode(conv, message) {
  const entries = Object.entries(message.reactions ?? {}).filter(([, users]) => users.length);
  if (!entries.length || message.deleted) return null;
  return h(
    "div",
    { class: "reactions" },
    entries.map(([emoji, users]) => {
      const mine = reacted(message, emoji);
      return h(
        "button",
        {
          type: "button",
          class: `reaction${mine ? " mine" : ""}`,
          "aria-pressed": String(mine),
          "aria-label": `${emoji} ${users.length}: ${users.map(nameOf).join(", ")}`,
          title: users.map(nameOf).join(", "),
          disabled: conv.left,
          dataset: { testid: "reaction", emoji },
          onclick: () => toggleReaction(conv, message, emoji),
        },
        emoji,
        h("span", { class: "count" }, String(users.length)),
      );
    }),
  );
}
