// The client's state and everything it says to chatd: one reactive store that
// the views read, and the actions they call.

import { reactive } from 'vue';
import * as api from './api.js';
import { ChatSocket, ProtocolError } from './socket.js';
import { describe, describeHttp } from './errors.js';
import { randomId, parseTime, peerOf, utf8Length } from './util.js';

const SESSION_KEY = 'chatd.session';
const OUTBOX_KEY = 'chatd.outbox.';
const PAGE = 50;
const SYNC_PAGE = 100;
const SYNC_MAX_PAGES = 10;
const POLL_MS = 5000;
const POLL_HIDDEN_MS = 30000;
const TYPING_SHOW_MS = 4500;
const TYPING_SEND_MS = 2000;
export const MAX_CONTENT_BYTES = 4096;

export const state = reactive({
  phase: 'boot', // boot | login | app
  me: '',
  inviteCode: '',
  notice: '', // shown on the login page (why one is back there)
  loggingOut: false,
  conn: 'connecting', // connecting | online | offline
  retryAt: 0,
  everOnline: false,
  // What the server speaks. v11: it sent a version-1.1 field. Each feature is
  // null (not known yet), true, or false (the server said "unknown message type").
  caps: {
    v11: false,
    sync: null,
    presence: null,
    markers: null,
    typing: null,
    edit: null,
    del: null,
    react: null,
  },
  listed: { channels: false, connections: false }, // each list arrived once
  connections: {}, // username -> {username, status, invitedBy}
  presence: {}, // username -> {online, lastSeen (ms)}
  channels: {}, // id -> channel (see newChannel)
  activeId: null,
  visible: typeof document === 'undefined' || document.visibilityState === 'visible',
  toasts: [],
  now: Date.now(),
});

let sock = null;
let openGen = 0;
let enterGen = 0;
let enteredId = null; // the channel this WebSocket is entered in
let handshakeFails = 0;
let loggingOut = false;
let pollTimer = null;
let tickTimer = null;
let pollCount = 0;
let lastTypingSent = 0;
let toastId = 1;

// ---- small pieces ----------------------------------------------------------

export function channelIdOf(v) {
  if (v && typeof v === 'object') return Number(v.id);
  return Number(v);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function toast(text, kind = 'error', ms = kind === 'error' ? 7000 : 4000) {
  const id = toastId++;
  state.toasts.push({ id, text, kind });
  if (state.toasts.length > 4) state.toasts.shift();
  if (ms) setTimeout(() => dismissToast(id), ms);
  return id;
}

export function dismissToast(id) {
  const i = state.toasts.findIndex((t) => t.id === id);
  if (i >= 0) state.toasts.splice(i, 1);
}

function fail(err, type) {
  if (err instanceof ProtocolError && err.code === 'DISCONNECTED' && state.conn !== 'online') {
    toast("You're offline. Try again once the connection is back.");
  } else {
    toast(describe(err, type));
  }
}

function req(type, body) {
  if (!sock) return Promise.reject(new ProtocolError('DISCONNECTED', 'not connected', type));
  return sock.request(type, body);
}

function noteVersion(v) {
  if (v != null) state.caps.v11 = true;
}

function newChannel(id, title) {
  return {
    id,
    title: title || '',
    headCount: 0,
    lastMessageSequence: 0,
    unreadCount: 0,
    version: null,
    lastRead: 0,
    activity: 0,
    preview: null, // {username, content, createdAt, deleted}
    previewSeq: -1,
    inviteCode: '',
    msgs: new Map(), // sequence -> message, a contiguous window up to the newest
    loaded: false,
    hasOlder: false,
    loadingOlder: false,
    // (1.1) a version up to which everything is known: from a fetch (nothing
    // older can change after it) or a SYNC answer, never from a live push,
    // which nodes may deliver out of version order.
    level: null,
    syncing: null, // the SYNC under way
    pending: [], // own messages not acknowledged yet
    markers: {}, // username -> read sequence (1.1)
    typing: {}, // username -> shown until (ms)
    firstUnread: 0, // first unread sequence when the channel was opened
    sending: false,
  };
}

function channel(id, title) {
  const cid = channelIdOf(id);
  if (!cid) return null;
  if (!state.channels[cid]) state.channels[cid] = newChannel(cid, title);
  else if (title && !state.channels[cid].title) state.channels[cid].title = title;
  return state.channels[cid];
}

export function activeChannel() {
  return state.activeId ? state.channels[state.activeId] || null : null;
}

function toMessage(m) {
  return {
    seq: m.messageSequence,
    username: m.username,
    content: m.deleted ? '' : m.content || '',
    createdAt: parseTime(m.createdAt),
    version: m.version ?? null,
    editedAt: m.editedAt ? parseTime(m.editedAt) : 0,
    deleted: !!m.deleted,
    replyTo: m.replyTo ?? null,
    reactions: Array.isArray(m.reactions) ? m.reactions.map((r) => ({ ...r })) : [],
  };
}

function bounds(chan) {
  let lo = Infinity;
  let hi = 0;
  for (const seq of chan.msgs.keys()) {
    if (seq < lo) lo = seq;
    if (seq > hi) hi = seq;
  }
  return { lo: lo === Infinity ? 0 : lo, hi };
}

function bumpLevel(chan, v) {
  if (v == null) return;
  noteVersion(v);
  if (chan.level == null || v > chan.level) chan.level = v;
}

/** Put a message into the window; a version older than the one held is ignored. */
function upsert(chan, m) {
  const have = chan.msgs.get(m.seq);
  if (have && have.version != null && m.version != null && m.version < have.version) return;
  chan.msgs.set(m.seq, m);
  if (m.seq >= chan.lastMessageSequence) {
    chan.lastMessageSequence = m.seq;
    setPreview(chan, m);
  }
}

function setPreview(chan, m) {
  chan.preview = { username: m.username, content: m.content, createdAt: m.createdAt, deleted: m.deleted };
  chan.previewSeq = m.seq;
  if (m.createdAt > chan.activity) chan.activity = m.createdAt;
}

function isViewing(chan) {
  return state.phase === 'app' && state.visible && state.activeId === chan.id && enteredId === chan.id;
}

// ---- session --------------------------------------------------------------

let sessionTtl = 86400;

function saveSession(username, expiresIn) {
  if (Number(expiresIn) > 0) sessionTtl = Number(expiresIn);
  try {
    localStorage.setItem(
      SESSION_KEY,
      JSON.stringify({ username, ttl: sessionTtl, expiresAt: Date.now() + sessionTtl * 1000 }),
    );
  } catch {
    /* private mode: the session lasts as long as the page */
  }
}

function forgetSession() {
  try {
    localStorage.removeItem(SESSION_KEY);
    localStorage.removeItem(OUTBOX_KEY + state.me);
  } catch {
    /* nothing kept */
  }
}

function savedSession() {
  try {
    const saved = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    if (saved && saved.username && saved.expiresAt > Date.now()) return saved;
  } catch {
    /* unreadable: none */
  }
  return null;
}

// What waits to be sent survives a reload: it is sent again with the same
// clientMessageId, which the server stores once.
function saveOutbox() {
  if (!state.me) return;
  const items = [];
  for (const c of Object.values(state.channels)) {
    for (const p of c.pending) {
      items.push({ channelId: c.id, cid: p.cid, content: p.content, replyTo: p.replyTo, at: p.at });
    }
  }
  try {
    if (items.length) localStorage.setItem(OUTBOX_KEY + state.me, JSON.stringify(items));
    else localStorage.removeItem(OUTBOX_KEY + state.me);
  } catch {
    /* kept in memory only */
  }
}

function restoreOutbox() {
  let items = [];
  try {
    items = JSON.parse(localStorage.getItem(OUTBOX_KEY + state.me) || '[]');
  } catch {
    items = [];
  }
  for (const it of Array.isArray(items) ? items : []) {
    const c = channel(it.channelId);
    if (!c || !it.cid || typeof it.content !== 'string') continue;
    if (c.pending.some((p) => p.cid === it.cid)) continue;
    c.pending.push({ cid: it.cid, content: it.content, replyTo: it.replyTo || null, status: 'queued', error: '', at: it.at || Date.now() });
  }
}

export function boot() {
  document.addEventListener('visibilitychange', () => {
    state.visible = document.visibilityState === 'visible';
    if (state.visible) {
      const c = activeChannel();
      if (c) markRead(c);
      if (sock && !sock.open) sock.retryNow();
    }
  });
  // Logged in from another tab of this browser: the same session, here too.
  window.addEventListener('storage', (e) => {
    if (e.key !== SESSION_KEY || state.phase !== 'login') return;
    const saved = savedSession();
    if (saved) startSession(saved.username);
  });
  const saved = savedSession();
  if (saved) {
    if (saved.ttl) sessionTtl = saved.ttl;
    startSession(saved.username);
  } else state.phase = 'login';
}

export async function register(username, password) {
  try {
    await api.register(username, password);
  } catch (e) {
    throw new Error(describeHttp(e, 'register'));
  }
  await login(username, password);
}

export async function login(username, password) {
  let r;
  try {
    r = await api.login(username, password);
  } catch (e) {
    throw new Error(describeHttp(e, 'login'));
  }
  saveSession(r.username || username, r.expiresIn);
  state.notice = '';
  startSession(r.username || username);
}

export async function logout() {
  if (state.loggingOut) return;
  loggingOut = true;
  state.loggingOut = true;
  let notice = '';
  // A balancer may answer 502 for a while after the nodes restarted: try again.
  for (let attempt = 0; ; attempt++) {
    try {
      await api.logout();
      break;
    } catch (e) {
      if (e.status === 401) break; // already over
      const passing = e.status === 0 || e.status >= 500;
      if (passing && attempt < 3) {
        await sleep(700 * (attempt + 1));
        continue;
      }
      if (passing) {
        notice = 'Logged out on this device. The server could not be reached; the session ends by itself.';
        break;
      }
      loggingOut = false;
      state.loggingOut = false;
      toast(describeHttp(e, 'logout'));
      return;
    }
  }
  endSession(notice);
  loggingOut = false;
  state.loggingOut = false;
}

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/v1/message`;
}

function startSession(username) {
  if (sock) sock.stop();
  resetData();
  state.me = username;
  state.phase = 'app';
  state.conn = 'connecting';
  handshakeFails = 0;
  restoreOutbox();
  sock = new ChatSocket(wsUrl(), {
    onOpen,
    onPush,
    onDown,
    onEnded: () => {
      if (!loggingOut) endSession('Your session has ended. Please log in again.');
    },
    onUnreachable,
    onStrayError: (e) => {
      if (!e.unsupported) toast(describe(e));
    },
  });
  sock.start();
  clearInterval(tickTimer);
  tickTimer = setInterval(tick, 1000);
  schedulePoll();
}

function resetData() {
  state.inviteCode = '';
  state.connections = {};
  state.presence = {};
  state.channels = {};
  state.activeId = null;
  state.toasts = [];
  state.everOnline = false;
  state.listed = { channels: false, connections: false };
  enteredId = null;
  for (const k of Object.keys(state.caps)) state.caps[k] = k === 'v11' ? false : null;
}

function endSession(notice) {
  if (sock) sock.stop();
  sock = null;
  clearInterval(tickTimer);
  clearTimeout(pollTimer);
  forgetSession();
  resetData();
  state.me = '';
  state.notice = notice;
  state.phase = 'login';
}

async function onUnreachable() {
  // The handshake failed: the server is down, or it refused this session.
  if (await api.healthy()) {
    // Refused while the server answers: the session is gone (or, rarely, a
    // balancer sent the handshake to a node that is down: hence a few tries).
    if (++handshakeFails >= (state.everOnline ? 3 : 2)) {
      endSession(
        state.everOnline
          ? 'Your session has ended. Please log in again.'
          : 'Please log in to continue.',
      );
      return false;
    }
  } else {
    handshakeFails = 0;
  }
  return true;
}

function onDown({ retryAt }) {
  state.conn = 'offline';
  state.retryAt = retryAt;
  enteredId = null;
  for (const c of Object.values(state.channels)) {
    c.typing = {};
    for (const p of c.pending) if (p.status === 'sending') p.status = 'queued';
  }
}

export function reconnectNow() {
  if (sock) sock.retryNow();
}

async function onOpen() {
  handshakeFails = 0;
  state.conn = 'online';
  state.everOnline = true;
  saveSession(state.me); // the socket's KEEP_ALIVE keeps the session going
  const gen = ++openGen;
  loadInviteCode();
  refreshConnections();
  refreshPresence();
  await refreshChannels();
  if (gen !== openGen) return;
  const active = activeChannel();
  if (active) await enter(active, true);
  const alive = () => gen === openGen && sock && sock.open;
  for (const c of Object.values(state.channels)) {
    if (c === active) continue;
    flushOutbox(c);
    // Bring the other channels held in memory level too (1.1).
    if (c.loaded && c.level != null && state.caps.sync === true && alive()) await syncChannel(c, alive);
  }
}

function tick() {
  state.now = Date.now();
  for (const c of Object.values(state.channels)) {
    for (const [u, until] of Object.entries(c.typing)) if (until < state.now) delete c.typing[u];
  }
}

function schedulePoll() {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(
    async () => {
      if (sock && sock.open) {
        pollCount++;
        // Channels the socket is not entered in get no NOTIFY_MESSAGE: the
        // list brings their unread counts and last activity.
        await refreshChannels().catch(() => {});
        if (pollCount % 3 === 0) refreshConnections();
        if (pollCount % 12 === 0) saveSession(state.me);
        if (pollCount % 6 === 0 && state.caps.presence !== true) refreshPresence();
      }
      if (state.phase === 'app') schedulePoll();
    },
    state.visible ? POLL_MS : POLL_HIDDEN_MS,
  );
}

// ---- the user and friends ---------------------------------------------------

async function loadInviteCode() {
  try {
    const r = await req('FETCH_USER_INVITECODE_REQUEST', {});
    state.inviteCode = r.inviteCode || '';
  } catch (e) {
    if (e.code !== 'DISCONNECTED') fail(e, 'FETCH_USER_INVITECODE_REQUEST');
  }
}

export async function refreshConnections() {
  try {
    const r = await req('FETCH_CONNECTIONS_REQUEST', {});
    const next = {};
    for (const c of r.connections || []) next[c.username] = { ...c };
    state.connections = next;
    state.listed.connections = true;
  } catch (e) {
    if (e.code !== 'DISCONNECTED') fail(e, 'FETCH_CONNECTIONS_REQUEST');
  }
}

async function refreshPresence() {
  if (state.caps.presence === false) return;
  try {
    const r = await req('FETCH_PRESENCE_REQUEST', {});
    state.caps.presence = true;
    state.caps.v11 = true;
    const next = {};
    for (const f of r.friends || [])
      next[f.username] = { online: !!f.online, lastSeen: parseTime(f.lastSeen) };
    state.presence = next;
  } catch (e) {
    if (e.unsupported) state.caps.presence = false;
    else if (e.code !== 'DISCONNECTED') fail(e, 'FETCH_PRESENCE_REQUEST');
  }
}

export async function invite(code) {
  const userInviteCode = code.trim().toUpperCase();
  if (!userInviteCode) throw new Error("Enter your friend's invite code.");
  if (userInviteCode === state.inviteCode)
    throw new Error("That's your own invite code. Ask your friend for theirs.");
  try {
    await req('INVITE_REQUEST', { userInviteCode });
  } catch (e) {
    throw new Error(describe(e, 'INVITE_REQUEST'));
  }
  await refreshConnections();
}

async function relation(type, username) {
  try {
    await req(type, { username });
  } catch (e) {
    fail(e, type);
  }
  await refreshConnections();
  if (type === 'ACCEPT_REQUEST') refreshPresence();
}

export const accept = (u) => relation('ACCEPT_REQUEST', u);
export const reject = (u) => relation('REJECT_REQUEST', u);
export const disconnect = (u) => relation('DISCONNECT_REQUEST', u);

// ---- channels ------------------------------------------------------------------

export async function refreshChannels() {
  let r;
  try {
    r = await req('FETCH_CHANNELS_LIST_REQUEST', {});
  } catch (e) {
    if (e.code !== 'DISCONNECTED') fail(e, 'FETCH_CHANNELS_LIST_REQUEST');
    return;
  }
  state.listed.channels = true;
  const seen = new Set();
  for (const e of r.channels || []) {
    const c = channel(e.channelId, e.title);
    if (!c) continue;
    seen.add(c.id);
    c.title = e.title;
    c.headCount = e.headCount;
    if (e.lastMessageSequence > c.lastMessageSequence) c.lastMessageSequence = e.lastMessageSequence;
    noteVersion(e.version);
    if (e.version != null) {
      c.version = e.version;
      // Changes here came live; a SYNC makes the level follow them.
      if (enteredId === c.id && c.loaded && c.level != null && e.version > c.level && state.caps.sync === true)
        syncChannel(c, () => enteredId === c.id);
    }
    if (isViewing(c)) {
      c.unreadCount = 0;
      if (e.unreadCount > 0) markRead(c);
    } else {
      c.unreadCount = e.unreadCount;
      c.lastRead = Math.max(c.lastRead, e.lastMessageSequence - e.unreadCount);
    }
    if (c.lastMessageSequence > 0 && c.previewSeq !== c.lastMessageSequence) loadPreview(c);
  }
  for (const id of Object.keys(state.channels)) {
    if (!seen.has(Number(id))) dropChannel(Number(id), null);
  }
}

async function loadPreview(c) {
  const want = c.lastMessageSequence;
  c.previewSeq = want; // one fetch per change
  try {
    const r = await req('FETCH_MESSAGES_REQUEST', { channelId: c.id, limit: 1 });
    const m = (r.messages || [])[0];
    if (m && m.messageSequence >= (c.preview ? c.previewSeq : 0)) setPreview(c, toMessage(m));
  } catch {
    c.previewSeq = -1;
  }
}

function dropChannel(id, why) {
  if (!state.channels[id]) return;
  if (state.activeId === id) {
    state.activeId = null;
    enteredId = null;
  }
  delete state.channels[id];
  if (why) toast(why, 'info');
}

export async function createChannel({ title, participants }) {
  const body = { title };
  if (participants.length === 1 && title.includes(' & ')) body.participantUsername = participants[0];
  else body.participantUsernames = participants;
  let r;
  try {
    r = await req('CREATE_REQUEST', body);
  } catch (e) {
    throw new Error(describe(e, 'CREATE_REQUEST'));
  }
  const c = channel(r.channelId, r.title);
  c.activity = Math.max(c.activity, Date.now());
  await refreshChannels();
  await openChannel(c.id);
  return c;
}

export async function joinChannel(code) {
  const inviteCode = code.trim().toUpperCase();
  if (!inviteCode) throw new Error("Enter the channel's code.");
  let r;
  try {
    r = await req('JOIN_REQUEST', { inviteCode });
  } catch (e) {
    throw new Error(describe(e, 'JOIN_REQUEST'));
  }
  const c = channel(r.channelId, r.title);
  c.activity = Math.max(c.activity, Date.now());
  await refreshChannels();
  await openChannel(c.id);
  return c;
}

export async function channelCode(c) {
  if (c.inviteCode) return c.inviteCode;
  try {
    const r = await req('FETCH_CHANNEL_INVITECODE_REQUEST', { channelId: c.id });
    c.inviteCode = r.inviteCode;
    return r.inviteCode;
  } catch (e) {
    fail(e, 'FETCH_CHANNEL_INVITECODE_REQUEST');
    return '';
  }
}

export async function quitChannel(c) {
  try {
    await req('QUIT_REQUEST', { channelId: c.id });
  } catch (e) {
    fail(e, 'QUIT_REQUEST');
    return;
  }
  dropChannel(c.id, `You left ${c.title}.`);
}

/** Show a channel: enter it on the socket, bring its messages up to date. */
export async function openChannel(id) {
  const c = state.channels[id];
  if (!c) return;
  if (state.activeId === id && enteredId === id) return;
  state.activeId = id;
  c.firstUnread = c.unreadCount > 0 ? c.lastMessageSequence - c.unreadCount + 1 : 0;
  if (sock && sock.open) await enter(c, false);
}

/** Close the channel view (phones): the socket leaves it, unread counts grow again. */
export async function closeChannel() {
  state.activeId = null;
  if (enteredId != null) {
    enteredId = null;
    enterGen++;
    try {
      await req('LEAVE_REQUEST', {});
    } catch {
      /* a dropped socket leaves by itself */
    }
  }
}

async function enter(c, again) {
  const gen = ++enterGen;
  let r;
  try {
    r = await req('ENTER_REQUEST', { channelId: c.id });
  } catch (e) {
    if (gen !== enterGen) return;
    if (e.code === 'NOT_FOUND' || e.code === 'FORBIDDEN') {
      dropChannel(c.id, describe(e, 'ENTER_REQUEST'));
    } else if (e.code !== 'DISCONNECTED') fail(e, 'ENTER_REQUEST');
    return;
  }
  if (gen !== enterGen || state.activeId !== c.id) return;
  enteredId = c.id;
  if (r.title) c.title = r.title;
  c.lastRead = Math.max(c.lastRead, r.lastReadMessageSequence || 0);
  if (r.lastMessageSequence > c.lastMessageSequence) c.lastMessageSequence = r.lastMessageSequence;
  if (!again) {
    c.firstUnread =
      r.lastMessageSequence > r.lastReadMessageSequence ? r.lastReadMessageSequence + 1 : 0;
  }
  // Own messages first, so that what catch-up brings back is already confirmed.
  await flushOutbox(c);
  if (gen !== enterGen) return;
  await catchUp(c, gen);
  if (gen !== enterGen) return;
  loadMarkers(c, gen);
  markRead(c);
}

async function catchUp(c, gen) {
  if (c.loaded && state.caps.sync !== false && c.level != null) {
    if (await syncChannel(c, () => gen === enterGen)) return;
    if (gen !== enterGen) return;
  }
  await fetchLatest(c, gen);
}

/**
 * SYNC_REQUEST from the level held, while hasMore; alive() says whether the
 * answer still matters. False: not done (not available, or too far behind).
 */
function syncChannel(c, alive) {
  if (!c.syncing) {
    c.syncing = syncPages(c, alive).finally(() => {
      c.syncing = null;
    });
  }
  return c.syncing;
}

async function syncPages(c, alive) {
  let since = c.level;
  for (let pages = 0; pages < SYNC_MAX_PAGES; pages++) {
    let r;
    try {
      r = await req('SYNC_REQUEST', { channelId: c.id, sinceVersion: since, limit: SYNC_PAGE });
    } catch (e) {
      // Not known, or not liked (a limit out of range): the newest page instead.
      if (e.unsupported) state.caps.sync = false;
      else if (e.code !== 'DISCONNECTED' && e.code !== 'BAD_REQUEST') fail(e, 'SYNC_REQUEST');
      return false;
    }
    if (!alive()) return true;
    state.caps.sync = true;
    state.caps.v11 = true;
    const { lo } = bounds(c);
    let top = since;
    for (const raw of r.messages || []) {
      const m = toMessage(raw);
      if (m.version != null && m.version > top) top = m.version;
      if (c.msgs.size && m.seq < lo) continue; // older than the window: fetched when scrolled to
      upsert(c, m);
    }
    if (!r.hasMore) {
      bumpLevel(c, Math.max(top, r.version ?? top));
      return true;
    }
    since = top;
  }
  // Too far behind: start again from the newest page.
  c.loaded = false;
  return false;
}

async function fetchLatest(c, gen) {
  const { hi } = bounds(c);
  const pages = [];
  let before = null;
  let more = false;
  for (let i = 0; i < SYNC_MAX_PAGES; i++) {
    const body = { channelId: c.id, limit: PAGE };
    if (before) body.beforeSequence = before;
    let r;
    try {
      r = await req('FETCH_MESSAGES_REQUEST', body);
    } catch (e) {
      if (e.code !== 'DISCONNECTED') fail(e, 'FETCH_MESSAGES_REQUEST');
      return;
    }
    if (gen !== enterGen) return;
    const list = r.messages || [];
    pages.unshift(list);
    more = r.hasMore ?? list.length >= PAGE;
    // Stop once the page reaches what is held, or there is nothing older.
    if (!c.loaded || !more || !list.length || list[0].messageSequence <= hi + 1) break;
    before = list[0].messageSequence;
  }
  const all = pages.flat().map(toMessage);
  const joins = c.loaded && all.length && (all[0].seq <= hi + 1 || !more);
  if (!joins) {
    c.msgs.clear();
    c.hasOlder = more;
  }
  for (const m of all) {
    upsert(c, m);
    bumpLevel(c, m.version);
  }
  if (!c.loaded) c.hasOlder = more;
  c.loaded = true;
}

export async function loadOlder(c) {
  if (!c.loaded || !c.hasOlder || c.loadingOlder || !sock || !sock.open) return;
  const { lo } = bounds(c);
  if (!lo) return;
  c.loadingOlder = true;
  try {
    const r = await req('FETCH_MESSAGES_REQUEST', { channelId: c.id, beforeSequence: lo, limit: PAGE });
    const list = r.messages || [];
    for (const raw of list) {
      const m = toMessage(raw);
      if (!c.msgs.has(m.seq)) c.msgs.set(m.seq, m);
    }
    c.hasOlder = r.hasMore ?? list.length >= PAGE;
  } catch (e) {
    if (e.code !== 'DISCONNECTED') fail(e, 'FETCH_MESSAGES_REQUEST');
  } finally {
    c.loadingOlder = false;
  }
}

async function loadMarkers(c, gen) {
  if (!state.caps.v11 || state.caps.markers === false) return;
  try {
    const r = await req('FETCH_READ_MARKERS_REQUEST', { channelId: c.id });
    if (gen !== enterGen) return;
    state.caps.markers = true;
    const next = {};
    for (const m of r.markers || []) next[m.username] = m.messageSequence;
    for (const [u, s] of Object.entries(c.markers)) if (!(u in next) || next[u] < s) next[u] = s;
    c.markers = next;
  } catch (e) {
    if (e.unsupported) state.caps.markers = false;
    else if (e.code !== 'DISCONNECTED' && gen === enterGen) fail(e, 'FETCH_READ_MARKERS_REQUEST');
  }
}

/** Tell the server (and so one's other devices) how far this channel is read. */
export function markRead(c) {
  if (!isViewing(c) || !sock || !sock.open) return;
  const { hi } = bounds(c);
  const upto = Math.max(hi, 0);
  c.unreadCount = 0;
  if (upto <= c.lastRead) return;
  c.lastRead = upto;
  sock.notify('READ_ACK', { channelId: c.id, messageSequence: upto }, (e) => {
    if (!e.unsupported) fail(e, 'READ_ACK');
  });
}

// ---- messages ------------------------------------------------------------------

export function send(c, content, replyTo) {
  const text = content.replace(/\s+$/, '');
  if (!text.trim()) return false;
  if (utf8Length(text) > MAX_CONTENT_BYTES) {
    toast(`That message is too long (at most ${MAX_CONTENT_BYTES} bytes).`);
    return false;
  }
  lastTypingSent = 0; // a message ends the typing: the next key tells again
  c.pending.push({
    cid: randomId(),
    content: text,
    replyTo: replyTo || null,
    status: 'queued',
    error: '',
    at: Date.now(),
  });
  saveOutbox();
  flushOutbox(c);
  return true;
}

export function retry(c, item) {
  item.status = 'queued';
  item.error = '';
  flushOutbox(c);
}

export function discard(c, item) {
  const i = c.pending.indexOf(item);
  if (i >= 0) c.pending.splice(i, 1);
  saveOutbox();
}

/** Send the channel's queued messages one after the other, in order. */
async function flushOutbox(c) {
  if (c.sending) return;
  c.sending = true;
  try {
    while (sock && sock.open) {
      const item = c.pending.find((p) => p.status === 'queued');
      if (!item) break;
      item.status = 'sending';
      const body = { channelId: c.id, content: item.content, clientMessageId: item.cid };
      if (item.replyTo) body.replyTo = item.replyTo;
      try {
        const ack = await req('WRITE_MESSAGE', body);
        confirmOwn(c, item, ack);
      } catch (e) {
        if (e.code === 'DISCONNECTED' || e.code === 'TIMEOUT') {
          item.status = 'queued';
          if (e.code === 'TIMEOUT') setTimeout(() => flushOutbox(c), 2000);
          break;
        }
        if (e.code === 'RATE_LIMITED' || e.code === 'UNAVAILABLE') {
          item.status = 'queued';
          await sleep(1500);
          continue;
        }
        item.status = 'failed';
        item.error =
          e.code === 'NOT_FOUND' && item.replyTo
            ? 'The message you replied to no longer exists.'
            : describe(e, 'WRITE_MESSAGE');
      }
    }
  } finally {
    c.sending = false;
  }
}

function confirmOwn(c, item, ack) {
  const i = c.pending.indexOf(item);
  if (i >= 0) c.pending.splice(i, 1);
  saveOutbox();
  const m = {
    seq: ack.messageSequence,
    username: state.me,
    content: item.content,
    createdAt: parseTime(ack.createdAt) || Date.now(),
    version: ack.version ?? null,
    editedAt: 0,
    deleted: false,
    replyTo: item.replyTo,
    reactions: [],
  };
  if (c.loaded && enteredId === c.id) upsert(c, m);
  else {
    if (m.seq > c.lastMessageSequence) c.lastMessageSequence = m.seq;
    if (m.seq >= c.previewSeq) setPreview(c, m);
  }
  // Writing does not move one's own read marker: what one wrote is read.
  if (isViewing(c)) markRead(c);
}

export function typing(c) {
  if (!state.caps.v11 || state.caps.typing === false || !sock || !sock.open) return;
  if (enteredId !== c.id) return;
  const now = Date.now();
  if (now - lastTypingSent < TYPING_SEND_MS) return;
  lastTypingSent = now;
  sock.notify('TYPING', { channelId: c.id }, (e) => {
    if (e.unsupported) state.caps.typing = false;
    else if (e.code !== 'RATE_LIMITED') fail(e, 'TYPING');
  });
}

export async function editMessage(c, m, content) {
  const text = content.trim();
  if (!text || text === m.content) return true;
  if (utf8Length(text) > MAX_CONTENT_BYTES) {
    toast(`That message is too long (at most ${MAX_CONTENT_BYTES} bytes).`);
    return false;
  }
  try {
    const r = await req('EDIT_MESSAGE', { channelId: c.id, messageSequence: m.seq, content: text });
    const have = c.msgs.get(m.seq);
    if (have) {
      have.content = text;
      have.editedAt = parseTime(r.editedAt) || Date.now();
      if (r.version != null) have.version = Math.max(have.version ?? 0, r.version);
    }
    if (c.previewSeq === m.seq && c.preview) c.preview.content = text;
    return true;
  } catch (e) {
    if (e.unsupported) state.caps.edit = false;
    fail(e, 'EDIT_MESSAGE');
    return false;
  }
}

export async function deleteMessage(c, m) {
  try {
    const r = await req('DELETE_MESSAGE', { channelId: c.id, messageSequence: m.seq });
    markDeleted(c, m.seq, r.version);
  } catch (e) {
    if (e.unsupported) state.caps.del = false;
    fail(e, 'DELETE_MESSAGE');
  }
}

function markDeleted(c, seq, version) {
  const have = c.msgs.get(seq);
  if (have) {
    if (have.version != null && version != null && version <= have.version && have.deleted) return;
    have.deleted = true;
    have.content = '';
    have.reactions = [];
    if (version != null) have.version = Math.max(have.version ?? 0, version);
  }
  if (c.previewSeq === seq && c.preview) {
    c.preview.deleted = true;
    c.preview.content = '';
  }
}

export async function react(c, m, emoji) {
  const mine = m.reactions.find((r) => r.emoji === emoji && r.me);
  const on = !mine;
  try {
    const r = await req('REACT_REQUEST', { channelId: c.id, messageSequence: m.seq, emoji, on });
    const have = c.msgs.get(m.seq);
    if (have) applyReaction(have, emoji, r.on ?? on, true, r.version);
  } catch (e) {
    if (e.unsupported) state.caps.react = false;
    fail(e, 'REACT_REQUEST');
  }
}

function applyReaction(m, emoji, on, isMe, version) {
  if (m.deleted) return;
  let r = m.reactions.find((x) => x.emoji === emoji);
  if (isMe && r && r.me === on) return; // nothing changed
  if (on) {
    if (!r) {
      r = { emoji, count: 0, me: false };
      m.reactions.push(r);
    }
    r.count++;
    if (isMe) r.me = true;
  } else if (r) {
    r.count = Math.max(0, r.count - 1);
    if (isMe) r.me = false;
    if (r.count === 0) m.reactions.splice(m.reactions.indexOf(r), 1);
  }
  if (version != null) m.version = Math.max(m.version ?? 0, version);
}

// ---- what the server pushes -------------------------------------------------------

function onPush(msg) {
  const handler = PUSH[msg.type];
  if (handler) handler(msg);
}

const PUSH = {
  NOTIFY_MESSAGE(n) {
    const c = state.channels[channelIdOf(n.channelId)];
    if (!c) {
      refreshChannels();
      return;
    }
    const m = toMessage(n);
    delete c.typing[m.username];
    if (c.loaded && enteredId === c.id) {
      upsert(c, m);
      noteVersion(m.version);
    } else {
      if (m.seq > c.lastMessageSequence) c.lastMessageSequence = m.seq;
      if (m.seq >= c.previewSeq) setPreview(c, m);
    }
    if (m.username === state.me) {
      c.lastRead = Math.max(c.lastRead, m.seq);
      return;
    }
    if (isViewing(c)) markRead(c);
    else if (m.seq > c.lastRead) c.unreadCount = Math.max(c.unreadCount, m.seq - c.lastRead);
  },
  NOTIFY_MESSAGE_EDITED(n) {
    const c = state.channels[channelIdOf(n.channelId)];
    if (!c) return;
    const have = c.msgs.get(n.messageSequence);
    if (have && !(have.version != null && n.version != null && n.version <= have.version)) {
      have.content = n.content;
      have.editedAt = parseTime(n.editedAt) || Date.now();
      if (n.version != null) have.version = n.version;
    }
    if (c.previewSeq === n.messageSequence && c.preview) c.preview.content = n.content;
    noteVersion(n.version);
  },
  NOTIFY_MESSAGE_DELETED(n) {
    const c = state.channels[channelIdOf(n.channelId)];
    if (!c) return;
    markDeleted(c, n.messageSequence, n.version);
    noteVersion(n.version);
  },
  NOTIFY_REACTION(n) {
    const c = state.channels[channelIdOf(n.channelId)];
    if (!c) return;
    const have = c.msgs.get(n.messageSequence);
    if (have && !(have.version != null && n.version != null && n.version <= have.version)) {
      applyReaction(have, n.emoji, !!n.on, n.username === state.me, n.version);
    }
    noteVersion(n.version);
  },
  NOTIFY_READ(n) {
    const c = state.channels[channelIdOf(n.channelId)];
    if (!c) return;
    state.caps.v11 = true;
    const seq = n.messageSequence;
    if ((c.markers[n.username] || 0) < seq) c.markers[n.username] = seq;
    if (n.username === state.me && seq > c.lastRead) {
      // read on another device
      c.lastRead = seq;
      c.unreadCount = Math.max(0, c.lastMessageSequence - seq);
    }
  },
  NOTIFY_TYPING(n) {
    const c = state.channels[channelIdOf(n.channelId)];
    if (!c || n.username === state.me) return;
    c.typing[n.username] = Date.now() + TYPING_SHOW_MS;
  },
  NOTIFY_PRESENCE(n) {
    state.caps.presence = true;
    state.presence[n.username] = { online: !!n.online, lastSeen: parseTime(n.lastSeen) };
  },
  NOTIFY_JOIN(n) {
    const c = channel(n.channelId, n.title);
    if (c) {
      c.activity = Math.max(c.activity, Date.now());
      const peer = peerOf({ title: n.title, headCount: 2 }, state.me);
      toast(peer ? `${peer} started a conversation with you.` : `You were added to ${n.title}.`, 'info');
    }
    refreshChannels();
  },
  NOTIFY_CHANNEL_DELETED(n) {
    const id = channelIdOf(n.channelId);
    const c = state.channels[id];
    if (c) dropChannel(id, `${c.title} was deleted.`);
  },
  ASK_INVITE(n) {
    const had = state.connections[n.username];
    state.connections[n.username] = { username: n.username, status: 'PENDING', invitedBy: n.username };
    if (!had || had.status !== 'PENDING') toast(`${n.username} wants to be your friend.`, 'info');
  },
  NOTIFY_ACCEPT(n) {
    const had = state.connections[n.username];
    state.connections[n.username] = {
      username: n.username,
      status: 'ACCEPTED',
      invitedBy: had ? had.invitedBy : state.me,
    };
    toast(`${n.username} accepted your invitation.`, 'info');
    refreshPresence();
  },
};
