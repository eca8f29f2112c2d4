// Small functions with no state: ids, time formatting, names and colours.

export function randomId(bytes = 12) {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

function hash(text) {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

/** A stable hue (0..359) for a name, for avatars. */
export function hueOf(name) {
  return hash(String(name || '')) % 360;
}

export function initialOf(name) {
  const s = String(name || '?').replace(/[^A-Za-z0-9]/g, '');
  return (s[0] || '?').toUpperCase();
}

export function parseTime(text) {
  const t = Date.parse(text || '');
  return Number.isNaN(t) ? 0 : t;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const shortDayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

export function clockTime(ms) {
  return ms ? timeFmt.format(ms) : '';
}

export function fullTime(ms) {
  return ms ? fullFmt.format(ms) : '';
}

function startOfDay(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

export function dayKey(ms) {
  return startOfDay(ms);
}

export function dayLabel(ms, now = Date.now()) {
  const diff = Math.round((startOfDay(now) - startOfDay(ms)) / 86400000);
  if (diff === 0) return 'Today';
  if (diff === 1) return 'Yesterday';
  return dayFmt.format(ms);
}

/** "14:05" today, "Mon 3" before: for the channel list. */
export function shortWhen(ms, now = Date.now()) {
  if (!ms) return '';
  return startOfDay(ms) === startOfDay(now) ? timeFmt.format(ms) : shortDayFmt.format(ms);
}

export function lastSeenText(ms, now = Date.now()) {
  if (!ms) return 'offline';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return 'last seen just now';
  const m = Math.round(s / 60);
  if (m < 60) return `last seen ${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `last seen ${h} h ago`;
  return `last seen ${shortDayFmt.format(ms)}`;
}

/**
 * A direct channel made by this client is titled "alice & bob" (the two names
 * sorted). Shown to either of them as the other's name.
 */
export function directTitle(a, b) {
  return [a, b].sort((x, y) => x.localeCompare(y)).join(' & ');
}

export function peerOf(channel, me) {
  if (!channel || channel.headCount > 2) return null;
  const parts = String(channel.title || '').split(' & ');
  if (parts.length !== 2) return null;
  const lower = me.toLowerCase();
  if (parts[0].toLowerCase() === lower) return parts[1];
  if (parts[1].toLowerCase() === lower) return parts[0];
  return null;
}

export function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

/** Copy text to the clipboard; false when the browser refuses. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall back below */
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.className = 'offscreen';
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
