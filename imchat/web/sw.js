// imchat's service worker, served at /sw.js so that it controls the whole
// origin. It only shows Web Push notifications and opens their
// conversation when one is clicked (docs/architecture.md, "Web Push"); it
// caches nothing.
//
// A push's data is the JSON the server sends (docs/api.md, "Web Push"):
// {conversation_id, msg_id, seq, sender, sender_name, title, body, group}.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function payloadOf(event) {
  if (!event.data) return {};
  try {
    return event.data.json();
  } catch {
    return { body: event.data.text() };
  }
}

self.addEventListener("push", (event) => {
  const data = payloadOf(event);
  const title = data.title || data.sender_name || "New message";
  event.waitUntil(
    self.registration.showNotification(title, {
      body: data.body || "",
      // One notification per conversation: a newer message replaces the older one.
      tag: data.conversation_id || "imchat",
      renotify: true,
      data: { conversation_id: data.conversation_id || null, msg_id: data.msg_id || null },
    }),
  );
});

/** Focus a tab of the client and have it open the conversation, or open one on it. */
async function openConversation(conversationId) {
  const url = new URL(conversationId ? `/#${encodeURIComponent(conversationId)}` : "/", self.location.origin);
  const tabs = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const tab = tabs.find((client) => new URL(client.url).origin === url.origin);
  if (!tab) {
    await self.clients.openWindow(url.href);
    return;
  }
  tab.postMessage({ type: "open-conversation", conversation_id: conversationId });
  try {
    await tab.focus();
  } catch {
    // Focus needs the click's user activation; the tab opened the conversation all the same.
  }
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const opening = openConversation(event.notification.data?.conversation_id ?? null);
  // A click is a trusted event that may wait; an event made by script cannot (waitUntil throws).
  if (event.isTrusted) event.waitUntil(opening);
});
