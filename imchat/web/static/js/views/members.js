// The members dialog of a group: who is in it with their roles, adding
// someone (owners and admins), leaving.

import { currentSession } from "../api.js";
import { addMember, groupMembers, leaveGroup } from "../chat.js";
import { $, h, showError } from "../dom.js";
import { avatar } from "../format.js";
import { conversationTitle, fullNameOf, profileOf } from "../profiles.js";
import * as state from "../state.js";

export function wireMembers() {
  $("#members-btn").addEventListener("click", openMembers);
  $("#members-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitMember();
  });
  $("#leave-group").addEventListener("click", confirmLeave);
}

async function openMembers() {
  const conv = state.activeConversation();
  if (!conv || conv.kind !== "group") return;
  showError($("#members-error"), "");
  $("#member-list").replaceChildren(h("li", {}, "Loading…"));
  $("#members-dialog-title").textContent = conversationTitle(conv);
  $("#members-dialog").showModal();
  await refreshMembers(conv);
}

async function refreshMembers(conv) {
  try {
    const members = await groupMembers(conv);
    const me = currentSession().user_id;
    const mine = members.find((m) => m.user_id === me);
    // Plain members cannot add anyone: the server would refuse.
    $("#add-member").hidden = !mine || mine.role === "member";
    $("#member-list").replaceChildren(...members.map((m) => memberItem(m, me)));
    state.changed();
  } catch (err) {
    $("#member-list").replaceChildren();
    showError($("#members-error"), err.message);
  }
}

function memberItem(member, me) {
  const profile = profileOf(member.user_id);
  const name = member.user_id === me ? "You" : fullNameOf(member.user_id);
  return h(
    "li",
    {},
    avatar(member.user_id, fullNameOf(member.user_id), "small"),
    h("div", { class: "who" }, name, profile ? h("small", {}, `@${profile.username}`) : null),
    h("span", { class: `role ${member.role}` }, member.role),
  );
}

async function submitMember() {
  const conv = state.activeConversation();
  showError($("#members-error"), "");
  $("#member-submit").disabled = true;
  try {
    await addMember(conv, $("#member-username").value);
    $("#member-username").value = "";
    await refreshMembers(conv);
  } catch (err) {
    showError($("#members-error"), err.status === 409 ? "They're already in the group." : err.message);
  } finally {
    $("#member-submit").disabled = false;
  }
}

async function confirmLeave() {
  const conv = state.activeConversation();
  if (!conv || !confirm(`Leave “${conversationTitle(conv)}”?`)) return;
  try {
    await leaveGroup(conv);
    $("#members-dialog").close();
    state.changed();
  } catch (err) {
    showError($("#members-error"), err.message);
  }
}
