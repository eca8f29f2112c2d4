// What the browser suite stands on: a chatd to test against, Chromium through
// playwright-core, and a watch on every page for console errors and failed
// requests.
//
// Environment:
//   CHATD_BIN, CHATD_CONF   the chatd to start (default: build/core/chatd, etc/chatd.conf)
//   CHATD_WEB_URL           test this running deployment instead of starting chatd
//   CHATD_WEB_RESTART       with CHATD_WEB_URL: a shell command that restarts it
//   CHATD_WEB_SCREENSHOTS   where screenshots go (default: $MESON_BUILD_ROOT/web-screenshots,
//                           else tests/web/screenshots-out)
//   CHATD_WEB_CHROMIUM      the browser (default: /usr/bin/chromium)

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const WEB = path.join(REPO, 'contrib', 'web');
export const DIST = path.join(WEB, 'dist');

export const CSP =
  "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; " +
  "script-src 'self'; base-uri 'none'; frame-ancestors 'none'";

export const PASSWORD = 'correct horse battery';

export function screenshotDir() {
  const dir =
    process.env.CHATD_WEB_SCREENSHOTS ||
    (process.env.MESON_BUILD_ROOT
      ? path.join(process.env.MESON_BUILD_ROOT, 'web-screenshots')
      : path.join(HERE, 'screenshots-out'));
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export function uniqueName(prefix) {
  return `${prefix}_${process.pid.toString(36)}${Math.random().toString(36).slice(2, 7)}`.slice(0, 32);
}

// ---- the client's build ------------------------------------------------------------

function newestMtime(dir) {
  let newest = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

/** npm ci when node_modules is missing, npm run build when dist/ is older than the sources. */
export function ensureBuilt(log) {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  if (!fs.existsSync(path.join(WEB, 'node_modules', 'playwright-core'))) {
    log('installing the web client packages (npm ci)');
    const r = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], { cwd: WEB, stdio: ['ignore', 2, 2] });
    if (r.status !== 0) throw new Error('npm ci failed in contrib/web');
  }
  const built = path.join(DIST, 'index.html');
  const sources = Math.max(
    newestMtime(path.join(WEB, 'src')),
    fs.statSync(path.join(WEB, 'index.html')).mtimeMs,
    fs.statSync(path.join(WEB, 'vite.config.js')).mtimeMs,
  );
  if (!fs.existsSync(built) || fs.statSync(built).mtimeMs < sources) {
    log('building the web client (npm run build)');
    const r = spawnSync(npm, ['run', 'build'], { cwd: WEB, stdio: ['ignore', 2, 2] });
    if (r.status !== 0) throw new Error('npm run build failed in contrib/web');
  }
}

export function playwright() {
  const require = createRequire(path.join(WEB, 'package.json'));
  return require('playwright-core');
}

// ---- chatd -----------------------------------------------------------------------

const LISTEN_RE = /listening on 127\.0\.0\.1:(\d+)/;
const READY_RE = /core: ready\s*$/m;

export class Chatd {
  constructor(sets = []) {
    this.bin = process.env.CHATD_BIN || path.join(REPO, 'build', 'core', 'chatd');
    this.conf = process.env.CHATD_CONF || path.join(REPO, 'etc', 'chatd.conf');
    this.sets = sets;
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-web-'));
    this.port = 0;
    this.proc = null;
    this.starts = 0;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    if (!fs.existsSync(this.bin)) throw new Error(`chatd not found at ${this.bin} (set CHATD_BIN)`);
    this.starts++;
    this.logPath = path.join(this.dataDir, `chatd.${this.starts}.log`);
    const fd = fs.openSync(this.logPath, 'w');
    const args = [
      '-c', this.conf,
      '--listen', `127.0.0.1:${this.port}`,
      '--data-dir', this.dataDir,
      '--set', `http.web_root=${JSON.stringify(DIST)}`,
      '--set', 'plugins.auth.argon2_t_cost=1',
      '--set', 'plugins.auth.argon2_m_cost=256',
    ];
    for (const s of this.sets) args.push('--set', s);
    this.proc = spawn(this.bin, args, { cwd: this.dataDir, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    const exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
    this.exited = exited;
    const deadline = Date.now() + 15000;
    for (;;) {
      const text = this.log();
      const m = LISTEN_RE.exec(text);
      if (m && READY_RE.test(text)) {
        this.port = Number(m[1]);
        return this;
      }
      if (this.proc.exitCode !== null) throw new Error(`chatd exited during start-up:\n${text}`);
      if (Date.now() > deadline) {
        this.proc.kill('SIGKILL');
        throw new Error(`chatd not ready within 15 s:\n${text}`);
      }
      await sleep(25);
    }
  }

  log() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** SIGTERM; chatd must exit 0. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill('SIGTERM');
    const code = await Promise.race([this.exited, sleep(10000).then(() => 'timeout')]);
    if (code === 'timeout') {
      this.proc.kill('SIGKILL');
      throw new Error('chatd did not stop within 10 s of SIGTERM');
    }
    if (code !== 0) throw new Error(`chatd exited with ${code} after SIGTERM:\n${this.log()}`);
  }

  cleanup() {
    if (this.proc && this.proc.exitCode === null) this.proc.kill('SIGKILL');
    if (!process.env.CHATD_WEB_KEEP) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * Until chatd sends its Content-Security-Policy itself, a pass-through proxy in
 * front of it adds the policy to its HTML answers, so that the browser holds
 * the client to it (a violation is a console error, which fails the suite).
 * Resolves to the proxy's base URL; nothing is proxied when chatd has a policy.
 */
export async function withPolicy(chatd) {
  const res = await fetch(`${chatd.url}/`);
  await res.arrayBuffer();
  if (res.headers.get('content-security-policy')) return { url: chatd.url, close() {} };
  const server = http.createServer((req, res2) => {
    const up = http.request(
      { host: '127.0.0.1', port: chatd.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        const headers = { ...answer.headers };
        if (/^text\/html/.test(headers['content-type'] || '') && !headers['content-security-policy'])
          headers['content-security-policy'] = CSP;
        res2.writeHead(answer.statusCode, headers);
        answer.pipe(res2);
      },
    );
    up.on('error', () => res2.destroy()); // as if chatd had refused the connection
    req.pipe(up);
  });
  server.on('upgrade', (req, socket, head) => {
    const up = net.connect(chatd.port, '127.0.0.1', () => {
      let text = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        text += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(`${text}\r\n`);
      if (head && head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close() {
      server.closeAllConnections && server.closeAllConnections();
      server.close();
    },
  };
}

// ---- the browser ----------------------------------------------------------------------

export async function launchBrowser() {
  const exe = process.env.CHATD_WEB_CHROMIUM || '/usr/bin/chromium';
  if (!fs.existsSync(exe)) {
    throw new Error(
      `no browser at ${exe}: install Debian's chromium (apt-get install chromium) or set CHATD_WEB_CHROMIUM`,
    );
  }
  // launch() gives every browser a fresh profile of its own (a temporary
  // user-data dir that it removes on close).
  const { chromium } = playwright();
  const browser = await chromium.launch({
    executablePath: exe,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return browser;
}

/**
 * Watch a page: every console error, page error, failed request and answer
 * >= 400 is a problem, unless a test allowed it first (allow(), which returns
 * a function that takes the allowance back).
 */
export function watch(page, name) {
  const problems = [];
  const allowances = [];
  const allowed = (kind, text, status) =>
    allowances.some(
      (a) => a.kind === kind && a.re.test(text) && (a.status == null || a.status === status),
    );
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (!allowed('console', text)) problems.push(`${name}: console error: ${text}`);
  });
  page.on('pageerror', (err) => problems.push(`${name}: page error: ${err.message}`));
  page.on('requestfailed', (req) => {
    const text = `${req.method()} ${req.url()} ${req.failure() ? req.failure().errorText : ''}`;
    if (!allowed('requestfailed', text)) problems.push(`${name}: request failed: ${text}`);
  });
  page.on('response', (res) => {
    if (res.status() < 400) return;
    const text = `${res.request().method()} ${res.url()}`;
    if (!allowed('response', text, res.status()))
      problems.push(`${name}: ${res.status()} for ${text}`);
  });
  return {
    problems,
    allow(kind, re, status) {
      const a = { kind, re, status };
      allowances.push(a);
      return () => {
        const i = allowances.indexOf(a);
        if (i >= 0) allowances.splice(i, 1);
      };
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll fn until it returns a truthy value. */
export async function until(fn, what, timeout = 10000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    await sleep(50);
  }
}
