// The sidebar's header: who is signed in and the state of the connection.

import { $ } from "../dom.js";
import { paintAvatar } from "../format.js";

export function renderMe(me) {
  const myName = me.display_name || me.username;
  $("#me-name").textContent = myName;
  paintAvatar($("#me-avatar"), me.user_id, myName);
}

/** The connection badge of `socket` (null: offline), with the countdown to the next retry. */
export function renderConnection(socket) {
  const box = $("#conn-state");
  const status = socket?.status ?? "offline";
  box.dataset.state = status;
  const retry = $("#conn-retry");
  retry.hidden = status !== "offline";
  if (status === "online") $("#conn-text").textContent = "Online";
  else if (status === "connecting") $("#conn-text").textContent = "Connecting…";
  else {
    const seconds = Math.max(0, Math.ceil((socket.retryAt - Date.now()) / 1000));
    $("#conn-text").textContent = seconds ? `Offline · retry in ${seconds}s` : "Offline · retrying…";
  }
}
