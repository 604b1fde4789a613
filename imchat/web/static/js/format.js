// How people and times are shown: avatar colours and initials, list and day
// labels. Pure functions of their input (and the clock), no state.

import { h } from "./dom.js";

const AVATAR_COLORS = ["#4f46e5", "#0891b2", "#059669", "#d97706", "#db2777", "#7c3aed", "#2563eb", "#dc2626", "#0d9488", "#9333ea"];

export function avatarColor(seed) {
  let hash = 0;
  for (const ch of seed) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return AVATAR_COLORS[hash % AVATAR_COLORS.length];
}

function initials(name) {
  const words = name.replace(/[_@]/g, " ").trim().split(/\s+/).filter(Boolean);
  if (!words.length) return "?";
  const letters = words.length > 1 ? words[0][0] + words[1][0] : words[0].slice(0, 2);
  return letters.toUpperCase();
}

export function paintAvatar(node, seed, name, extraClass = "") {
  node.className = `avatar ${extraClass}`.trim();
  node.style.background = avatarColor(seed);
  node.textContent = initials(name);
}

export function avatar(seed, name, extraClass = "") {
  const node = h("span", { "aria-hidden": "true" });
  paintAvatar(node, seed, name, extraClass);
  return node;
}

export const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });
const shortDayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

export function startOfDay(ts) {
  const d = new Date(ts);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

export function dayLabel(ts) {
  const today = startOfDay(Date.now());
  const day = startOfDay(ts);
  if (day === today) return "Today";
  if (day === today - 86400000) return "Yesterday";
  return dayFormat.format(ts);
}

export function listTime(ts) {
  if (!ts) return "";
  const today = startOfDay(Date.now());
  if (ts >= today) return timeFormat.format(ts);
  if (ts >= today - 86400000) return "Yesterday";
  return shortDayFormat.format(ts);
}

/** "last seen today at 14:05", "last seen yesterday at …", "last seen Mar 3"; "offline" when never seen. */
export function lastSeenText(ts) {
  if (!ts) return "offline";
  const today = startOfDay(Date.now());
  if (ts >= today) return `last seen today at ${timeFormat.format(ts)}`;
  if (ts >= today - 86400000) return `last seen yesterday at ${timeFormat.format(ts)}`;
  return `last seen ${shortDayFormat.format(ts)}`;
}
