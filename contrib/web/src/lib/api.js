// The HTTP part of the protocol: register, login, logout, health.

export class HttpError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

async function post(path, body) {
  let res;
  try {
    res = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: body ? { 'Content-Type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new HttpError(0, 'NETWORK', 'network error');
  }
  if (res.ok) {
    let text = '';
    try {
      text = await res.text(); // read to the end, also when empty (204)
    } catch {
      text = '';
    }
    try {
      return text ? JSON.parse(text) : null;
    } catch {
      return null;
    }
  }
  let data = {};
  try {
    data = await res.json();
  } catch {
    /* a body that is not JSON: the status says enough */
  }
  throw new HttpError(res.status, data.error, data.message);
}

export const register = (username, password) =>
  post('/api/v1/auth/register', { username, password });
export const login = (username, password) => post('/api/v1/auth/login', { username, password });
export const logout = () => post('/api/v1/auth/logout');

export async function healthy() {
  try {
    const res = await fetch('/healthz', { cache: 'no-store' });
    return res.ok;
  } catch {
    return false;
  }
}
