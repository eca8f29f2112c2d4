"""Helpers for the chatd end-to-end tests.

Everything here talks to a real chatd process over real sockets:

* ``Server`` starts chatd on an ephemeral port with a fresh data directory (or
  one given with ``data_dir``, kept across restarts) and stops it with SIGTERM,
  checking that it exits 0; ``kill9()`` crashes it instead.
* ``Server.request`` and friends speak HTTP/1.1 through ``http.client``.
* ``raw_exchange`` sends arbitrary bytes for malformed-request tests.
* ``ws_connect`` and friends wrap the ``websockets`` (10.x, asyncio) client.
* ``RawWebSocket`` is a deliberately small RFC 6455 client over a plain socket,
  for frames a well-behaved library refuses to send.

Environment:
  CHATD_BIN   path to the chatd executable (default: <repo>/build/core/chatd)
  CHATD_CONF  path to the config file      (default: <repo>/etc/chatd.conf)
  CHATD_E2E_SETS    a JSON list of extra PATH=VALUE settings for every server
  CHATD_E2E_KEEP=1  keep data directories (and logs) even when a server stops cleanly
  CHATD_E2E_CLUSTER=N  cluster mode: every ``Server`` is N chatd nodes behind nginx,
                    sharing MariaDB and Redis (tests/cluster/cluster.py); see below.
  CHATD_E2E_TLS=1   TLS mode: every ``Server`` (not in cluster mode) gets tls.cert and
                    tls.key (a self-signed certificate made once per process with the
                    openssl command line), and every helper here speaks https and wss
                    to it, so the suites run unchanged over TLS.

Cluster mode (CHATD_E2E_CLUSTER set to a number > 0) keeps the ``Server``
interface, so the suites run unchanged on several nodes:

* ``port`` is nginx's port: requests and WebSocket handshakes alternate
  between the nodes (round robin).
* ``data_dir`` is the cluster's directory; its ``push.log`` is the push file
  every node writes. Each node's own data dir and logs are in ``nodeN/``.
* ``log_text()``/``log_tail()`` cover every node's logs (each headed by the
  node's name); ``log_path`` is the first node's current log.
* ``proc`` is the first node's process only (``cluster.nodes`` has them all).
* ``stop()`` sends SIGTERM to every node and asserts that each exits 0;
  ``kill9()`` SIGKILLs every node; a new ``Server`` on the same ``data_dir``
  reuses the same database and Redis keys (sessions survive).
* ``extra_sets`` (and CHATD_E2E_SETS) go to every node, after the cluster's own
  settings (etc/chatd-cluster.conf, or CHATD_CLUSTER_CONF).
* MariaDB and Redis are started once per test process (each ``Server`` gets a
  fresh database and Redis key prefix on them), or shared with the process
  named by CHATD_CLUSTER_BACKENDS.
"""

import asyncio
import atexit
import base64
import hashlib
import http.client
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import unittest

try:
    import websockets
    import websockets.exceptions
except ImportError:  # pragma: no cover - reported when a WebSocket helper is used
    websockets = None

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
IO_TIMEOUT = 10.0

WS_PATH = "/ws/v1/message"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# WebSocket opcodes (RFC 6455 section 5.2)
OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_PASSWORD = "correct horse battery"

_LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
# log.format "text" or "json"
_READY_RE = re.compile(r'(core: ready|"module":"core","message":"ready"\})\s*$', re.MULTILINE)

_name_counter = itertools.count(1)


def rss_kib(pid):
    """VmRSS of a process in KiB (0 when it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def unique_name(prefix="u"):
    """A username that is valid (3..32 of [A-Za-z0-9_.-]) and unique per call."""
    tag = "%x%x" % (os.getpid() & 0xFFFF, next(_name_counter))
    rand = os.urandom(3).hex()
    return ("%s_%s%s" % (prefix[:16], tag, rand))[:32]


def _default_path(env, *parts):
    value = os.environ.get(env)
    if value:
        return os.path.abspath(value)  # chatd runs in its data dir: not relative to that
    return os.path.join(REPO_ROOT, *parts)


def chatd_bin():
    return _default_path("CHATD_BIN", "build", "core", "chatd")


def chatd_conf():
    return _default_path("CHATD_CONF", "etc", "chatd.conf")


def tls_mode():
    """Whether the servers speak TLS (CHATD_E2E_TLS; never in cluster mode)."""
    return os.environ.get("CHATD_E2E_TLS", "").strip() not in ("", "0") and not cluster_size()


def make_cert(directory, name, cn="127.0.0.1"):
    """A self-signed P-256 certificate for 127.0.0.1 made by the openssl command line
    (package openssl): (certificate path, key path) in directory."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    openssl = shutil.which("openssl")
    if not openssl:
        raise RuntimeError("the openssl command line is not installed (Debian package openssl)")
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + cn, "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
    return cert, key


_tls_files = None


def tls_files():
    """TLS mode's (certificate, key), made at the first call, removed at exit."""
    global _tls_files
    if _tls_files is None:
        directory = tempfile.mkdtemp(prefix="chatd-e2e-tls-")
        atexit.register(shutil.rmtree, directory, True)
        _tls_files = make_cert(directory, "server")
    return _tls_files


def tls_client_context(cert=None):
    """A client context trusting cert (default: TLS mode's), checking the name 127.0.0.1."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cert or tls_files()[0])
    return ctx


def open_socket(port, timeout, rcvbuf=None, context=None):
    """A socket connected to the server: plain TCP, or TLS with ``context`` (a client
    SSLContext; default: TLS mode's, else none). ``rcvbuf``: a receive buffer this
    small, set before connecting."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((HOST, port))
        if context is None and tls_mode():
            context = tls_client_context()
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname=HOST)
    except BaseException:
        sock.close()
        raise
    return sock


def cluster_size():
    """Nodes per Server in cluster mode (CHATD_E2E_CLUSTER), 0 for one plain process."""
    value = os.environ.get("CHATD_E2E_CLUSTER", "").strip()
    if not value:
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 2


_cluster_servers = set()  # cluster-mode Servers not stopped yet, crashed at exit


def _kill_leftover_clusters():
    for srv in list(_cluster_servers):
        srv._kill()


atexit.register(_kill_leftover_clusters)


def encode_body(body, headers):
    """Turn a request body into bytes; dicts and lists become JSON."""
    if body is None:
        return None
    if isinstance(body, (dict, list)):
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(body).encode("utf-8")
    if isinstance(body, str):
        headers.setdefault("Content-Type", "application/json")
        return body.encode("utf-8")
    return bytes(body)


def decode_body(data):
    """Parsed JSON when the body is JSON, else the raw bytes."""
    if not data:
        return data
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return data


class Server:
    """One chatd process on 127.0.0.1 with an ephemeral port and its own data dir
    (in cluster mode, several behind nginx: see the module's documentation)."""

    def __init__(self, extra_sets=None, data_dir=None):
        """``data_dir``: run on this (possibly existing) directory instead of a fresh
        temporary one. A given directory belongs to the caller: it is never deleted,
        and each start writes its log to a new ``chatd.N.log`` in it."""
        self.extra_sets = list(extra_sets or [])
        self.proc = None
        self.port = None
        self.data_dir = data_dir
        self.owns_data_dir = data_dir is None
        self.log_path = None
        self.tokens = []  # every token handed out through login(), for log checks
        self.cluster = None  # cluster mode: the tests/cluster Cluster behind this Server
        self._log_file = None
        self._stopped = False
        # the context https and wss clients use; None: plain HTTP and ws
        self.client_ssl = tls_client_context() if tls_mode() else None

    # ---- process lifecycle -------------------------------------------------

    def args(self):
        argv = [
            chatd_bin(),
            "-c", chatd_conf(),
            "--listen", "%s:0" % HOST,
            "--data-dir", self.data_dir,
            "--set", "plugins.auth.argon2_t_cost=1",
            "--set", "plugins.auth.argon2_m_cost=256",
        ]
        if tls_mode():
            cert, key = tls_files()
            argv += ["--set", 'tls.cert="%s"' % cert, "--set", 'tls.key="%s"' % key]
        # CHATD_E2E_SETS (a JSON list of PATH=VALUE) runs the same suites on
        # another deployment, e.g. every plugin on MariaDB; the test's own
        # settings come last and win.
        for item in json.loads(os.environ.get("CHATD_E2E_SETS", "[]")) + self.extra_sets:
            argv += ["--set", item]
        return argv

    def start(self):
        if cluster_size():
            return self._start_cluster(cluster_size())
        binary = chatd_bin()
        if not os.access(binary, os.X_OK):
            raise RuntimeError("chatd binary not found or not executable: %s "
                               "(set CHATD_BIN)" % binary)
        if not os.path.exists(chatd_conf()):
            raise RuntimeError("chatd config not found: %s (set CHATD_CONF)" % chatd_conf())
        if self.owns_data_dir:
            self.data_dir = tempfile.mkdtemp(prefix="chatd-e2e-")
            self.log_path = os.path.join(self.data_dir, "chatd.log")
        else:
            os.makedirs(self.data_dir, exist_ok=True)
            n = 1
            while os.path.exists(os.path.join(self.data_dir, "chatd.%d.log" % n)):
                n += 1
            self.log_path = os.path.join(self.data_dir, "chatd.%d.log" % n)
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.args(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=self._log_file,
            cwd=self.data_dir,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = self.log_text()
            if self.port is None:
                m = _LISTEN_RE.search(text)
                if m:
                    self.port = int(m.group(1))
            if self.port is not None and _READY_RE.search(text):
                return self
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError("chatd exited with %s during start-up; args %r; log:\n%s"
                                   % (self.proc.returncode, self.args(), self.log_text()))
            if time.monotonic() > deadline:
                self._kill()
                raise RuntimeError("chatd not ready within %.0f s; log:\n%s"
                                   % (START_TIMEOUT, self.log_text()))
            time.sleep(0.02)

    def _start_cluster(self, nodes):
        cluster_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster")
        if cluster_dir not in sys.path:
            sys.path.insert(0, cluster_dir)
        from cluster import Cluster, shared_backends

        mariadb, redis = shared_backends()
        sets = json.loads(os.environ.get("CHATD_E2E_SETS", "[]")) + self.extra_sets
        if not self.owns_data_dir:
            os.makedirs(self.data_dir, exist_ok=True)
        cluster = Cluster(nodes, extra_sets=sets,
                          root=None if self.owns_data_dir else self.data_dir,
                          mariadb=mariadb, redis=redis)
        try:
            cluster.start()
        except BaseException:
            if self.owns_data_dir and cluster.root and not os.environ.get("CHATD_E2E_KEEP"):
                shutil.rmtree(cluster.root, ignore_errors=True)
            raise
        self.cluster = cluster
        self.data_dir = cluster.root
        self.port = cluster.lb_port
        self.proc = cluster.nodes[0].proc
        self.log_path = cluster.nodes[0].log_path
        _cluster_servers.add(self)
        return self

    def _stop_cluster(self):
        _cluster_servers.discard(self)
        try:
            self.cluster.stop(check=True)
        except AssertionError:
            raise AssertionError("cluster did not stop cleanly (dir kept at %s): %s"
                                 % (self.data_dir, sys.exc_info()[1]))
        # Keep every node's final log: checks on it run after stop().
        self._final_log = self.cluster.log_text()
        if self.owns_data_dir:
            self.cluster.cleanup()

    def alive(self):
        if self.cluster is not None:
            return self.cluster.alive()
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, wait, and assert a clean exit (code 0). Idempotent."""
        if self.proc is None or self._stopped:
            return
        if self.cluster is not None:
            self._stopped = True
            return self._stop_cluster()
        self._stopped = True
        if self.proc.poll() is not None:
            self._close_log()
            raise AssertionError("chatd had already exited with %s before stop(); log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._kill()
            raise AssertionError("chatd did not exit within %.0f s of SIGTERM; log:\n%s"
                                 % (STOP_TIMEOUT, self.log_tail()))
        self._close_log()
        if code != 0:
            raise AssertionError("chatd exited with %s after SIGTERM (expected 0); "
                                 "data dir kept at %s; log:\n%s"
                                 % (code, self.data_dir, self.log_tail()))
        # Keep the final log: checks on it (no token in the log) run after stop().
        self._final_log = self.log_text()
        if self.owns_data_dir and not os.environ.get("CHATD_E2E_KEEP"):
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill9(self):
        """SIGKILL the process (a crash: no shutdown code runs) and reap it.

        The data directory is left as the crash left it, for a restart on it.
        """
        if self.proc is None or self._stopped:
            raise AssertionError("kill9(): chatd is not running")
        if self.cluster is not None:
            dead = [n.name for n in self.cluster.nodes if not n.alive()]
            self._kill()
            if dead:
                raise AssertionError("%s had already exited before kill9(); logs:\n%s"
                                     % (", ".join(dead), self.log_tail()))
            return
        if self.proc.poll() is not None:
            self._stopped = True
            self._close_log()
            raise AssertionError("chatd had already exited with %s before kill9(); log:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._stopped = True
        self._close_log()

    def _kill(self):
        if self.cluster is not None:
            _cluster_servers.discard(self)
            self.cluster.kill_all()
            self._stopped = True
            return
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stopped = True
        self._close_log()

    def _close_log(self):
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_text(self):
        if self.cluster is not None:
            if self._stopped and getattr(self, "_final_log", None) is not None:
                return self._final_log
            return self.cluster.log_text()
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return getattr(self, "_final_log", "")

    def log_tail(self, lines=60):
        if self.cluster is not None:
            return self.cluster.log_tail(lines)
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            # Do not hide the original failure behind a stop() assertion.
            try:
                self.stop()
            except AssertionError:
                pass
        return False

    # ---- HTTP ----------------------------------------------------------------

    def connection(self, timeout=IO_TIMEOUT):
        if self.client_ssl is not None:
            return http.client.HTTPSConnection(HOST, self.port, timeout=timeout,
                                               context=self.client_ssl)
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """One HTTP request. Returns (status, headers, JSON-or-bytes body).

        ``headers`` of the result is an ``http.client.HTTPMessage`` (case-insensitive
        ``get`` and ``get_all``). Pass ``conn`` to reuse a keep-alive connection.
        """
        hdrs = dict(headers or {})
        data = encode_body(body, hdrs)
        own = conn is None
        if own:
            conn = self.connection()
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, resp.headers, decode_body(raw)
        finally:
            if own:
                conn.close()

    def register(self, username, password=DEFAULT_PASSWORD):
        status, _, body = self.request("POST", "/api/v1/auth/register",
                                       {"username": username, "password": password})
        if status != 201:
            raise AssertionError("register %r: expected 201, got %s %r" % (username, status, body))
        return body

    def login_response(self, username, password=DEFAULT_PASSWORD, headers=None):
        status, hdrs, body = self.request("POST", "/api/v1/auth/login",
                                          {"username": username, "password": password},
                                          headers=headers)
        if status == 200 and isinstance(body, dict) and isinstance(body.get("token"), str):
            self.tokens.append(body["token"])
        return status, hdrs, body

    def login(self, username, password=DEFAULT_PASSWORD):
        status, _, body = self.login_response(username, password)
        if status != 200:
            raise AssertionError("login %r: expected 200, got %s %r" % (username, status, body))
        return body["token"]

    def new_user(self, prefix="u", password=DEFAULT_PASSWORD):
        """Register and log in a fresh user. Returns a User."""
        name = unique_name(prefix)
        reg = self.register(name, password)
        token = self.login(name, password)
        return User(name, password, reg["userId"], reg["inviteCode"], token)

    def logout(self, token, how="bearer"):
        return self.request("POST", "/api/v1/auth/logout", headers=auth_headers(token, how))

    def unregister(self, token, how="bearer"):
        return self.request("POST", "/api/v1/auth/unregister", headers=auth_headers(token, how))

    def healthz(self):
        return self.request("GET", "/healthz")

    # ---- WebSocket -----------------------------------------------------------

    def ws_uri(self, token=None, how="query"):
        uri = "%s://%s:%d%s" % ("ws" if self.client_ssl is None else "wss", HOST, self.port,
                                WS_PATH)
        if token is not None and how == "query":
            uri += "?access_token=" + token
        return uri


class User:
    def __init__(self, username, password, user_id, invite_code, token):
        self.username = username
        self.password = password
        self.user_id = user_id
        self.invite_code = invite_code
        self.token = token

    def __repr__(self):
        return "User(%r)" % self.username


def auth_headers(token, how="bearer"):
    """Headers carrying a session token: how is 'bearer', 'cookie' or None."""
    if token is None or how is None or how == "query":
        return {}
    if how == "bearer":
        return {"Authorization": "Bearer " + token}
    if how == "cookie":
        return {"Cookie": "CHATSESSION=" + token}
    raise ValueError(how)


def error_code(body):
    """The 'error' field of an HTTP error body, or a description of what came instead."""
    if isinstance(body, dict):
        return body.get("error")
    return "<not a JSON object: %r>" % (body[:200] if body else body,)


# ---- raw sockets ---------------------------------------------------------------


def recv_until_close(sock, timeout=IO_TIMEOUT, limit=1 << 20):
    """Read until EOF or timeout. Returns (bytes, eof_reached)."""
    chunks = []
    total = 0
    deadline = time.monotonic() + timeout
    while total < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), False
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return b"".join(chunks), False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):  # TLS: closed uncleanly
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), True
        chunks.append(data)
        total += len(data)
    return b"".join(chunks), False


def _send_quietly(sock, data):
    """sendall that tolerates the peer having closed already. True if all was sent."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        return False


def raw_exchange(port, data, timeout=5.0, then=None, pause=0.5):
    """Send raw bytes to the server and read until it closes or ``timeout`` passes.

    If ``then`` is given, it is sent after ``pause`` seconds unless the server has
    answered already (useful for a head whose body the server may refuse to read).
    Returns (response bytes, eof_reached).
    """
    sock = open_socket(port, timeout)
    try:
        if not _send_quietly(sock, data):
            return recv_until_close(sock, timeout)
        if then is not None:
            sock.settimeout(pause)
            try:
                first = sock.recv(65536)
            except socket.timeout:
                first = None
            except (ConnectionResetError, ssl.SSLError):
                return b"", True
            if first is None:
                _send_quietly(sock, then)
            elif first == b"":
                return b"", True
            else:
                rest, eof = recv_until_close(sock, timeout)
                return first + rest, eof
        return recv_until_close(sock, timeout)
    finally:
        sock.close()


class RawResponse:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # dict, lower-case names, last value wins
        self.body = body

    def json(self):
        return decode_body(self.body)

    def __repr__(self):
        return "RawResponse(%s %s, %r)" % (self.status, self.reason, self.body[:200])


def parse_http_response(data):
    """Parse the first HTTP response in ``data``. Returns a RawResponse or None."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        return None
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = rest
    if "content-length" in headers:
        body = rest[: int(headers["content-length"])]
    return RawResponse(status, reason, headers, body)


# ---- WebSocket: library client -------------------------------------------------


def _require_websockets():
    if websockets is None:
        raise unittest.SkipTest("python3 'websockets' package not available "
                                "(run the suite with /usr/bin/python3)")


def run(coro):
    """Run a coroutine to completion in a fresh event loop."""
    return asyncio.run(coro)


async def ws_connect(server, token=None, how="query", origin=None, headers=None,
                     max_size=1 << 22, compression=None, **kwargs):
    """Open a WebSocket to the server with the token given the chosen way.

    ``how`` is 'query', 'bearer', 'cookie' or None (no credentials). The client does
    not ping on its own (ping_interval=None) but answers the server's pings.
    """
    _require_websockets()
    extra = list(auth_headers(token, how).items())
    extra += list((headers or {}).items())
    kwargs.setdefault("open_timeout", IO_TIMEOUT)
    kwargs.setdefault("close_timeout", 3)
    kwargs.setdefault("ping_interval", None)
    if server.client_ssl is not None:
        kwargs.setdefault("ssl", server.client_ssl)
    if origin is not None:
        kwargs["origin"] = origin
    return await websockets.connect(server.ws_uri(token, how), extra_headers=extra,
                                    max_size=max_size, compression=compression, **kwargs)


async def ws_send(ws, obj):
    await ws.send(obj if isinstance(obj, str) else json.dumps(obj))


async def ws_recv(ws, timeout=5.0):
    """Next message as parsed JSON. Raises AssertionError if it is not a JSON object."""
    msg = await asyncio.wait_for(ws.recv(), timeout)
    if not isinstance(msg, str):
        raise AssertionError("expected a text frame, got binary %r" % msg[:100])
    try:
        obj = json.loads(msg)
    except ValueError:
        raise AssertionError("server sent a frame that is not JSON: %r" % msg[:200])
    if not isinstance(obj, dict):
        raise AssertionError("server sent JSON that is not an object: %r" % msg[:200])
    return obj


async def ws_request(ws, obj, timeout=5.0):
    await ws_send(ws, obj)
    return await ws_recv(ws, timeout)


async def ws_expect_silence(ws, seconds=0.5):
    """Assert that nothing arrives within ``seconds``."""
    try:
        msg = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError("expected no message, got %r" % (msg[:200],))


async def ws_wait_close(ws, timeout=5.0):
    """Wait until the server closes the connection; return the close code it sent.

    Messages still queued are discarded.
    """
    try:
        await asyncio.wait_for(ws.wait_closed(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError("connection not closed within %.1f s" % timeout)
    return ws.close_code


async def ws_handshake_status(server, token=None, how="query", origin=None, headers=None):
    """Try to open a WebSocket; return 101 on success, else the HTTP status refused with."""
    _require_websockets()
    try:
        ws = await ws_connect(server, token, how, origin=origin, headers=headers)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    await ws.close()
    return 101


def connection_closed_types():
    _require_websockets()
    return (websockets.exceptions.ConnectionClosed,)


# ---- WebSocket: raw client --------------------------------------------------------


def ws_accept_for(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode()


def build_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """Encode one frame. ``length`` overrides the announced payload length."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
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
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return head + key + masked


class Frame:
    def __init__(self, fin, opcode, payload):
        self.fin = fin
        self.opcode = opcode
        self.payload = payload

    @property
    def close_code(self):
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    def __repr__(self):
        return "Frame(op=%#x, fin=%s, %r)" % (self.opcode, self.fin, self.payload[:80])


class ConnectionEnded(Exception):
    """The peer closed the TCP connection."""


class FrameTimeout(AssertionError):
    """No (complete) frame arrived in time; a test failure, not an error."""


class RawWebSocket:
    """A minimal client: handshake, masked frame writer, frame reader."""

    def __init__(self, port, timeout=5.0, rcvbuf=None, context=None):
        """``rcvbuf``: a receive buffer this small (set before connecting, so the
        window the server sees stays small: a slow reader fills up fast).
        ``context``: TLS with this client SSLContext (as open_socket)."""
        self.port = port
        self.sock = open_socket(port, timeout, rcvbuf, context)
        self.buf = b""
        self.status = None
        self.headers = {}
        self.key = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # handshake

    def handshake(self, token=None, how="bearer", key=True, version="13", extra=None,
                  path=WS_PATH):
        """Send an upgrade request. Returns the status code; headers in self.headers.

        ``key``: True for a random valid key, False to omit the header, or a string.
        ``version``: the Sec-WebSocket-Version value, or None to omit it.
        """
        if token is not None and how == "query":
            path += "?access_token=" + token
        lines = [
            "GET %s HTTP/1.1" % path,
            "Host: %s:%d" % (HOST, self.port),
            "Upgrade: websocket",
            "Connection: Upgrade",
        ]
        if key is True:
            self.key = base64.b64encode(os.urandom(16)).decode()
        elif key:
            self.key = key
        if self.key:
            lines.append("Sec-WebSocket-Key: " + self.key)
        if version is not None:
            lines.append("Sec-WebSocket-Version: " + version)
        for name, value in auth_headers(token, how).items():
            lines.append("%s: %s" % (name, value))
        for name, value in (extra or {}).items():
            lines.append("%s: %s" % (name, value))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1"))
        while b"\r\n\r\n" not in self.buf:
            data = self._recv_some()
            if not data:
                raise ConnectionEnded("EOF during handshake; got %r" % self.buf)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        return self.status

    # frames out

    def send_raw(self, data):
        """Send bytes; False if the peer has already closed the connection."""
        return _send_quietly(self.sock, data)

    def send_frame(self, opcode, payload=b"", fin=True, **kw):
        return self.send_raw(build_frame(opcode, payload, fin=fin, **kw))

    def send_frame_staged(self, opcode, payload, first=1024, pause=0.5, fin=True):
        """Send a large frame in two steps: the header plus ``first`` payload bytes,
        then (unless the server has written something meanwhile) the rest.

        A server that rejects the frame by its announced length then never has
        unread bytes pending when it closes, so its close frame is not lost to a reset.
        Returns True if the whole frame was sent.
        """
        frame = build_frame(opcode, payload, fin=fin)
        cut = len(frame) - len(payload) + first
        if not self.send_raw(frame[:cut]):
            return False
        readable, _, _ = select.select([self.sock], [], [], pause)
        if readable:
            return False
        return self.send_raw(frame[cut:])

    def send_text(self, text):
        return self.send_frame(OP_TEXT, text.encode("utf-8") if isinstance(text, str) else text)

    def send_json(self, obj):
        return self.send_text(json.dumps(obj))

    def send_close(self, code=1000):
        return self.send_frame(OP_CLOSE, struct.pack("!H", code))

    # frames in

    def _recv_some(self):
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        self.buf += data
        return data

    def _need(self, n, deadline):
        while len(self.buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FrameTimeout("no complete frame from the server in time (have %d bytes)"
                                   % len(self.buf))
            self.sock.settimeout(remaining)
            try:
                data = self._recv_some()
            except socket.timeout:
                raise FrameTimeout("no complete frame from the server in time (have %d bytes)"
                                   % len(self.buf))
            if not data:
                raise ConnectionEnded("EOF")

    def recv_frame(self, timeout=5.0):
        """Read one frame. Raises FrameTimeout or ConnectionEnded."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        if b1 & 0x80:
            self._need(pos + 4, deadline)
            key = self.buf[pos:pos + 4]
            pos += 4
        else:
            key = None
        self._need(pos + n, deadline)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        if key is not None:
            payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
        return Frame(bool(b0 & 0x80), b0 & 0x0F, payload)

    def recv_message(self, timeout=5.0):
        """Next data frame (text/binary); pings are answered, pongs skipped."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            return f

    def recv_close_code(self, timeout=5.0):
        """Read (and discard data frames) until the server's close frame; return its code.

        Returns None if the connection ended without a close frame.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            except ConnectionEnded:
                return None
            except FrameTimeout:
                raise FrameTimeout("no close frame from the server within %.1f s" % timeout)
            if f.opcode == OP_CLOSE:
                return f.close_code

    def wait_eof(self, timeout=5.0):
        """Read and discard everything (answering nothing) until EOF.

        Returns the seconds it took, or None on timeout.
        """
        start = time.monotonic()
        _, eof = recv_until_close(self.sock, timeout)
        return (time.monotonic() - start) if eof else None


class ServerTestCase(unittest.TestCase):
    """Base class: one chatd per test class, started with ``server_sets`` extra settings.

    tearDownClass stops it (asserting exit code 0 on SIGTERM) and checks that no
    session token handed out by login() shows up in the log.
    """

    server_sets = []
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.server_sets).start()

    @classmethod
    def tearDownClass(cls):
        srv = cls.server
        if srv is None:
            return
        srv.stop()
        log = srv.log_text()
        leaked = [t for t in srv.tokens if t and t in log]
        if leaked:
            raise AssertionError("%d session token(s) appear in the server log" % len(leaked))

    def assertError(self, resp, status, code):
        """resp is (status, headers, body) from Server.request."""
        got_status, _, body = resp
        self.assertEqual((got_status, error_code(body)), (status, code),
                         "expected %s %s, got %s %r" % (status, code, got_status, body))
        self.assertIsInstance(body.get("message"), str, "error body without message: %r" % body)

    def assertServerUp(self):
        self.assertTrue(self.server.alive(), "chatd died; log:\n" + self.server.log_tail())
        status, _, body = self.server.healthz()
        self.assertEqual((status, body), (200, {"status": "ok"}))
