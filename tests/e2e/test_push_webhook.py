#!/usr/bin/python3
"""End-to-end tests of the push plugin's webhook backend and durable outbox
(PROTOCOL.md section 6), against a real HTTP receiver in this process.

The receiver (``Receiver``) is a ThreadingHTTPServer on 127.0.0.1 that records
every request (headers, body, arrival time) and answers as the test tells it:
a status, a slow answer, no answer at all (chatd's timeout_ms fires), or a
closed connection. chatd POSTs each notification there as
{"id","userId","username","devices","event"} with X-Chatd-Id and, with a
secret, X-Chatd-Signature; it retries with exponential backoff and jitter,
dead-letters after max_attempts, keeps at most max_in_flight requests open and
max_pending notifications held, and keeps every notification through kill -9.

The outbox is read where the plugin keeps it: chatd.db in the data dir on
SQLite, the suite's database on MariaDB (tests/cluster/e2e_mariadb.py) or the
cluster's (tests/cluster/e2e_cluster.py).
"""

import asyncio
import hashlib
import hmac
import http.client
import json
import math
import os
import re
import select
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
    HOST,
    START_TIMEOUT,
    WS_PATH,
    Server,
    cluster_size,
    connection_closed_types,
    ws_connect,
)
from domain import (  # noqa: E402
    ADDR_LIMIT_SET,
    DomainTestCase,
    async_test,
    chan,
)

SECRET = "webhook test secret"
HOOK_PATH = "/push/hook"
MSG = "NOTIFY_MESSAGE"
SETTLE = 0.8          # how long to wait before asserting that nothing more arrives
WAIT = 10.0           # the longest wait for something that should happen

FIGURES = []


def figure(what, text):
    FIGURES.append((what, text))
    sys.stderr.write("  [figure] %s: %s\n" % (what, text))
    sys.stderr.flush()


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    return s[min(len(s), max(1, math.ceil(p / 100.0 * len(s)))) - 1]


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=WAIT, step=0.02):
    """Poll ``pred`` until it returns something true or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


async def async_wait_until(pred, timeout=WAIT, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(step)


# ---- the receiver ----------------------------------------------------------------


class Request:
    """One request as it arrived."""

    def __init__(self, at, method, path, headers, body, attempt):
        self.at = at                    # time.monotonic() of its arrival (body read)
        self.method = method
        self.path = path
        self.header_list = headers      # [(name, value)] as sent
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body                # bytes
        self.attempt = attempt          # 1 for the first request of this X-Chatd-Id
        self.answer = None              # the status answered, "hang" or "close"
        try:
            self.json = json.loads(body.decode("utf-8"))
        except ValueError:
            self.json = None

    @property
    def id(self):
        return self.headers.get("x-chatd-id")

    @property
    def user_id(self):
        return self.json.get("userId") if isinstance(self.json, dict) else None

    @property
    def event(self):
        return self.json.get("event") if isinstance(self.json, dict) else None

    @property
    def delivered(self):
        return isinstance(self.answer, int) and 200 <= self.answer < 300

    def __repr__(self):
        return "Request(%s #%d -> %s)" % (self.id, self.attempt, self.answer)


def answer(status):
    return ("status", status)


OK = answer(200)
HANG = ("hang",)
CLOSE = ("close",)


def slow(seconds, status=200):
    return ("slow", seconds, status)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: chatd may reuse its connections

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.receiver.lock:
            self.server.receiver.connections[self.connection] = False  # not in a request

    def finish(self):
        with self.server.receiver.lock:
            self.server.receiver.connections.pop(self.connection, None)
        super().finish()

    def do_POST(self):
        rcv = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with rcv.lock:
            rcv.connections[self.connection] = True
        req = rcv._arrived(self.command, self.path, list(self.headers.items()), body)
        left = False
        try:
            action = rcv.plan(req)
            kind = action[0]
            if kind == "slow":
                rcv.stopping.wait(action[1])
                action = answer(action[2])
                kind = "status"
            if kind == "status":
                req.answer = action[1]
                # counted as closed before the answer leaves: chatd may open
                # the next request as soon as it reads it
                rcv._left(req)
                left = True
                self.send_response(action[1])
                self.send_header("Content-Length", "0")
                if not rcv.keep_alive:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                return
            req.answer = kind
            self.close_connection = True
            if kind == "hang":
                self._wait_for_peer_close(30.0)
        finally:
            if not left:
                rcv._left(req)
            with rcv.lock:
                if self.connection in rcv.connections:
                    rcv.connections[self.connection] = False

    def _wait_for_peer_close(self, limit):
        deadline = time.monotonic() + limit
        sock = self.connection
        while time.monotonic() < deadline and not self.server.receiver.stopping.is_set():
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        return
                except OSError:
                    return
                return  # something more from the peer: it is not waiting any more

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, OSError):
            pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256  # max_in_flight connections at once: none left waiting for a SYN retry

    def handle_error(self, request, client_address):
        pass  # a peer that went away mid-answer is part of the tests


class Receiver:
    """A webhook receiver on 127.0.0.1 recording every request.

    ``plan(request)`` says how to answer each one: ``OK``, ``answer(503)``,
    ``slow(2.0)``, ``HANG`` or ``CLOSE``. ``open_now``/``max_open`` count the
    requests being answered at once.
    """

    def __init__(self, port=0, tls=None):
        """``tls``: (certificate file, key file) to answer HTTPS."""
        self.port = port
        self.tls = tls
        self.lock = threading.Lock()
        self.requests = []
        self.attempts = {}
        self.open_now = 0
        self.max_open = 0
        self.plan = lambda req: OK
        self.keep_alive = True
        self.connections = {}  # socket -> in a request
        self.stopping = threading.Event()
        self.httpd = None
        self.thread = None

    @property
    def url(self):
        return "%s://%s:%d%s" % ("https" if self.tls else "http", HOST, self.port, HOOK_PATH)

    def start(self):
        self.stopping.clear()
        self.httpd = _HTTPServer((HOST, self.port), _Handler)
        self.httpd.receiver = self
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is None:
            return
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
        self.httpd = None

    def _arrived(self, method, path, headers, body):
        with self.lock:
            hid = dict((k.lower(), v) for k, v in headers).get("x-chatd-id")
            self.attempts[hid] = self.attempts.get(hid, 0) + 1
            req = Request(time.monotonic(), method, path, headers, body, self.attempts[hid])
            self.requests.append(req)
            self.open_now += 1
            self.max_open = max(self.max_open, self.open_now)
            return req

    def _left(self, req):
        with self.lock:
            self.open_now -= 1

    def fresh_connections_only(self):
        """Close every kept-alive connection and keep none from now on."""
        self.keep_alive = False
        with self.lock:
            idle = [c for c, busy in self.connections.items() if not busy]
        for c in idle:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        time.sleep(0.1)  # chatd's client sees them closed

    def reset_max_open(self):
        with self.lock:
            self.max_open = self.open_now

    def of(self, user_id=None, type_=None, pred=None):
        """The requests (in arrival order) for ``user_id`` with an event of ``type_``."""
        with self.lock:
            reqs = list(self.requests)
        return [r for r in reqs
                if (user_id is None or r.user_id == user_id)
                and (type_ is None or (r.event or {}).get("type") == type_)
                and (pred is None or pred(r))]

    def delivered(self, user_id=None, type_=None, pred=None):
        return [r for r in self.of(user_id, type_, pred) if r.delivered]

    def delivered_ids(self, user_id=None):
        return {r.id for r in self.delivered(user_id)}


# ---- chatd's settings, its outbox and its metrics -------------------------------


def webhook_sets(url, secret=SECRET, **push):
    sets = ['plugins.push.backend="webhook"', 'plugins.push.url="%s"' % url]
    if secret is not None:
        sets.append('plugins.push.secret="%s"' % secret)
    for key, value in push.items():
        sets.append("plugins.push.%s=%s" % (key, json.dumps(value)))
    return sets


def _all_sets(server):
    return json.loads(os.environ.get("CHATD_E2E_SETS", "[]")) + list(server.extra_sets)


def _set_value(sets, key):
    value = None
    for item in sets:
        k, sep, v = item.partition("=")
        if sep and k.strip() == key:
            value = v.strip().strip('"')
    return value


def push_store_is_mariadb(server=None):
    if cluster_size():
        return True
    sets = json.loads(os.environ.get("CHATD_E2E_SETS", "[]"))
    if server is not None:
        sets = _all_sets(server)
    return _set_value(sets, "plugins.push.store") == "mariadb"


def db_rows(server, sql):
    """Rows of ``sql`` on the push plugin's store, every value text (or None)."""
    if server.cluster is not None:
        c = server.cluster
        out = c.mariadb.sql("USE `%s`; %s" % (c.database, sql), capture=True)
        return _parse_batch(out)
    sets = _all_sets(server)
    if push_store_is_mariadb(server):
        argv = ["mariadb", "--no-defaults", "-h", _set_value(sets, "mariadb.host") or HOST,
                "-P", _set_value(sets, "mariadb.port"), "-u", _set_value(sets, "mariadb.user"),
                "-p" + (_set_value(sets, "mariadb.password") or ""), "--batch",
                "--skip-column-names", _set_value(sets, "mariadb.database"), "-e", sql]
        out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, timeout=30).stdout
        return _parse_batch(out.decode("utf-8", "replace"))
    path = _set_value(sets, "storage.sqlite.path") or "chatd.db"
    db = sqlite3.connect(os.path.join(server.data_dir, path), timeout=10)
    try:
        return [tuple(None if v is None else str(v) for v in row) for row in db.execute(sql)]
    finally:
        db.close()


def _parse_batch(text):
    rows = []
    for line in text.splitlines():
        rows.append(tuple(None if v == "NULL" else v for v in line.split("\t")))
    return rows


def db_count(server, sql):
    return int(db_rows(server, sql)[0][0])


def outbox(server, user_id=None):
    """{id: (dead, attempts, last_error, body)} of the outbox (of one user)."""
    where = "" if user_id is None else " WHERE user_id = %d" % int(user_id)
    return {r[0]: (int(r[1]), int(r[2]), r[3], json.loads(r[4]))
            for r in db_rows(server, "SELECT id, dead, attempts, last_error, body FROM push_outbox"
                             + where)}


def node_ports(server):
    return server.cluster.ports if server.cluster is not None else [server.port]


def metric(server, name):
    """A counter summed over the nodes (each node counts its own)."""
    total = 0
    for port in node_ports(server):
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode("utf-8")
        finally:
            conn.close()
        m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.MULTILINE)
        total += int(m.group(1)) if m else 0
    return total


def self_signed_certificate(folder):
    """(certificate, key) files for 127.0.0.1, made with openssl."""
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return cert, key


def signature_of(body, secret=SECRET):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ---- test cases --------------------------------------------------------------------


class WebhookCase(DomainTestCase):
    """One receiver and one chatd (POSTing to it) per class."""

    secret = SECRET
    push = {}  # more plugins.push settings
    tls = None  # "trusted": an HTTPS receiver whose certificate is the ca_file; "untrusted"

    @classmethod
    def setUpClass(cls):
        cls.cert_dir = None
        tls, push = None, dict(cls.push)
        if cls.tls:
            cls.cert_dir = tempfile.mkdtemp(prefix="chatd-tls-")
            tls = self_signed_certificate(cls.cert_dir)
            if cls.tls == "trusted":
                push["ca_file"] = tls[0]
        cls.receiver = Receiver(tls=tls).start()
        cls.server_sets = [ADDR_LIMIT_SET] + webhook_sets(cls.receiver.url, cls.secret, **push)
        try:
            super().setUpClass()
        except BaseException:
            cls.cleanup_receiver()
            raise

    @classmethod
    def cleanup_receiver(cls):
        cls.receiver.stop()
        if cls.cert_dir:
            shutil.rmtree(cls.cert_dir, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.cleanup_receiver()

    def setUp(self):
        self.receiver.plan = lambda req: OK
        self.receiver.keep_alive = True

    async def offline_channel(self, *offline):
        """A writer with a socket, and a channel of the writer and ``offline``
        (their NOTIFY_JOIN pushes delivered: what follows is the test's)."""
        w = self.user("w")
        cid = await self.channel_with(w, *offline)
        cw = await self.connect(w)
        for u in offline:
            await self.wait_requests(u, 1, "NOTIFY_JOIN", delivered=True)
            # and chatd has seen the answer (counted, row deleted)
            await async_wait_until(lambda: not outbox(self.server, u.user_id), 5)
        return w, cw, cid

    async def wait_requests(self, user, count, type_=None, delivered=False, timeout=WAIT):
        get = self.receiver.delivered if delivered else self.receiver.of
        await async_wait_until(lambda: len(get(user.user_id, type_)) >= count, timeout)
        reqs = get(user.user_id, type_)
        self.assertGreaterEqual(len(reqs), count, "requests for %s: %r"
                                % (user.username, reqs))
        return reqs

    async def assertRequestCount(self, user, type_, count, pred=None):
        """Exactly ``count`` requests for ``user`` (waiting for them, then a moment more)."""
        if count:
            await async_wait_until(lambda: len(self.receiver.of(user.user_id, type_, pred))
                                   >= count)
        await asyncio.sleep(SETTLE)
        reqs = self.receiver.of(user.user_id, type_, pred)
        self.assertEqual(len(reqs), count, "%s requests for %s: %r"
                         % (type_, user.username, reqs))
        return reqs

    def assertWellFormed(self, req, user, event, signed=True):
        """One POST: the body, the headers and (with a secret) the signature."""
        self.assertEqual(req.method, "POST")
        self.assertEqual(req.path, HOOK_PATH)
        self.assertEqual(req.headers.get("content-type"), "application/json", req.header_list)
        names = [k.lower() for k, _ in req.header_list]
        for name in ("content-type", "x-chatd-id", "x-chatd-signature"):
            self.assertLessEqual(names.count(name), 1, req.header_list)
        self.assertIsInstance(req.json, dict, req.body[:200])
        self.assertEqual(set(req.json), {"id", "userId", "username", "devices", "event"},
                         req.json)
        self.assertEqual(req.id, req.json["id"], "X-Chatd-Id is not the body's id")
        self.assertRegex(req.id, r"^p[0-9]+-u%d$" % user.user_id)
        self.assertEqual(req.json["userId"], user.user_id)
        self.assertEqual(req.json["username"], user.username)
        self.assertEqual(req.json["devices"], [])
        self.assertEqual(req.json["event"], event)
        if signed:
            self.assertEqual(req.headers.get("x-chatd-signature"), signature_of(req.body),
                             "the signature is not the HMAC-SHA256 of the body")
        else:
            self.assertNotIn("x-chatd-signature", req.headers, req.header_list)


def message_for(user):
    """A predicate: a NOTIFY_MESSAGE request for ``user``."""
    return lambda req: req.user_id == user.user_id and (req.event or {}).get("type") == MSG


class DeliveryTests(WebhookCase):

    @async_test
    async def test_offline_member_gets_exactly_one_signed_post_per_message(self):
        o, e = self.user("o"), self.user("e")
        w, cw, cid = await self.offline_channel(o, e)
        ce = await self.connect(e)
        await self.enter(ce, cid)
        live = {}
        for i in range(3):
            ack = await self.write(cw, cid, "hook %d" % i)
            live[ack["messageSequence"]] = await ce.expect("NOTIFY_MESSAGE")
        reqs = await self.assertRequestCount(o, "NOTIFY_MESSAGE", 3)
        self.assertEqual(sorted(r.event["messageSequence"] for r in reqs), sorted(live))
        self.assertEqual(len({r.id for r in reqs}), 3, "two messages share an X-Chatd-Id")
        for req in reqs:
            with self.subTest(sequence=req.event["messageSequence"]):
                self.assertWellFormed(req, o, live[req.event["messageSequence"]])
                self.assertEqual(req.attempt, 1)
        await self.assertRequestCount(e, "NOTIFY_MESSAGE", 0)   # entered: seen live
        await self.assertRequestCount(w, "NOTIFY_MESSAGE", 0)   # the writer
        self.assertEqual(outbox(self.server, o.user_id), {}, "delivered rows left in the outbox")

    @async_test
    async def test_ask_invite_notify_accept_and_notify_join_are_posted_to_offline_users(self):
        inviter, invitee = self.user("i"), self.user("t")
        ci = await self.connect(inviter)
        await self.invite(ci, invitee)
        (req,) = await self.assertRequestCount(invitee, "ASK_INVITE", 1)
        self.assertWellFormed(req, invitee, {"type": "ASK_INVITE", "username": inviter.username})

        await self.disconnect(ci)                    # the inviter goes offline
        ct = await self.connect(invitee)
        await self.accept(ct, inviter)
        (req,) = await self.assertRequestCount(inviter, "NOTIFY_ACCEPT", 1)
        self.assertWellFormed(req, inviter, {"type": "NOTIFY_ACCEPT",
                                             "username": invitee.username})

        resp = await ct.request("CREATE_REQUEST", {"title": "hooked",
                                                   "participantUsernames": [inviter.username]})
        self.assertOk(resp, "CREATE_RESPONSE")
        cid = self.cid_of(resp)
        (req,) = await self.assertRequestCount(inviter, "NOTIFY_JOIN", 1)
        self.assertWellFormed(req, inviter, {"type": "NOTIFY_JOIN", "channelId": chan(cid),
                                             "title": "hooked"})
        await self.assertRequestCount(invitee, "NOTIFY_JOIN", 0)  # online


class UnsignedDeliveryTests(WebhookCase):
    secret = None

    @async_test
    async def test_without_a_secret_there_is_no_signature_header(self):
        o = self.user("o")
        w, cw, cid = await self.offline_channel(o)
        ack = await self.write(cw, cid, "unsigned")
        (req,) = await self.assertRequestCount(o, "NOTIFY_MESSAGE", 1)
        self.assertWellFormed(req, o, {
            "type": "NOTIFY_MESSAGE", "channelId": chan(cid),
            "messageSequence": ack["messageSequence"], "username": w.username,
            "content": "unsigned", "createdAt": ack["createdAt"], "replyTo": None,
            "version": ack["version"]}, signed=False)


@unittest.skipUnless(shutil.which("openssl"), "openssl (to make a certificate) not installed")
class TlsTests(WebhookCase):
    """An HTTPS receiver with a self-signed certificate, given as ca_file."""
    tls = "trusted"

    @async_test
    async def test_https_with_the_ca_file_delivers(self):
        o = self.user("o")
        w, cw, cid = await self.offline_channel(o)
        await self.write(cw, cid, "over tls")
        (req,) = await self.assertRequestCount(o, MSG, 1)
        self.assertTrue(req.delivered)
        self.assertEqual(req.event["content"], "over tls")
        self.assertEqual(req.headers.get("x-chatd-signature"), signature_of(req.body))


@unittest.skipUnless(shutil.which("openssl"), "openssl (to make a certificate) not installed")
class UntrustedTlsTests(WebhookCase):
    """The same receiver without ca_file: its certificate is refused, nothing sent."""
    tls = "untrusted"
    push = {"max_attempts": 2, "backoff_ms": 50, "backoff_max_ms": 100}

    @async_test
    async def test_an_untrusted_certificate_is_not_sent_to_and_dead_letters(self):
        o, w = self.user("o"), self.user("w")
        cid = await self.channel_with(w, o)  # its NOTIFY_JOIN is refused the same way
        cw = await self.connect(w)
        await self.write(cw, cid, "not over tls")
        rows = await async_wait_until(
            lambda: [r for r in outbox(self.server, o.user_id).values() if r[0]
                     and r[3]["event"]["type"] == MSG], 10)
        self.assertEqual(len(rows), 1, outbox(self.server, o.user_id))
        dead, attempts, last_error, body = rows[0]
        self.assertEqual(attempts, 2)
        self.assertRegex(last_error or "", r"(?i)certificate", rows[0])
        self.assertEqual(self.receiver.of(), [], "a request got through an untrusted TLS")


class RetryTests(WebhookCase):
    """backoff_ms 100: the n-th retry comes 100 * 2^(n-1) ms after the failure,
    less a random part of up to half."""

    BACKOFF = 0.100
    TIMEOUT = 0.300
    FAILURES = 4
    push = {"backoff_ms": 100, "backoff_max_ms": 10000, "max_attempts": 10, "timeout_ms": 300}

    async def fail_then_succeed(self, failure, fail_time):
        """``failure`` for the first FAILURES requests of one notification, then OK;
        assert the retries and their spacing. ``fail_time``: how long a failed
        request takes before chatd sees it failed."""
        o = self.user("o")
        w, cw, cid = await self.offline_channel(o)
        is_msg = message_for(o)
        sent_before = metric(self.server, "chatd_push_sent_total")
        retried_before = metric(self.server, "chatd_push_retried_total")
        self.receiver.plan = lambda req: (failure if is_msg(req)
                                          and req.attempt <= self.FAILURES else OK)
        await self.write(cw, cid, "retried")
        reqs = await self.wait_requests(o, self.FAILURES + 1, MSG, timeout=15)
        await asyncio.sleep(SETTLE)
        reqs = self.receiver.of(o.user_id, MSG)
        self.assertEqual(len(reqs), self.FAILURES + 1, "requests after the delivery: %r" % reqs)
        self.assertEqual({r.id for r in reqs}, {reqs[0].id}, "X-Chatd-Id changed on a retry")
        self.assertEqual({r.body for r in reqs}, {reqs[0].body}, "the body changed on a retry")
        self.assertEqual({r.headers.get("x-chatd-signature") for r in reqs},
                         {signature_of(reqs[0].body)})
        self.assertEqual([r.attempt for r in reqs], list(range(1, self.FAILURES + 2)))
        self.assertEqual([r.delivered for r in reqs], [False] * self.FAILURES + [True])
        gaps = [b.at - a.at for a, b in zip(reqs, reqs[1:])]
        waits = [g - fail_time for g in gaps]  # the backoff part of each gap
        figure("retry gaps (%s), ms" % failure[0],
               " ".join("%.0f" % (g * 1000) for g in gaps))
        for k, wait in enumerate(waits, 1):
            nominal = self.BACKOFF * 2 ** (k - 1)
            with self.subTest(retry=k):
                self.assertGreaterEqual(wait, nominal / 2 - 0.015,
                                        "retry %d after %.0f ms, nominal %.0f ms (gaps %r)"
                                        % (k, wait * 1000, nominal * 1000, gaps))
                self.assertLessEqual(wait, nominal + 1.0, "retry %d far too late: %r"
                                     % (k, gaps))
        # later waits are longer: with the jitter the n+2-th is at least twice
        # the n-th (compared two apart, so that a stall of the machine in one
        # wait does not read as a shorter next one)
        for a, b in zip(waits, waits[2:]):
            self.assertGreater(b, a, "retries do not back off: gaps %r" % gaps)
        self.assertGreater(waits[-1], 2 * waits[0], "retries do not back off: gaps %r" % gaps)
        self.assertEqual(metric(self.server, "chatd_push_sent_total") - sent_before, 1)
        self.assertEqual(metric(self.server, "chatd_push_retried_total") - retried_before,
                         self.FAILURES)
        rows = await async_wait_until(lambda: not outbox(self.server, o.user_id), 3)
        self.assertEqual(outbox(self.server, o.user_id), {}, "the delivered row stays: %r"
                         % rows)

    @async_test
    async def test_5xx_is_retried_with_growing_backoff_and_the_same_id(self):
        await self.fail_then_succeed(answer(503), 0.0)

    @async_test
    async def test_4xx_is_retried_too(self):
        await self.fail_then_succeed(answer(400), 0.0)

    @async_test
    async def test_a_receiver_that_never_answers_times_out_and_is_retried(self):
        await self.fail_then_succeed(HANG, self.TIMEOUT)

    @async_test
    async def test_a_connection_closed_without_an_answer_is_retried(self):
        # A kept-alive connection closed under a request is, to libcurl, one
        # that went stale while idle: it sends the request again at once on a
        # new one, within the same attempt. Fresh connections only, so that
        # each attempt is one request here.
        self.receiver.fresh_connections_only()
        await self.fail_then_succeed(CLOSE, 0.0)


class DeadLetterTests(WebhookCase):
    push = {"backoff_ms": 50, "backoff_max_ms": 100, "max_attempts": 3}

    @async_test
    async def test_after_max_attempts_the_row_is_dead_logged_and_counted(self):
        o = self.user("o")
        w, cw, cid = await self.offline_channel(o)
        is_msg = message_for(o)
        dead_before = metric(self.server, "chatd_push_dead_total")
        self.receiver.plan = lambda req: answer(500) if is_msg(req) else OK
        await self.write(cw, cid, "doomed")
        reqs = await self.wait_requests(o, 3, MSG)
        await asyncio.sleep(SETTLE)  # far past backoff_max_ms: no 4th attempt
        reqs = self.receiver.of(o.user_id, MSG)
        self.assertEqual([r.attempt for r in reqs], [1, 2, 3], reqs)
        self.assertEqual(len({r.id for r in reqs}), 1)
        gaps = [b.at - a.at for a, b in zip(reqs, reqs[1:])]
        for gap in gaps:  # the second would be 200 ms, but backoff_max_ms is 100
            self.assertLess(gap, 0.100 + 0.5, gaps)
        nid = reqs[0].id
        rows = await async_wait_until(
            lambda: (outbox(self.server, o.user_id).get(nid) or (0,))[0] == 1, 5)
        row = outbox(self.server, o.user_id).get(nid)
        self.assertTrue(rows and row, "no dead row %s in the outbox" % nid)
        dead, attempts, last_error, body = row
        self.assertEqual((dead, attempts), (1, 3), row)
        self.assertIn("500", last_error or "", row)
        self.assertEqual(body, reqs[0].json, "the dead row is not what was POSTed")
        line = "notification %s for user %d dead after 3 attempts" % (nid, o.user_id)
        self.assertIn(line, self.server.log_text())
        self.assertEqual(metric(self.server, "chatd_push_dead_total") - dead_before, 1)


class InFlightTests(WebhookCase):
    push = {"max_in_flight": 3}

    @async_test
    async def test_never_more_than_max_in_flight_requests_open(self):
        o = self.user("o")
        w, cw, cid = await self.offline_channel(o)
        is_msg = message_for(o)
        self.receiver.plan = lambda req: slow(0.3) if is_msg(req) else OK
        await asyncio.sleep(0.2)
        self.receiver.reset_max_open()
        for i in range(12):
            await self.write(cw, cid, "held %d" % i)
        reqs = await self.wait_requests(o, 12, MSG, delivered=True, timeout=15)
        figure("most requests open at once (max_in_flight 3)", str(self.receiver.max_open))
        self.assertEqual(self.receiver.max_open, 3,
                         "max_in_flight 3 not what bounds the requests open at once")
        self.assertEqual(len({r.id for r in reqs}), 12)


BACKLOG = 100     # pushes queued before the measure
IN_FLIGHT = 64    # plugins.push.max_in_flight, the default


class SlowReceiverTests(WebhookCase):
    MESSAGES = 200

    async def latencies(self, cw, ce, cid, tag, count=MESSAGES):
        """Seconds from each WRITE_MESSAGE sent to its NOTIFY_MESSAGE at ``ce``."""
        out = []
        for i in range(count):
            content = "%s %d" % (tag, i)
            rid = "lat-%s-%d" % (tag, i)
            t0 = time.monotonic()
            await cw.send({"type": "WRITE_MESSAGE", "requestId": rid, "channelId": chan(cid),
                           "content": content})
            await ce.expect("NOTIFY_MESSAGE", pred=lambda m: m.get("content") == content)
            out.append(time.monotonic() - t0)
            self.assertOk(await cw.reply(rid, "WRITE_MESSAGE"), "WRITE_MESSAGE_ACK")
        return out

    @async_test
    async def test_a_slow_receiver_does_not_slow_delivery_to_online_members(self):
        o, e = self.user("o"), self.user("e")
        w, cw, cid = await self.offline_channel(o, e)
        ce = await self.connect(e)
        await self.enter(ce, cid)
        await self.latencies(cw, ce, cid, "warm", 20)
        fast = await self.latencies(cw, ce, cid, "fast")
        await self.wait_requests(o, self.MESSAGES + 20, MSG, delivered=True)

        # every one of the max_in_flight (64) requests held 2 s, more queued
        self.receiver.plan = lambda req: slow(2.0)
        for i in range(BACKLOG):
            await self.write(cw, cid, "backlog %d" % i)
        full_up = await async_wait_until(lambda: self.receiver.open_now >= IN_FLIGHT, 5)
        self.assertTrue(full_up, "only %d pushes open at the slow receiver"
                        % self.receiver.open_now)
        slow_ = await self.latencies(cw, ce, cid, "slow")
        open_at_end = self.receiver.open_now
        p = {name: (percentile(v, 50) * 1000, percentile(v, 99) * 1000)
             for name, v in (("fast", fast), ("slow", slow_))}
        figure("NOTIFY_MESSAGE to an entered member, fast receiver (%d msgs)" % self.MESSAGES,
               "p50 %.1f ms, p99 %.1f ms" % p["fast"])
        figure("NOTIFY_MESSAGE to an entered member, receiver answering in 2 s",
               "p50 %.1f ms, p99 %.1f ms (%d pushes open at the receiver at the end)"
               % (p["slow"] + (open_at_end,)))
        self.assertGreaterEqual(open_at_end, IN_FLIGHT // 2, "the pushes did not stay stuck")
        self.assertLess(p["slow"][1], 2 * p["fast"][1] + 50,
                        "a slow receiver slows live delivery: %r" % p)


class PendingTests(WebhookCase):
    push = {"max_pending": 5, "backoff_ms": 1000, "backoff_max_ms": 2000, "max_attempts": 100}

    @async_test
    async def test_over_max_pending_the_oldest_are_dead_lettered_none_dropped(self):
        o = self.user("o")
        w, cw, cid = await self.offline_channel(o)
        is_msg = message_for(o)
        self.receiver.plan = lambda req: answer(503) if is_msg(req) else OK
        seqs = []
        for i in range(12):
            ack = await self.write(cw, cid, "pending %d" % i)
            seqs.append(ack["messageSequence"])
            # its first attempt failed before the next is queued: none is in flight
            await async_wait_until(lambda: len(self.receiver.of(o.user_id, MSG, pred=lambda r:
                                                                r.attempt == 1)) > i, 5)
            await asyncio.sleep(0.05)
        rows = await async_wait_until(
            lambda: sum(1 for r in outbox(self.server, o.user_id).values() if r[0]) == 7, 5)
        rows = outbox(self.server, o.user_id)
        self.assertEqual(len(rows), 12, "rows dropped from the outbox: %r" % sorted(rows))
        dead = {r[3]["event"]["messageSequence"]: r for r in rows.values() if r[0]}
        self.assertEqual(sorted(dead), seqs[:7], "not the oldest dead-lettered")
        for seq, row in dead.items():
            self.assertIn("max_pending", row[2] or "", row)
        self.assertIn("outbox full (max_pending)", self.server.log_text())

        self.receiver.plan = lambda req: OK
        await self.wait_requests(o, 5, MSG, delivered=True, timeout=15)
        await asyncio.sleep(SETTLE)
        delivered = {r.event["messageSequence"] for r in self.receiver.delivered(o.user_id, MSG)}
        self.assertEqual(delivered, set(seqs[7:]))
        rows = outbox(self.server, o.user_id)
        self.assertEqual(len(rows), 7, "delivered rows left, or dead rows gone: %r" % rows)
        kept = {r[3]["event"]["messageSequence"] for r in rows.values() if r[0]}
        self.assertEqual(kept | delivered, set(seqs), "a notification was lost")
        self.assertEqual(kept & delivered, set())


class DeviceTests(WebhookCase):

    async def register(self, client, platform, token):
        return await client.request("REGISTER_DEVICE_REQUEST",
                                    {"platform": platform, "token": token})

    async def register_ok(self, client, platform, token):
        resp = await self.register(client, platform, token)
        self.assertOk(resp, "REGISTER_DEVICE_RESPONSE")
        self.assertEqual((resp.get("platform"), resp.get("token")), (platform, token), resp)
        return resp

    async def unregister(self, client, token):
        return await client.request("UNREGISTER_DEVICE_REQUEST", {"token": token})

    async def devices_pushed(self, user, inviter_client):
        """The devices in the body of a push to ``user`` (offline): an ASK_INVITE."""
        before = len(self.receiver.of(user.user_id, "ASK_INVITE"))
        await self.invite(inviter_client, user)
        reqs = await self.wait_requests(user, before + 1, "ASK_INVITE")
        return sorted((d["platform"], d["token"]) for d in reqs[-1].json["devices"])

    def token(self, tag):
        return "%s-%s" % (tag, os.urandom(8).hex())

    @async_test
    async def test_register_and_unregister_answer_with_the_device(self):
        u = self.user("d")
        c = await self.connect(u)
        t = self.token("fcm")
        await self.register_ok(c, "fcm", t)
        await self.register_ok(c, "fcm", t)  # again: still one device
        resp = await self.unregister(c, t)
        self.assertOk(resp, "UNREGISTER_DEVICE_RESPONSE")
        self.assertEqual(resp.get("token"), t, resp)
        await self.assertRequestFails(c, "UNREGISTER_DEVICE_REQUEST", {"token": t}, "NOT_FOUND")

    @async_test
    async def test_bad_platform_or_token_is_refused_with_the_right_code(self):
        u = self.user("d")
        c = await self.connect(u)
        bad = [({"platform": "android", "token": "x"}, "BAD_REQUEST"),
               ({"platform": "FCM", "token": "x"}, "BAD_REQUEST"),
               ({"token": "x"}, "BAD_REQUEST"),
               ({"platform": 1, "token": "x"}, "BAD_REQUEST"),
               ({"platform": "web", "token": ""}, "BAD_REQUEST"),
               ({"platform": "web"}, "BAD_REQUEST"),
               ({"platform": "web", "token": 42}, "BAD_REQUEST"),
               ({"platform": "web", "token": "a\u0000b"}, "BAD_REQUEST"),
               ({"platform": "web", "token": "x" * 4097}, "LIMIT_EXCEEDED"),
               ({"platform": "web", "token": "\u00e9" * 2049}, "LIMIT_EXCEEDED")]  # 4098 bytes
        for fields, code in bad:
            with self.subTest(fields={k: (v[:20] if isinstance(v, str) else v)
                                      for k, v in fields.items()}):
                await self.assertRequestFails(c, "REGISTER_DEVICE_REQUEST", fields, code)
        for fields, code in [({}, "BAD_REQUEST"), ({"token": ""}, "BAD_REQUEST"),
                             ({"token": 7}, "BAD_REQUEST"),
                             ({"token": "x" * 4097}, "LIMIT_EXCEEDED")]:
            with self.subTest(unregister=fields):
                await self.assertRequestFails(c, "UNREGISTER_DEVICE_REQUEST", fields, code)
        longest = "t" * 4096
        await self.register_ok(c, "apns", longest)
        self.assertOk(await self.unregister(c, longest), "UNREGISTER_DEVICE_RESPONSE")

    @async_test
    async def test_devices_appear_in_the_posted_body(self):
        u, inviter = self.user("d"), self.user("i")
        c = await self.connect(u)
        devices = [("fcm", self.token("f")), ("apns", self.token("a")), ("web", self.token("w"))]
        for platform, token in devices:
            await self.register_ok(c, platform, token)
        await self.disconnect(c)
        ci = await self.connect(inviter)
        self.assertEqual(await self.devices_pushed(u, ci), sorted(devices))
        (req,) = self.receiver.of(u.user_id, "ASK_INVITE")
        self.assertEqual(req.headers.get("x-chatd-signature"), signature_of(req.body))

    @async_test
    async def test_a_token_moves_to_the_user_who_registers_it_last(self):
        a, b = self.user("a"), self.user("b")
        ca, cb = await self.connect(a), await self.connect(b)
        t, mine = self.token("moving"), self.token("kept")
        await self.register_ok(ca, "fcm", t)
        await self.register_ok(ca, "web", mine)
        await self.register_ok(cb, "apns", t)   # moves, with its new platform
        await self.assertRequestFails(ca, "UNREGISTER_DEVICE_REQUEST", {"token": t}, "NOT_FOUND")
        await self.disconnect(ca, cb)
        inviter = self.user("i")
        ci = await self.connect(inviter)
        self.assertEqual(await self.devices_pushed(a, ci), [("web", mine)])
        self.assertEqual(await self.devices_pushed(b, ci), [("apns", t)])
        cb = await self.connect(b)
        self.assertOk(await self.unregister(cb, t), "UNREGISTER_DEVICE_RESPONSE")

    @async_test
    async def test_at_most_max_devices_per_user(self):
        u, other = self.user("d"), self.user("o")
        c, co = await self.connect(u), await self.connect(other)
        tokens = [self.token("cap%d" % i) for i in range(10)]  # the default cap
        for t in tokens:
            await self.register_ok(c, "fcm", t)
        extra = self.token("over")
        await self.assertRequestFails(c, "REGISTER_DEVICE_REQUEST",
                                      {"platform": "fcm", "token": extra}, "LIMIT_EXCEEDED")
        await self.register_ok(c, "web", tokens[0])  # one already held: no more devices
        # another user's token refused at the cap stays theirs
        theirs = self.token("theirs")
        await self.register_ok(co, "fcm", theirs)
        await self.assertRequestFails(c, "REGISTER_DEVICE_REQUEST",
                                      {"platform": "fcm", "token": theirs}, "LIMIT_EXCEEDED")
        self.assertOk(await self.unregister(co, theirs), "UNREGISTER_DEVICE_RESPONSE")
        self.assertOk(await self.unregister(c, tokens[1]), "UNREGISTER_DEVICE_RESPONSE")
        await self.register_ok(c, "fcm", extra)
        await self.disconnect(c, co)
        ci = await self.connect(self.user("i"))
        self.assertEqual(await self.devices_pushed(u, ci),
                         sorted([("web", tokens[0]), ("fcm", extra)]
                                + [("fcm", t) for t in tokens[2:]]))

    @async_test
    async def test_logout_removes_that_sessions_tokens_only(self):
        u = self.user("d")
        second = self.server.login(u.username, u.password)
        c1 = await self.connect(u)
        c2 = await self.connect(u, token=second)
        t1, t2 = self.token("s1"), self.token("s2")
        await self.register_ok(c1, "fcm", t1)
        await self.register_ok(c2, "apns", t2)
        await self.disconnect(c1, c2)
        status, _, _ = self.server.logout(u.token)
        self.assertEqual(status, 204)
        await async_wait_until(lambda: db_count(
            self.server, "SELECT COUNT(*) FROM push_device WHERE user_id = %d" % u.user_id) == 1,
            5)
        ci = await self.connect(self.user("i"))
        self.assertEqual(await self.devices_pushed(u, ci), [("apns", t2)])

    @async_test
    async def test_unregistering_the_user_removes_their_devices(self):
        u = self.user("d")
        c = await self.connect(u)
        t = self.token("gone")
        await self.register_ok(c, "web", t)
        await self.disconnect(c)
        where = "SELECT COUNT(*) FROM push_device WHERE user_id = %d" % u.user_id
        self.assertEqual(db_count(self.server, where), 1)
        status, _, _ = self.server.unregister(u.token)
        self.assertEqual(status, 204)
        await async_wait_until(lambda: db_count(self.server, where) == 0, 5)
        self.assertEqual(db_count(self.server, where), 0, "a removed user's devices stay")
        other = self.user("n")
        co = await self.connect(other)
        await self.register_ok(co, "web", t)  # free to be anyone's now


class BadUrlTests(unittest.TestCase):

    def start_fails(self, url):
        data_dir = tempfile.mkdtemp(prefix="chatd-e2e-")
        try:
            sets = [] if url is None else ['plugins.push.url="%s"' % url]
            srv = Server(['plugins.push.backend="webhook"'] + sets, data_dir=data_dir)
            srv.data_dir = data_dir
            argv = Server.args(srv)
            with open(os.path.join(data_dir, "chatd.log"), "wb") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        cwd=data_dir)
                try:
                    code = proc.wait(START_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    code = None
            with open(os.path.join(data_dir, "chatd.log"), "rb") as f:
                text = f.read().decode("utf-8", "replace")
            self.assertIsNotNone(code, "chatd started with push url %r; log:\n%s" % (url, text))
            self.assertNotEqual(code, 0, text)
            self.assertNotIn("core: ready", text)
            self.assertRegex(text, r"error push: webhook: url must start with http:// or https://")
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)

    def test_a_url_that_is_not_http_is_refused_at_start_up(self):
        if cluster_size():
            self.skipTest("one process on the plain config")
        for url in ("ftp://127.0.0.1/hook", "127.0.0.1:8080/hook", "file:///etc/passwd"):
            with self.subTest(url=url):
                self.start_fails(url)

    def test_no_url_is_refused_at_start_up(self):
        if cluster_size():
            self.skipTest("one process on the plain config")
        self.start_fails(None)


# ---- durability ----------------------------------------------------------------


async def pipelined_writes(server, user, cid, n, window=32, kill_at=None, tag="d", stamps=None):
    """Write ``n`` messages on one WebSocket with up to ``window`` unanswered.

    Returns {sequence: content} of the acknowledged ones. With ``kill_at``,
    chatd is SIGKILLed the moment that many ACKs have arrived (before anything
    else is read), writes still in flight. With ``stamps`` (a dict), its
    "first_write" and "last_ack" get the time.monotonic() of the first write
    sent and of the last ACK read (tests/bench/push_webhook.py).
    """
    ws = await ws_connect(server, user.token, "query")
    acked, pending = {}, {}
    sem = asyncio.Semaphore(window)
    errors = []
    closed = connection_closed_types() + (ConnectionError, OSError)

    async def writer():
        for i in range(n):
            await sem.acquire()
            rid = "%s-%d" % (tag, i)
            pending[rid] = "%s message %d" % (tag, i)
            if stamps is not None and i == 0:
                stamps["first_write"] = time.monotonic()
            await ws.send(json.dumps({"type": "WRITE_MESSAGE", "requestId": rid,
                                      "channelId": chan(cid), "content": pending[rid]}))

    task = asyncio.ensure_future(writer())
    try:
        while len(acked) < n:
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
            except closed:
                if kill_at is None:
                    raise
                break
            if msg.get("type") == "WRITE_MESSAGE_ACK":
                acked[msg["messageSequence"]] = pending.pop(msg["requestId"])
                if stamps is not None:
                    stamps["last_ack"] = time.monotonic()
                sem.release()
                if len(acked) == kill_at:
                    server.kill9()
            elif msg.get("type") == "ERROR":
                errors.append(msg)
                sem.release()
                if len(errors) > 5:
                    break
    finally:
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError,) + closed:
            pass
        try:
            await asyncio.wait_for(ws.close(), 2)
        except Exception:
            pass
    if errors:
        raise AssertionError("write errors: %r" % errors[:5])
    return acked


class NodeEndpoint:
    """One node of a cluster, for ws_connect (bypassing the balancer)."""

    client_ssl = None  # the nodes of a test cluster listen in plain text

    def __init__(self, port):
        self.port = port

    def ws_uri(self, token=None, how="query"):
        return "ws://%s:%d%s?access_token=%s" % (HOST, self.port, WS_PATH, token)


class DurabilityTests(DomainTestCase):
    """Each test starts, kills and restarts its own chatd on its own data dir."""

    OFFLINE = 5
    MESSAGES = 100  # 500 notifications

    @classmethod
    def setUpClass(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        pass

    def setUp(self):
        self.data_dir = tempfile.mkdtemp(prefix="chatd-push-")
        self.server = None
        self.receiver = None
        self.passed = False

    def tearDown(self):
        if self.server is not None and self.server.alive():
            self.server._kill()
        if self.receiver is not None:
            self.receiver.stop()
        if self.passed and not os.environ.get("CHATD_E2E_KEEP"):
            shutil.rmtree(self.data_dir, ignore_errors=True)
        elif not self.passed:
            sys.stderr.write("push durability data dir kept at %s\n" % self.data_dir)

    def sets(self, port, **more):
        push = {"backoff_ms": 200, "backoff_max_ms": 1000, "max_attempts": 1000,
                "recover_after_ms": 500}
        if push_store_is_mariadb():
            # several nodes: rows of a dead node are taken over once its lease ran out
            push["lease_ms"] = 1000
        push.update(more)
        return [ADDR_LIMIT_SET] + webhook_sets("http://%s:%d%s" % (HOST, port, HOOK_PATH),
                                               **push)

    def start(self, port, extra_sets=(), **more):
        self.server = Server(self.sets(port, **more) + list(extra_sets),
                             data_dir=self.data_dir).start()
        return self.server

    async def setup_channel(self):
        w = self.server.new_user("w")
        offline = [self.server.new_user("o") for _ in range(self.OFFLINE)]
        cid = await self.channel_with(w, *offline)
        # this test's rows and intents (on MariaDB the suite shares one database)
        users = ", ".join(str(u.user_id) for u in offline)
        self.rows_sql = "SELECT COUNT(*) FROM push_outbox WHERE user_id IN (%s)" % users
        self.intents_sql = ("SELECT COUNT(*) FROM push_intent WHERE channel_id = %d"
                            " OR user_id IN (%s)" % (cid, users))
        return w, offline, cid

    def rows(self, where=""):
        return db_count(self.server, self.rows_sql + where)

    def intents(self):
        return db_count(self.server, self.intents_sql)

    def assertEverythingDelivered(self, receiver, offline, acked):
        """After dedup by X-Chatd-Id: exactly one notification per (member, message)."""
        users = {u.user_id: u for u in offline}
        want = {(uid, seq) for uid in users for seq in acked}
        reqs = [r for r in receiver.delivered(type_=MSG) if r.user_id in users]
        by_id = {}
        for r in reqs:
            pair = (r.user_id, r.event["messageSequence"])
            self.assertRegex(r.id, r"^p[0-9]+-u%d$" % r.user_id)
            self.assertEqual(r.json["id"], r.id)
            self.assertEqual(r.event["content"], acked[pair[1]], r.json)
            by_id.setdefault(r.id, set()).add(pair)
        twice = {i: p for i, p in by_id.items() if len(p) > 1}
        self.assertEqual(twice, {}, "one id for several notifications")
        got = [next(iter(p)) for p in by_id.values()]
        self.assertEqual(len(got), len(set(got)), "one notification under several ids")
        missing = want - set(got)
        extra = set(got) - want
        self.assertEqual((len(missing), len(extra)), (0, 0),
                         "missing %r, extra %r" % (sorted(missing)[:10], sorted(extra)[:10]))
        self.assertEqual(len(by_id), len(want))
        return len(reqs) - len(by_id)  # duplicates

    def wait_delivered(self, receiver, offline, count, timeout=30):
        ids = {u.user_id for u in offline}
        return wait_until(lambda: len({r.id for r in receiver.delivered(type_=MSG)
                                       if r.user_id in ids}) >= count, timeout, 0.1)

    @async_test
    async def test_notifications_of_a_receiver_down_survive_kill9(self):
        port = free_port()  # nobody listens there yet: connections are refused
        self.start(port)
        w, offline, cid = await self.setup_channel()
        want = self.OFFLINE * self.MESSAGES
        acked = await pipelined_writes(self.server, w, cid, self.MESSAGES, tag="down")
        stored = wait_until(lambda: self.rows(" AND dead = 0") >= want and self.intents() == 0,
                            20, 0.1)
        self.assertTrue(stored, "the outbox does not hold the %d notifications" % want)
        time.sleep(0.5)  # some retries refused meanwhile
        self.server.kill9()
        self.receiver = Receiver(port).start()
        self.start(port)
        t0 = time.monotonic()
        self.wait_delivered(self.receiver, offline, want)
        took = time.monotonic() - t0
        time.sleep(SETTLE)
        dups = self.assertEverythingDelivered(self.receiver, offline, acked)
        figure("receiver down, kill -9, restart: %d notifications delivered" % want,
               "in %.1f s after the restart, %d delivered twice" % (took, dups))
        left = wait_until(lambda: self.rows() == 0, 10, 0.1)
        self.assertTrue(left, "%d delivered rows stay in the outbox" % self.rows())
        self.server.stop()
        self.passed = True

    @async_test
    async def test_a_live_node_takes_over_the_rows_of_a_dead_one(self):
        if not cluster_size():
            self.skipTest("several nodes (tests/cluster/e2e_cluster.py)")
        port = free_port()  # the receiver is down while the rows are written
        self.start(port)
        w, offline, cid = await self.setup_channel()
        first = NodeEndpoint(self.server.cluster.ports[0])  # writes and their pushes: node 1
        acked = await pipelined_writes(first, w, cid, self.MESSAGES, tag="node")
        want = self.OFFLINE * self.MESSAGES
        stored = wait_until(lambda: self.rows(" AND dead = 0") >= want and self.intents() == 0,
                            20, 0.1)
        self.assertTrue(stored, "the outbox does not hold the %d notifications" % want)
        self.server.cluster.kill9(0)
        self.receiver = Receiver(port).start()
        t0 = time.monotonic()
        self.wait_delivered(self.receiver, offline, want)
        took = time.monotonic() - t0
        time.sleep(SETTLE)
        dups = self.assertEverythingDelivered(self.receiver, offline, acked)
        figure("node 1 killed with %d rows, lease_ms 1000" % want,
               "node 2 delivered them in %.1f s, %d twice" % (took, dups))
        self.assertIn("took over", self.server.cluster.nodes[1].current_log())
        left = wait_until(lambda: self.rows() == 0, 10, 0.1)
        self.assertTrue(left, "%d delivered rows stay in the outbox" % self.rows())
        self.server.stop()  # node 2 exits 0; node 1 was killed on purpose
        self.passed = True

    @async_test
    async def test_attempts_count_across_a_restart_and_dead_rows_stay_dead(self):
        self.receiver = Receiver().start()
        settings = {"max_attempts": 4, "backoff_ms": 300, "backoff_max_ms": 300}
        self.start(self.receiver.port, **settings)
        w, offline, cid = await self.setup_channel()
        ids = {u.user_id for u in offline}
        delivered = wait_until(lambda: len(self.receiver.delivered(type_="NOTIFY_JOIN"))
                               >= len(offline) and self.rows() == 0)
        self.assertTrue(delivered, "the NOTIFY_JOIN pushes were not delivered")
        self.receiver.plan = lambda req: answer(500)
        await pipelined_writes(self.server, w, cid, 1, tag="tries")
        want = len(offline)
        twice = wait_until(lambda: self.rows(" AND attempts = 2 AND dead = 0") == want
                           and self.receiver.open_now == 0, 10, 0.01)
        self.assertTrue(twice, "the rows did not reach 2 attempts")
        self.server.kill9()  # 150 ms or more before the third attempts
        self.start(self.receiver.port, **settings)
        dead = wait_until(lambda: self.rows(" AND dead = 1 AND attempts = 4") == want, 15, 0.1)
        self.assertTrue(dead, "not dead after 4 attempts in all: %r" % db_rows(
            self.server, "SELECT id, dead, attempts FROM push_outbox WHERE user_id IN (%s)"
            % ", ".join(map(str, ids))))
        self.server.stop()
        self.start(self.receiver.port, **settings)  # dead rows are not taken over
        time.sleep(SETTLE + 0.5)
        tries = {}
        for r in self.receiver.of(type_=MSG, pred=lambda r: r.user_id in ids):
            tries[r.id] = tries.get(r.id, 0) + 1
        self.assertEqual(len(tries), want)
        self.assertEqual(set(tries.values()), {4}, "requests per notification: %r" % tries)
        self.server.stop()
        self.passed = True

    @async_test
    async def test_requests_open_at_a_clean_stop_are_delivered_after_the_restart(self):
        self.receiver = Receiver().start()
        self.receiver.plan = lambda req: HANG
        self.start(self.receiver.port)
        w, offline, cid = await self.setup_channel()
        acked = await pipelined_writes(self.server, w, cid, 20, tag="stop")
        open_ = wait_until(lambda: self.receiver.open_now >= IN_FLIGHT)  # every slot taken
        self.assertTrue(open_, "the requests did not reach the receiver")
        n_open = self.receiver.open_now
        t0 = time.monotonic()
        self.server.stop()  # exit code 0, asserted
        took = time.monotonic() - t0
        self.assertLess(took, 5, "a stop waits for requests that hang")
        self.receiver.plan = lambda req: OK
        self.start(self.receiver.port)
        self.wait_delivered(self.receiver, offline, self.OFFLINE * len(acked))
        time.sleep(SETTLE)
        self.assertEverythingDelivered(self.receiver, offline, acked)
        figure("clean stop with %d requests open" % n_open,
               "stopped in %.2f s; every notification delivered after the restart" % took)
        self.server.stop()
        self.passed = True

    @async_test
    async def test_intents_of_writes_acknowledged_just_before_kill9_are_recovered(self):
        # Killed while writes are in flight: intents committed with their
        # messages but not yet turned into outbox rows are recovered after the
        # restart, for every message stored (acknowledged or not). Whether a
        # kill finds intents left is a race: up to 3 rounds until one does.
        # Commits gather for up to 20 ms, so the job that settles a batch's
        # intents commits a while after that batch's acks: a kill at an ack
        # lands in between (a batch's writes and their settling are quick).
        gather = ["storage.batch_wait_us=20000"]
        self.receiver = Receiver().start()
        self.start(self.receiver.port, gather)
        w, offline, cid = await self.setup_channel()
        acked, intents_seen = {}, 0
        for round_ in range(1, 4):
            acked.update(await pipelined_writes(self.server, w, cid, self.MESSAGES * 2,
                                                window=64, kill_at=self.MESSAGES,
                                                tag="kill%d" % round_))
            self.assertFalse(self.server.alive())
            intents, rows = self.intents(), self.rows()
            figure("kill -9 at the %d-th ack of round %d, writes in flight"
                   % (self.MESSAGES, round_),
                   "%d intents not yet in the outbox, %d rows in it, %d delivered"
                   % (intents, rows, len(self.receiver.delivered_ids())))
            intents_seen += intents
            self.start(self.receiver.port, gather)
            if intents_seen:
                break
        self.assertGreater(intents_seen, 0, "no kill came before the outbox was written")
        c = await self.connect(w)
        stored = {m["messageSequence"]: m["content"] for m in await self.fetch_all(c, cid)}
        lost = {seq: content for seq, content in acked.items() if stored.get(seq) != content}
        self.assertEqual(lost, {}, "acknowledged messages lost")
        want = self.OFFLINE * len(stored)
        self.wait_delivered(self.receiver, offline, want)
        time.sleep(SETTLE)
        dups = self.assertEverythingDelivered(self.receiver, offline, stored)
        figure("after the restart", "%d messages stored, %d notifications, %d delivered twice"
               % (len(stored), want, dups))
        self.assertEqual(self.intents(), 0)
        left = wait_until(lambda: self.rows() == 0, 10, 0.1)
        self.assertTrue(left, "%d delivered rows stay in the outbox" % self.rows())
        self.server.stop()
        self.passed = True


def print_figures():
    if FIGURES:
        sys.stderr.write("\nfigures (quick runs on a shared machine):\n")
        for what, text in FIGURES:
            sys.stderr.write("  [figure] %s: %s\n" % (what, text))


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        print_figures()
