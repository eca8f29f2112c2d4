// One WebSocket to chatd with request ids, answers as promises, keep-alive and
// reconnection with exponential backoff and jitter.

export class ProtocolError extends Error {
  constructor(code, message, messageType) {
    super(message || code);
    this.code = code;
    this.messageType = messageType || '';
  }

  /** The server does not know this message type (an older version). */
  get unsupported() {
    return this.code === 'BAD_REQUEST' && /unknown message type/i.test(this.message);
  }
}

const REQUEST_TIMEOUT = 15000;
const CONNECT_TIMEOUT = 10000;
const KEEP_ALIVE_EVERY = 240000;
const BACKOFF_BASE = 500;
const BACKOFF_CAP = 10000;
const CLOSE_SESSION_ENDED = 4001;

export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP, BACKOFF_BASE * 2 ** Math.min(attempt, 10));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export class ChatSocket {
  /**
   * handlers: onOpen(), onPush(msg), onDown(info) with info {retryAt, opened},
   * onEnded() when the server ended the session (4001), onUnreachable() after a
   * handshake that failed: resolves to false to stop retrying.
   */
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.ws = null;
    this.open = false;
    this.stopped = true;
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map(); // requestId -> {resolve, reject, timer, type}
    this.fireAndForget = new Map(); // requestId -> {type, onError, at}
    this.retryTimer = null;
    this.keepAliveTimer = null;
    this.connectTimer = null;
    this.onOnline = () => this.retryNow();
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    clearInterval(this.keepAliveTimer);
    const ws = this.ws;
    this.ws = null;
    this.open = false;
    if (ws) {
      ws.onopen = ws.onclose = ws.onerror = ws.onmessage = null;
      try {
        ws.close(1000);
      } catch {
        /* already closed */
      }
    }
    this.failAll('DISCONNECTED');
  }

  retryNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  connect() {
    this.retryTimer = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleRetry(false);
      return;
    }
    this.ws = ws;
    let opened = false;
    this.connectTimer = setTimeout(() => {
      if (!opened) ws.close();
    }, CONNECT_TIMEOUT);
    ws.onopen = () => {
      opened = true;
      clearTimeout(this.connectTimer);
      this.open = true;
      this.attempt = 0;
      clearInterval(this.keepAliveTimer);
      this.keepAliveTimer = setInterval(() => this.send({ type: 'KEEP_ALIVE' }), KEEP_ALIVE_EVERY);
      this.h.onOpen();
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => {
      clearTimeout(this.connectTimer);
      clearInterval(this.keepAliveTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      this.open = false;
      this.failAll('DISCONNECTED');
      if (ev.code === CLOSE_SESSION_ENDED) {
        this.stop();
        this.h.onEnded();
        return;
      }
      this.scheduleRetry(opened);
    };
    ws.onerror = () => {
      /* onclose follows and decides */
    };
  }

  async scheduleRetry(opened) {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt++);
    const retryAt = Date.now() + delay;
    this.h.onDown({ retryAt, opened });
    if (!opened && this.h.onUnreachable) {
      const go = await this.h.onUnreachable();
      if (!go || this.stopped) return;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.ws && !this.stopped) this.connect();
    }, Math.max(0, retryAt - Date.now()));
  }

  send(obj) {
    if (!this.open || !this.ws) return false;
    try {
      this.ws.send(JSON.stringify(obj));
      return true;
    } catch {
      return false;
    }
  }

  /** Send a request and resolve with its answer, or reject with a ProtocolError. */
  request(type, body = {}, timeout = REQUEST_TIMEOUT) {
    return new Promise((resolve, reject) => {
      if (!this.open) {
        reject(new ProtocolError('DISCONNECTED', 'not connected', type));
        return;
      }
      const requestId = String(this.nextId++);
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new ProtocolError('TIMEOUT', 'no answer', type));
      }, timeout);
      this.pending.set(requestId, { resolve, reject, timer, type });
      if (!this.send({ ...body, type, requestId })) {
        clearTimeout(timer);
        this.pending.delete(requestId);
        reject(new ProtocolError('DISCONNECTED', 'not connected', type));
      }
    });
  }

  /** A message with no answer on success (READ_ACK, TYPING); errors go to onError. */
  notify(type, body = {}, onError = null) {
    const requestId = String(this.nextId++);
    if (onError) {
      this.fireAndForget.set(requestId, { type, onError, at: Date.now() });
      if (this.fireAndForget.size > 200) this.pruneFireAndForget();
    }
    return this.send({ ...body, type, requestId });
  }

  pruneFireAndForget() {
    const old = Date.now() - 60000;
    for (const [id, e] of this.fireAndForget) if (e.at < old) this.fireAndForget.delete(id);
  }

  receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    const id = msg.requestId;
    if (id != null && this.pending.has(id)) {
      const p = this.pending.get(id);
      this.pending.delete(id);
      clearTimeout(p.timer);
      if (msg.type === 'ERROR') p.reject(new ProtocolError(msg.code, msg.message, msg.messageType || p.type));
      else p.resolve(msg);
      return;
    }
    if (msg.type === 'ERROR') {
      const f = id != null && this.fireAndForget.get(id);
      if (f) {
        this.fireAndForget.delete(id);
        f.onError(new ProtocolError(msg.code, msg.message, msg.messageType || f.type));
      } else {
        this.h.onStrayError && this.h.onStrayError(new ProtocolError(msg.code, msg.message, msg.messageType));
      }
      return;
    }
    this.h.onPush(msg);
  }

  failAll(code) {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ProtocolError(code, 'connection closed', p.type));
    }
    this.pending.clear();
    this.fireAndForget.clear();
  }
}
