"""Shared helpers for the chatd hardening tests.

Built on the end-to-end helpers (tests/e2e/harness.py and domain.py), which
start a real chatd on 127.0.0.1 with an ephemeral port. What is added here:

* ``rss_kib`` / ``RssSampler``: the server's resident memory from /proc.
* ``http_get`` / ``metrics``: plain HTTP from a chosen 127.0.0.0/8 source
  address (the per-address limits count by source address).
* ``tcp_connect`` / ``wait_closed``: raw sockets and "did the server close it".
* ``fast_frame``: a WebSocket frame encoder fast enough for large payloads.
* ``raw_ws_open``: a blocking WebSocket handshake on a raw socket that returns
  the full HTTP answer (status, headers and body) when the upgrade is refused.
* ``AsyncRawWS``: a minimal asyncio WebSocket client for many short-lived
  connections (the ``websockets`` package is too slow for thousands).

Every wait here is bounded by an explicit timeout.
"""

import asyncio
import base64
import http.client
import json
import os
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import harness  # noqa: E402,F401
from harness import (  # noqa: E402,F401
    rss_kib,
    HOST,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    WS_PATH,
    Frame,
    Server,
    ServerTestCase,
    auth_headers,
    decode_body,
    parse_http_response,
    ws_accept_for,
)

# Login failures from 127.0.0.1 must never trip the per-address limiter by accident.
RELAXED_LOGIN = "plugins.auth.login_max_failures_per_addr=1000000"


# ---- memory ---------------------------------------------------------------------


def sanitizer_of(pid):
    """The sanitizer runtime chatd runs under ("asan", "tsan", ...), or None.

    Sanitizers hold freed memory back (ASan's quarantine) and add shadow memory,
    so RSS bounds meant for a plain build mean nothing there; LeakSanitizer
    checks for leaks at exit instead.
    """
    try:
        with open("/proc/%d/maps" % pid) as f:
            maps = f.read()
    except OSError:
        maps = ""
    for name in ("asan", "tsan", "msan", "hwasan"):
        if "lib%s" % name in maps:
            return name
    try:
        with open("/proc/%d/exe" % pid, "rb") as f:
            exe = f.read()
    except OSError:
        exe = b""
    for marker, name in ((b"__asan_init", "asan"), (b"__tsan_init", "tsan"),
                         (b"__msan_init", "msan"), (b"__lsan_init", "lsan")):
        if marker in exe:
            return name
    return None


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread; keeps the peak.

    Stops by itself after ``max_seconds`` at the latest.
    """

    def __init__(self, pid, interval=0.05, max_seconds=300.0):
        self.pid = pid
        self.interval = interval
        self.max_seconds = max_seconds
        self.peak = rss_kib(pid)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            v = rss_kib(self.pid)
            self.samples += 1
            if v > self.peak:
                self.peak = v
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


# ---- HTTP from a chosen source address ----------------------------------------------


def http_request(port, method, path, body=None, headers=None, src=None, timeout=5.0):
    """One HTTP request on a fresh connection from source address ``src``.

    Returns (status, headers, JSON-or-bytes body).
    """
    hdrs = dict(headers or {})
    data = harness.encode_body(body, hdrs)
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout,
                                      source_address=(src, 0) if src else None)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, resp.headers, decode_body(raw)
    finally:
        conn.close()


def http_get(port, path, src=None, timeout=5.0):
    return http_request(port, "GET", path, src=src, timeout=timeout)


def metrics(port, src=None):
    """The /metrics counters and gauges as {name: float} (label sets are kept in the name)."""
    status, _, body = http_get(port, "/metrics", src=src)
    if status != 200:
        raise AssertionError("/metrics answered %s %r" % (status, body))
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


def metric(port, name, src=None):
    """One metric's value; 0 when the server has not reported it yet."""
    return metrics(port, src).get(name, 0.0)


def percentile(values, pct):
    """Nearest-rank percentile of a non-empty sequence."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(pct / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


# ---- raw sockets ----------------------------------------------------------------------


def tcp_connect(port, src=None, timeout=5.0, rcvbuf=None):
    """A TCP connection to the server from ``src`` (a 127.0.0.0/8 address) or 127.0.0.1."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if src is not None:
            s.bind((src, 0))
        s.settimeout(timeout)
        s.connect((HOST, port))
    except BaseException:
        s.close()
        raise
    return s


def wait_closed(sock, timeout):
    """Read (discarding) until the peer closes or ``timeout`` passes.

    Returns (how, seconds, data): how is "eof", "rst" or None (still open).
    """
    start = time.monotonic()
    deadline = start + timeout
    chunks = []
    total = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, time.monotonic() - start, b"".join(chunks)
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return None, time.monotonic() - start, b"".join(chunks)
        except (ConnectionResetError, BrokenPipeError):
            return "rst", time.monotonic() - start, b"".join(chunks)
        if not data:
            return "eof", time.monotonic() - start, b"".join(chunks)
        if total < (1 << 20):
            chunks.append(data)
            total += len(data)


def send_quietly(sock, data):
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


# ---- WebSocket frames -------------------------------------------------------------------


def mask_bytes(payload, key):
    """XOR ``payload`` with the 4-byte ``key`` (fast for large payloads)."""
    n = len(payload)
    if n == 0:
        return b""
    reps = key * (n // 4 + 1)
    a = int.from_bytes(payload, "big")
    b = int.from_bytes(reps[:n], "big")
    return (a ^ b).to_bytes(n, "big")


def fast_frame(opcode, payload=b"", fin=True, mask=True, length=None):
    """Encode one client frame; ``length`` overrides the announced payload length."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def parse_frame(buf):
    """Parse one server frame from ``buf``: (Frame, rest) or (None, buf) if incomplete."""
    if len(buf) < 2:
        return None, buf
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None, buf
        n = struct.unpack("!H", buf[2:4])[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None, buf
        n = struct.unpack("!Q", buf[2:10])[0]
        pos = 10
    key = None
    if b1 & 0x80:
        if len(buf) < pos + 4:
            return None, buf
        key = buf[pos:pos + 4]
        pos += 4
    if len(buf) < pos + n:
        return None, buf
    payload = buf[pos:pos + n]
    if key is not None:
        payload = mask_bytes(payload, key)
    return Frame(bool(b0 & 0x80), b0 & 0x0F, payload), buf[pos + n:]


def frames_in(data):
    """Every complete frame in ``data`` (a byte dump of a connection after the 101)."""
    out = []
    while True:
        f, data = parse_frame(data)
        if f is None:
            return out, data
        out.append(f)


def handshake_bytes(port, token=None, how="bearer", path=WS_PATH, extra=None):
    key = base64.b64encode(os.urandom(16)).decode()
    if token is not None and how == "query":
        path += "?access_token=" + token
    lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (HOST, port), "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
    for name, value in auth_headers(token, how).items():
        lines.append("%s: %s" % (name, value))
    for name, value in (extra or {}).items():
        lines.append("%s: %s" % (name, value))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1"), key


def read_http_answer(sock, timeout=5.0):
    """Read one HTTP response (head plus Content-Length body) off a raw socket.

    Returns (RawResponse or None, bytes after it).
    """
    deadline = time.monotonic() + timeout
    buf = b""
    while True:
        if b"\r\n\r\n" in buf:
            head, _, rest = buf.partition(b"\r\n\r\n")
            resp = parse_http_response(head + b"\r\n\r\n")
            if resp is None:
                return None, buf
            need = int(resp.headers.get("content-length", "0") or 0)
            if resp.status == 101:
                need = 0
            if len(rest) >= need:
                resp.body = rest[:need]
                return resp, rest[need:]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, buf
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return None, buf
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            if b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                resp = parse_http_response(head + b"\r\n\r\n")
                if resp is not None:
                    resp.body = rest
                return resp, b""
            return None, buf
        buf += data


def raw_ws_open(port, token, how="bearer", src=None, timeout=5.0, rcvbuf=None):
    """Open a WebSocket on a raw socket. Returns (sock, RawResponse, leftover bytes).

    The socket is returned open even when the server refused the upgrade.
    """
    sock = tcp_connect(port, src=src, timeout=timeout, rcvbuf=rcvbuf)
    req, key = handshake_bytes(port, token, how)
    sock.sendall(req)
    resp, rest = read_http_answer(sock, timeout)
    if resp is not None and resp.status == 101:
        if resp.headers.get("sec-websocket-accept") != ws_accept_for(key):
            sock.close()
            raise AssertionError("bad Sec-WebSocket-Accept in %r" % resp.headers)
    return sock, resp, rest


def recv_frame_blocking(sock, buf, timeout):
    """Read one frame from a blocking socket. Returns (Frame or None on timeout/EOF, buf)."""
    deadline = time.monotonic() + timeout
    while True:
        f, buf = parse_frame(buf)
        if f is not None:
            return f, buf
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, buf
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return None, buf
        except (ConnectionResetError, BrokenPipeError):
            return None, buf
        if not data:
            return None, buf
        buf += data


# ---- asyncio raw WebSocket client ---------------------------------------------------------


class AsyncRawWS:
    """A small asyncio WebSocket client for bulk tests. All waits are bounded."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.buf = b""
        self.status = None

    @classmethod
    async def open(cls, port, token, how="bearer", src=None, timeout=10.0):
        """Connect and upgrade. Returns the client; ``status`` is the HTTP status."""
        local = (src, 0) if src else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, port, local_addr=local), timeout)
        self = cls(reader, writer)
        req, key = handshake_bytes(port, token, how)
        writer.write(req)
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            data = await asyncio.wait_for(reader.read(65536),
                                          max(0.01, deadline - time.monotonic()))
            if not data:
                self.close()
                raise ConnectionError("EOF during the handshake: %r" % self.buf[:200])
            self.buf += data
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        resp = parse_http_response(head + b"\r\n\r\n")
        self.status = resp.status if resp else None
        if self.status == 101 and resp.headers.get("sec-websocket-accept") != ws_accept_for(key):
            self.close()
            raise AssertionError("bad Sec-WebSocket-Accept")
        return self

    def send(self, opcode, payload=b""):
        self.writer.write(fast_frame(opcode, payload))

    def send_json(self, obj):
        self.send(OP_TEXT, json.dumps(obj))

    async def recv_frame(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            f, self.buf = parse_frame(self.buf)
            if f is not None:
                return f
            data = await asyncio.wait_for(self.reader.read(65536),
                                          max(0.01, deadline - time.monotonic()))
            if not data:
                raise ConnectionError("EOF")
            self.buf += data

    async def recv_json(self, timeout=10.0):
        """The next text message as JSON; pings are answered, pongs skipped."""
        deadline = time.monotonic() + timeout
        while True:
            f = await self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                self.send(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode != OP_TEXT:
                raise AssertionError("expected a text frame, got %r" % f)
            return json.loads(f.payload.decode("utf-8"))

    async def close_handshake(self, timeout=5.0):
        """Send a close frame and wait for the server's close frame (and EOF)."""
        self.send(OP_CLOSE, struct.pack("!H", 1000))
        deadline = time.monotonic() + timeout
        code = None
        try:
            while True:
                f = await self.recv_frame(max(0.01, deadline - time.monotonic()))
                if f.opcode == OP_CLOSE:
                    code = f.close_code
                    break
            # the server closes the TCP connection after its close frame
            await asyncio.wait_for(self.reader.read(65536),
                                   max(0.01, deadline - time.monotonic()))
        except (ConnectionError, asyncio.TimeoutError, OSError):
            pass
        self.close()
        return code

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass


def loopback_addrs(n, first=10):
    """``n`` distinct 127.0.0.x source addresses starting at 127.0.0.<first>."""
    return ["127.0.0.%d" % (first + i) for i in range(n)]
