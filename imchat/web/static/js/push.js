// Web Push (docs/api.md, "Web Push"): the service worker at /sw.js shows a
// notification for a message that came while the user had no connection,
// and a click opens its conversation. After sign-in this module registers
// the worker and, once the user allows notifications (at once when they
// already did, else through the bell in the header), subscribes with the
// server's VAPID key and POSTs the subscription. Signing out removes it, so
// the next user of this browser does not get the last one's notifications.

import { api } from "./api.js";
import { $ } from "./dom.js";

let opener = () => {};

function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

/** What to do when a notification (or a `/#<id>` link) asks for a conversation. */
export function onOpenConversation(handler) {
  opener = handler;
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.addEventListener("message", (event) => {
    if (event.data?.type === "open-conversation" && event.data.conversation_id) opener(event.data.conversation_id);
  });
}

/** The conversation a `/#<conversation id>` URL names (a notification opened it), once. */
export function takeLinkedConversation() {
  const id = decodeURIComponent(location.hash.slice(1));
  if (!id) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return id;
}

function base64UrlToBytes(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0));
}

async function subscribe(registration) {
  const { key } = await api("GET", "/push/vapid-public-key");
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: base64UrlToBytes(key),
  });
  await api("POST", "/users/me/push-subscriptions", subscription.toJSON());
}

function renderBell() {
  $("#push-enable").hidden = !supported() || Notification.permission !== "default";
}

/** After sign-in: register the worker; subscribe when notifications are allowed. */
export async function startPush() {
  if (!supported()) return;
  renderBell();
  try {
    const registration = await navigator.serviceWorker.register("/sw.js");
    await navigator.serviceWorker.ready;
    if (Notification.permission === "granted") await subscribe(registration);
  } catch (err) {
    console.warn("notifications unavailable:", err);
  }
}

/** The bell: ask for permission (a click is the gesture browsers want), then subscribe. */
export function wirePush() {
  $("#push-enable").addEventListener("click", async () => {
    const permission = await Notification.requestPermission();
    renderBell();
    if (permission === "granted") await startPush();
  });
}

/** Before signing out, while the token still works: this browser stops notifying this user. */
export async function stopPush() {
  if (!supported()) return;
  try {
    const registration = await navigator.serviceWorker.getRegistration("/");
    const subscription = await registration?.pushManager.getSubscription();
    if (!subscription) return;
    await api("DELETE", "/users/me/push-subscriptions", { endpoint: subscription.endpoint }).catch(() => null);
    await subscription.unsubscribe();
  } catch (err) {
    console.warn("could not unsubscribe:", err);
  }
}
