// Names for ids: users' profiles and groups' titles, fetched from the API
// once each and kept in state.js. Lookups never wait: they answer with what
// is known now and repaint (state.changed) when the answer arrives.

import { ApiError, api, currentSession } from "./api.js";
import * as state from "./state.js";

const profileRequests = new Map(); // user id -> its pending GET, so one is asked for once
const groupRequests = new Map(); // group id -> its pending GET

/** The cached profile of a user, fetched once; re-renders when it arrives. */
export function profileOf(userId) {
  const known = state.knownProfile(userId);
  if (known) return known;
  if (!profileRequests.has(userId) && currentSession()) {
    const request = api("GET", `/users/${encodeURIComponent(userId)}`)
      .then((profile) => {
        state.rememberProfile(profile);
        state.changed();
      })
      .catch(() => {
        // Unknown users stay shown by a short id; asked again after a reload.
      });
    profileRequests.set(userId, request);
  }
  return null;
}

/** Settles once `userId`'s profile is known (or could not be fetched). */
export function profileArrived(userId) {
  return profileRequests.get(userId) ?? (profileOf(userId), profileRequests.get(userId));
}

/** How a user is named in lists and notes: "You" for the signed-in user. */
export function nameOf(userId) {
  const session = currentSession();
  if (session && userId === session.user_id) return "You";
  return fullNameOf(userId);
}

export function fullNameOf(userId) {
  const profile = profileOf(userId);
  return profile ? profile.display_name || profile.username : "…";
}

/** The profile of `raw` (a username, @ allowed); a 404 says so in words. */
export async function lookupUser(raw) {
  const username = raw.trim().replace(/^@/, "").toLowerCase();
  if (!username) throw new ApiError(400, "bad_request", "Enter a username.");
  try {
    const profile = await api("GET", `/users/by-username/${encodeURIComponent(username)}`);
    state.rememberProfile(profile);
    return profile;
  } catch (err) {
    if (err.status === 404) throw new ApiError(404, "not_found", `No one is called “${username}”. Check the spelling.`);
    throw err;
  }
}

/** Fetch a group's name and size into `conv`, unless already under way. */
export function fetchGroupTitle(conv) {
  if (groupRequests.has(conv.group)) return;
  const request = api("GET", `/groups/${encodeURIComponent(conv.group)}`)
    .then((group) => {
      conv.title = group.name;
      conv.memberCount = group.member_count;
      state.save();
      state.changed();
    })
    .catch(() => {
      groupRequests.delete(conv.group); // retried on the next message
    });
  groupRequests.set(conv.group, request);
}

export function conversationTitle(conv) {
  if (conv.kind === "group") return conv.title || "Group";
  return fullNameOf(conv.peer);
}
