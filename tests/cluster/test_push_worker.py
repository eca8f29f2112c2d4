#!/usr/bin/python3
"""chatd-push, the push worker, against a real Redis and a real HTTP receiver
on 127.0.0.1, both started here: entries shaped like the chat nodes' are fed
to the stream with XADD (and, once, a real chatd with the redis push backend
adds them), and the receiver records what reaches it.

Covered: the body, X-Chatd-Id and X-Chatd-Signature; two workers sharing a
stream; a worker killed with SIGKILL while it holds entries (the other takes
them over: every entry delivered, none left pending); a receiver that fails
(retries with the same id, then the dead stream, attempts counted across
workers); Redis restarted mid-run, and Redis paused (SIGSTOP); SIGTERM; bad
settings.

Environment: CHATD_PUSH_BIN (default build/push/chatd-push), CHATD_BIN and
CHATD_CONF / CHATD_CLUSTER_CONF (as for the other suites); CHATD_E2E_KEEP=1
keeps the workers' logs (their folder is printed).
Exit status 77 (skipped) when redis-server is not installed.
"""

import asyncio
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from backends import HOST, Redis, child_kwargs  # noqa: E402

SECRET = "push-test-secret-6d1f"
GROUP = "chatd-push"

# Short times, so that the whole suite stays well under a minute.
FAST = [
    "plugins.push.claim_after_ms=1000", "plugins.push.backoff_ms=50",
    "plugins.push.backoff_max_ms=200", "plugins.push.block_ms=500",
    "plugins.push.command_timeout_ms=2000", "plugins.push.stats_interval_ms=1000",
    "plugins.push.shutdown_timeout_ms=3000", "plugins.push.timeout_ms=3000",
    "redis.reconnect_max_ms=300",
]


def push_bin():
    return os.environ.get("CHATD_PUSH_BIN") or os.path.join(REPO_ROOT, "build", "push",
                                                            "chatd-push")


def cluster_conf():
    return (os.environ.get("CHATD_CLUSTER_CONF")
            or os.path.join(REPO_ROOT, "etc", "chatd-cluster.conf"))


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("%s: not within %.1f s" % (what, timeout))


# ---- Redis, spoken directly ------------------------------------------------------


class RedisError(Exception):
    pass


class Resp:
    """A minimal RESP2 client: cmd() sends one command and returns its answer."""

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.buf = b""

    def close(self):
        self.sock.close()

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        n = int(rest)
        if n < 0:
            return None
        if kind == b"*":
            return [self._reply() for _ in range(n)]
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data.decode("utf-8", "replace")


def fields(flat):
    return dict(zip(flat[0::2], flat[1::2]))


def feed(r, stream, n, tag):
    """XADD n entries shaped like a chat node's; returns {id: body}."""
    out = {}
    for i in range(n):
        nid = "p%d-u%d-%s" % (i + 1, 100 + i % 7, tag)
        event = {"type": "NOTIFY_MESSAGE", "channelId": "c1", "content": "hello %d" % i}
        body = json.dumps({"id": nid, "userId": 100 + i % 7, "username": "user%d" % (i % 7),
                           "devices": [{"platform": "fcm", "token": "tok-%d" % i}],
                           "event": event}, separators=(",", ":"))
        r.cmd("XADD", stream, "MAXLEN", "~", "1000000", "*", "id", nid,
              "userId", str(100 + i % 7), "username", "user%d" % (i % 7),
              "event", json.dumps(event, separators=(",", ":")), "body", body)
        out[nid] = body
    return out


def pending(r, stream, consumer=None):
    """Entries pending in the group (for one consumer, or all)."""
    try:
        if consumer is None:
            return int(r.cmd("XPENDING", stream, GROUP)[0])
        return len(r.cmd("XPENDING", stream, GROUP, "-", "+", "1000", consumer))
    except RedisError:
        return 0  # no group yet


# ---- the receiver ----------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 recording each POST; ``status`` (an int) and
    ``delay`` (seconds before answering) say how it answers."""

    def __init__(self, status=204, delay=0.0):
        self.status, self.delay = status, delay
        self.lock = threading.Lock()
        self.requests = []   # (id, body, signature), as they arrive
        self.delivered = []  # ids answered 2xx, the answer written
        self.now = self.most = 0  # requests being answered: now, and at most at once
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                nid = self.headers.get("X-Chatd-Id")
                with receiver.lock:
                    receiver.requests.append((nid, body.decode("utf-8"),
                                              self.headers.get("X-Chatd-Signature")))
                    status, delay = receiver.status, receiver.delay
                    receiver.now += 1
                    receiver.most = max(receiver.most, receiver.now)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.wfile.flush()
                except OSError:
                    return  # the worker went away
                finally:
                    with receiver.lock:
                        receiver.now -= 1
                if 200 <= status < 300:
                    with receiver.lock:
                        receiver.delivered.append(nid)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a worker killed mid-request

        self.server = Server((HOST, 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://%s:%d/push" % (HOST, self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self):
        with self.lock:
            return [r[0] for r in self.requests]

    def delivered_set(self):
        with self.lock:
            return set(self.delivered)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---- the worker ------------------------------------------------------------------

_STATS_RE = re.compile(r"stats at exit: read (\d+), claimed (\d+), delivered (\d+), "
                       r"failed (\d+), dead (\d+)")


class Worker:
    """One chatd-push process on the cluster config, its log in a file."""

    def __init__(self, case, stream, receiver, consumer, sets=(), conf=None):
        self.log_path = os.path.join(case.dir, "%s.log" % consumer)
        self.consumer = consumer
        self.stream = stream
        argv = [push_bin(), "-c", conf or cluster_conf()]
        for item in ["redis.host=\"%s\"" % HOST, "redis.port=%d" % case.redis.port,
                     "plugins.push.stream=\"%s\"" % stream,
                     "plugins.push.url=\"%s\"" % receiver.url,
                     "plugins.push.secret=\"%s\"" % SECRET,
                     "plugins.push.consumer=\"%s\"" % consumer] + FAST + list(sets):
            argv += ["--set", item]
        self.argv = argv
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, **child_kwargs())
        case.addCleanup(self.kill9)

    def wait_ready(self, timeout=10):
        wait_until(lambda: "in the group" in self.text() or self.proc.poll() is not None,
                   timeout, "%s ready" % self.consumer)
        if self.proc.poll() is not None:
            raise AssertionError("%s exited with %s:\n%s"
                                 % (self.consumer, self.proc.returncode, self.text()))
        return self

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.log.close()

    def terminate(self, timeout=10):
        """SIGTERM; returns (exit status, seconds it took)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError("%s still running %d s after SIGTERM:\n%s"
                                 % (self.consumer, timeout, self.text()))
        self.log.close()
        return code, time.monotonic() - t0

    def stats(self):
        m = _STATS_RE.search(self.text())
        if not m:
            raise AssertionError("no stats line in the log of %s:\n%s"
                                 % (self.consumer, self.text()))
        keys = ("read", "claimed", "delivered", "failed", "dead")
        return dict(zip(keys, map(int, m.groups())))


REDIS = None


class PushWorkerCase(unittest.TestCase):
    def setUp(self):
        self.redis = REDIS
        self.dir = tempfile.mkdtemp(prefix="chatd-push-test-")
        if os.environ.get("CHATD_E2E_KEEP"):
            sys.stderr.write("  [logs] %s\n" % self.dir)
        else:
            self.addCleanup(shutil.rmtree, self.dir, True)
        self.stream = "chatd:push:%s" % os.urandom(4).hex()
        self.r = Resp(self.redis.port)
        self.addCleanup(lambda: self.r.close())

    def receiver(self, **kw):
        rc = Receiver(**kw)
        self.addCleanup(rc.stop)
        return rc

    def worker(self, receiver, consumer, sets=(), conf=None):
        return Worker(self, self.stream, receiver, consumer, sets, conf)

    def assertStopsCleanly(self, w, within=5.0):
        code, took = w.terminate()
        self.assertEqual(code, 0, w.text())
        self.assertLess(took, within, w.text())
        self.assertNotIn(SECRET, w.text())
        return took


class SettingsTests(unittest.TestCase):

    def run_push(self, *sets, check=True):
        argv = [push_bin(), "-c", cluster_conf(), "--set", 'plugins.push.url="http://%s:9/x"' % HOST]
        for s in sets:
            argv += ["--set", s]
        if check:
            argv.append("--check-config")
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)

    def test_the_cluster_config_with_a_url_is_valid(self):
        res = self.run_push()
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn(b"configuration is valid", res.stdout)

    def test_bad_settings_name_the_setting_and_exit_2(self):
        cases = [
            ("plugins.push.max_in_flight=0", b"plugins.push.max_in_flight"),
            ("plugins.push.claim_after_ms=\"soon\"", b"plugins.push.claim_after_ms"),
            ("plugins.push.backoff_max_ms=10", b"plugins.push.backoff_max_ms"),
            ("plugins.push.block_ms=20000", b"plugins.push.block_ms"),
            ("plugins.push.url=\"ftp://x\"", b"plugins.push.url"),
            ("plugins.push.backend=\"log\"", b"plugins.push.backend"),
            ("plugins.push.dead_stream=\"chatd:push\"", b"plugins.push.dead_stream"),
            ("plugins.push.delete_delivered=3", b"plugins.push.delete_delivered"),
            ("redis.host=\"\"", b"redis.host"),
            ("redis.port=0", b"redis.port"),
            ("nosuch.setting=1", b"nosuch"),
            ("plugins.push.claim_afer_ms=5", b"plugins.push.claim_afer_ms"),
        ]
        for setting, named in cases:
            with self.subTest(setting=setting):
                for check in (True, False):  # the same with or without --check-config
                    res = self.run_push(setting, check=check)
                    self.assertEqual(res.returncode, 2, res)
                    self.assertIn(named, res.stderr)
                    self.assertEqual(len(res.stderr.strip().split(b"\n")), 1, res.stderr)


class DeliveryTests(PushWorkerCase):

    def test_body_id_and_signature_as_the_webhook_backend_sends_them(self):
        rc = self.receiver()
        w = self.worker(rc, "one").wait_ready()
        fed = feed(self.r, self.stream, 5, "sig")
        wait_until(lambda: rc.delivered_set() == set(fed), 10, "all 5 delivered")
        with rc.lock:
            for nid, body, sig in rc.requests:
                with self.subTest(id=nid):
                    self.assertEqual(body, fed[nid])
                    want = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
                    self.assertEqual(sig, "sha256=" + want)
        # acknowledged and deleted: nothing pending, nothing kept
        wait_until(lambda: pending(self.r, self.stream) == 0, 5, "no entry pending")
        wait_until(lambda: self.r.cmd("XLEN", self.stream) == 0, 5, "delivered entries deleted")
        wait_until(lambda: "stats: read 5," in w.text(), 5, "a stats line in the log")
        self.assertStopsCleanly(w)
        self.assertEqual(w.stats()["delivered"], 5)
        # a clean exit with nothing pending leaves the group's consumer list
        self.assertEqual(self.r.cmd("XINFO", "CONSUMERS", self.stream, GROUP), [])

    def test_entries_added_before_the_first_worker_are_delivered(self):
        rc = self.receiver()
        fed = feed(self.r, self.stream, 3, "early")  # the stream exists, the group not yet
        w = self.worker(rc, "late").wait_ready()
        wait_until(lambda: rc.delivered_set() == set(fed), 10, "the 3 early entries delivered")
        self.assertStopsCleanly(w)

    def test_two_workers_share_the_entries(self):
        rc = self.receiver(delay=0.01)
        sets = ["plugins.push.max_in_flight=4"]
        a = self.worker(rc, "a", sets)
        b = self.worker(rc, "b", sets)
        a.wait_ready(), b.wait_ready()
        fed = feed(self.r, self.stream, 200, "share")
        wait_until(lambda: rc.delivered_set() == set(fed), 30, "all 200 delivered")
        wait_until(lambda: pending(self.r, self.stream) == 0, 5, "no entry pending")
        self.assertStopsCleanly(a)
        self.assertStopsCleanly(b)
        sa, sb = a.stats(), b.stats()
        self.assertGreater(sa["delivered"], 0, (sa, sb))
        self.assertGreater(sb["delivered"], 0, (sa, sb))
        self.assertGreaterEqual(sa["delivered"] + sb["delivered"], 200)
        self.assertEqual(len(rc.ids()), 200, "one POST per entry when nothing fails")
        self.assertLessEqual(rc.most, 8, "max_in_flight 4 per worker")

    def test_a_worker_killed_mid_stream_loses_nothing(self):
        rc = self.receiver(delay=0.3)  # slow: entries stay in flight
        sets = ["plugins.push.max_in_flight=5"]
        a = self.worker(rc, "doomed", sets).wait_ready()
        b = self.worker(rc, "survivor", sets).wait_ready()
        fed = feed(self.r, self.stream, 40, "kill")
        wait_until(lambda: pending(self.r, self.stream, "doomed") > 0 and len(rc.ids()) > 2, 10,
                   "the doomed worker holding entries")
        held = pending(self.r, self.stream, "doomed")
        a.kill9()
        self.assertGreater(held, 0)
        wait_until(lambda: rc.delivered_set() == set(fed), 30, "all 40 delivered")
        wait_until(lambda: pending(self.r, self.stream) == 0, 10, "no entry pending")
        self.assertEqual(set(rc.ids()), set(fed), "exactly the set fed, after dedup by id")
        self.assertLessEqual(rc.most, 10, "max_in_flight 5 per worker")
        self.assertStopsCleanly(b)
        self.assertGreater(b.stats()["claimed"], 0, b.text())


class FailureTests(PushWorkerCase):

    def dead_entries(self):
        return [(eid, fields(f)) for eid, f in self.r.cmd("XRANGE", self.stream + ":dead", "-",
                                                            "+")]

    def test_a_failing_receiver_gets_retries_then_the_dead_stream_has_it(self):
        rc = self.receiver(status=500)
        w = self.worker(rc, "retrier", ["plugins.push.max_attempts=3"]).wait_ready()
        (nid, body), = feed(self.r, self.stream, 1, "dead").items()
        wait_until(lambda: self.dead_entries(), 10, "a dead letter")
        self.assertEqual(rc.ids(), [nid] * 3, "3 attempts, each with the same X-Chatd-Id")
        (_, dead), = self.dead_entries()
        self.assertEqual(dead["id"], nid)
        self.assertEqual(dead["body"], body)
        self.assertEqual(dead["error"], "HTTP 500")
        self.assertEqual(dead["attempts"], "3")
        self.assertEqual(dead["consumer"], "retrier")
        wait_until(lambda: pending(self.r, self.stream) == 0, 5, "no longer pending")
        time.sleep(0.3)
        self.assertEqual(len(rc.ids()), 3, "no attempt after the dead letter")
        self.assertEqual(len(re.findall(r"dead after 3 attempts: HTTP 500", w.text())), 1,
                         w.text())
        self.assertStopsCleanly(w)
        self.assertEqual(w.stats()["dead"], 1)

    def test_attempts_add_up_across_workers(self):
        rc = self.receiver(status=503)
        attempts = ["plugins.push.max_attempts=3"]
        first = self.worker(rc, "first", attempts + ["plugins.push.backoff_ms=20000",
                                                     "plugins.push.backoff_max_ms=20000"])
        first.wait_ready()
        (nid, _), = feed(self.r, self.stream, 1, "across").items()
        wait_until(lambda: len(rc.ids()) == 1, 10, "the first attempt")
        first.kill9()  # while it waits for its retry
        second = self.worker(rc, "second", attempts).wait_ready()
        wait_until(lambda: self.dead_entries(), 15, "a dead letter")
        (_, dead), = self.dead_entries()
        self.assertEqual(dead["attempts"], "3")
        self.assertEqual(dead["consumer"], "second")
        self.assertEqual(rc.ids(), [nid] * 3, "1 attempt by the first worker, 2 by the second")
        self.assertStopsCleanly(second)
        self.assertEqual(second.stats()["claimed"], 1)

    def test_redis_restarted_mid_run(self):
        rc = self.receiver(delay=0.3)
        w = self.worker(rc, "steady").wait_ready()
        before = feed(self.r, self.stream, 5, "before")
        wait_until(lambda: len(rc.ids()) > 0, 10, "POSTs under way")
        self.r.close()
        self.redis.restart()  # no persistence: the stream and the group are gone
        self.r = Resp(self.redis.port)
        wait_until(lambda: rc.delivered_set() >= set(before), 10,
                   "the entries in flight delivered")
        after = feed(self.r, self.stream, 10, "after")
        wait_until(lambda: rc.delivered_set() >= set(after), 15,
                   "entries added after the restart delivered")
        wait_until(lambda: pending(self.r, self.stream) == 0, 5, "no entry pending")
        text = w.text()
        self.assertEqual(text.count("connection lost"), 1, text)
        self.assertEqual(text.count("connected again"), 1, text)
        self.assertEqual(text.count("made again"), 1, text)  # the group, lost with the data
        self.assertStopsCleanly(w)

    def test_a_redis_that_stops_answering_is_left_and_found_again(self):
        rc = self.receiver()
        w = self.worker(rc, "patient", ["plugins.push.command_timeout_ms=500"]).wait_ready()
        first = feed(self.r, self.stream, 3, "pre")
        wait_until(lambda: rc.delivered_set() >= set(first), 10, "delivered before")
        self.redis.proc.send_signal(signal.SIGSTOP)  # connections open, nothing answered
        try:
            wait_until(lambda: "no answer in time" in w.text(), 5, "the silence noticed")
            time.sleep(1.0)  # connections made meanwhile get no answer either
        finally:
            self.redis.proc.send_signal(signal.SIGCONT)
        after = feed(self.r, self.stream, 5, "post")
        wait_until(lambda: rc.delivered_set() >= set(after), 10, "delivered after")
        text = w.text()
        self.assertEqual(text.count("connection lost"), 1, text)
        self.assertEqual(text.count("connected again"), 1, text)
        self.assertStopsCleanly(w)


class ShutdownTests(PushWorkerCase):

    def test_sigterm_when_idle_exits_0_at_once(self):
        w = self.worker(self.receiver(), "idle").wait_ready()
        took = self.assertStopsCleanly(w, within=1.5)
        sys.stderr.write("  [figure] idle SIGTERM to exit: %.0f ms\n" % (took * 1000))

    def test_sigterm_finishes_the_posts_under_way_and_leaves_the_rest(self):
        rc = self.receiver(delay=1.0)
        sets = ["plugins.push.max_in_flight=4"]
        w = self.worker(rc, "leaving", sets).wait_ready()
        fed = feed(self.r, self.stream, 12, "term")
        wait_until(lambda: len(rc.ids()) >= 4, 10, "4 POSTs under way")
        took = self.assertStopsCleanly(w, within=3.0)
        first = rc.delivered_set()
        self.assertEqual(len(first), 4, "the POSTs under way finished")
        self.assertEqual(rc.most, 4, "max_in_flight 4")
        self.assertEqual(pending(self.r, self.stream, "leaving"), 0, "and acknowledged")
        sys.stderr.write("  [figure] SIGTERM with 4 POSTs of 1 s under way: %.0f ms\n"
                         % (took * 1000))
        rc.delay = 0.0
        other = self.worker(rc, "other", sets).wait_ready()
        wait_until(lambda: rc.delivered_set() == set(fed), 15, "the rest by another worker")
        wait_until(lambda: pending(self.r, self.stream) == 0, 5, "no entry pending")
        self.assertStopsCleanly(other)


class EndToEndTests(PushWorkerCase):
    """A real chatd (SQLite store) with plugins.push.backend = "redis": a
    notification travels chatd -> Redis -> chatd-push -> receiver."""

    def test_a_notification_from_chatd_reaches_the_receiver(self):
        from harness import Server, ws_connect, ws_recv, ws_send

        rc = self.receiver()
        sets = ["redis.host=\"%s\"" % HOST, "redis.port=%d" % self.redis.port,
                "plugins.push.backend=\"redis\"", "plugins.push.stream=\"%s\"" % self.stream]
        srv = Server(extra_sets=sets).start()
        self.addCleanup(srv.stop)
        w = self.worker(rc, "e2e", sets, conf=os.environ.get("CHATD_CONF")).wait_ready()
        inviter, target = srv.new_user("inv"), srv.new_user("tgt")

        async def invite():
            ws = await ws_connect(srv, inviter.token)
            try:
                await ws_send(ws, {"type": "INVITE_REQUEST", "requestId": "r1",
                                   "userInviteCode": target.invite_code})
                while True:
                    msg = await ws_recv(ws, 5.0)
                    if msg.get("requestId") == "r1":
                        return msg
            finally:
                await ws.close()

        resp = asyncio.run(invite())
        self.assertEqual(resp.get("type"), "INVITE_RESPONSE", resp)
        wait_until(lambda: rc.delivered_set(), 15, "the notification delivered")
        (nid, body, sig), = rc.requests
        push = json.loads(body)
        self.assertEqual(push["id"], nid)
        self.assertEqual(push["userId"], target.user_id)
        self.assertEqual(push["username"], target.username)
        self.assertEqual(push["event"], {"type": "ASK_INVITE", "username": inviter.username})
        want = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        self.assertEqual(sig, "sha256=" + want)
        wait_until(lambda: pending(self.r, self.stream) == 0, 5, "no entry pending")
        self.assertStopsCleanly(w)


def main():
    global REDIS
    if not shutil.which("redis-server"):
        print("redis-server (Debian package redis-server) is not installed: skipped")
        return 77
    if not os.access(push_bin(), os.X_OK):
        print("chatd-push not found: %s (set CHATD_PUSH_BIN)" % push_bin())
        return 1
    REDIS = Redis().start()
    try:
        prog = unittest.main(verbosity=2, exit=False)
        return 0 if prog.result.wasSuccessful() else 1
    finally:
        REDIS.cleanup()


if __name__ == "__main__":
    sys.exit(main())
