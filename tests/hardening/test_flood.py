#!/usr/bin/python3
"""Hardening: 200 abusive clients at once while well-behaved users carry on.

For FLOOD_SECONDS (30 s) a separate process runs 200 abusive clients from 20
loopback source addresses (127.0.0.10 .. 127.0.0.29), each looping over:
garbage bytes, an oversized request head, an oversized body, a handshake that
never finishes, a WebSocket followed by garbage frames, invalid UTF-8, an
oversized frame, a binary frame, junk JSON, a bogus token, a failed login, and
bursts of connect/close (some with a reset).

Meanwhile 5 well-behaved clients (from 127.0.0.1) repeat the whole journey --
register two users, log in, open WebSockets, invite + accept, create a channel,
write, fetch, log out -- and every step must succeed.

Printed: abusive connections made (by kind), journeys completed, journey
latency p50/p99, server RSS before/after. Asserted: no journey step failed,
the server is alive and /healthz answers 200 afterwards, every abusive
connection is gone again, and the RSS after the flood is bounded (unless chatd
runs under a sanitizer, whose allocator keeps freed memory in quarantine).

Run with ``--abuse`` (and a JSON job in $CHATD_ABUSE_JOB) this file is the abusive
process itself; it stops by itself at its deadline.
"""

import asyncio
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hardening_util import (  # noqa: E402
    HOST,
    OP_BINARY,
    OP_TEXT,
    AsyncRawWS,
    RELAXED_LOGIN,
    ServerTestCase,
    fast_frame,
    loopback_addrs,
    metric,
    metrics,
    percentile,
    rss_kib,
    sanitizer_of,
)

FLOOD_SECONDS = float(os.environ.get("CHATD_FLOOD_SECONDS", "30"))
ABUSERS = 200
ABUSE_ADDRS = 20
GOOD_CLIENTS = 5
STEP_TIMEOUT = 15.0
RSS_GROWTH_BOUND_KIB = 64 * 1024


# ==== the abusive process ======================================================================


async def _drain(reader, timeout):
    """Read until EOF or timeout; True if the server closed the connection."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            data = await asyncio.wait_for(reader.read(65536), remaining)
            if not data:
                return True
    except asyncio.TimeoutError:
        return False
    except (ConnectionError, OSError):
        return True


async def _open(port, src):
    return await asyncio.open_connection(HOST, port, local_addr=(src, 0))


def _close(writer, reset=False):
    try:
        if reset:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
    except Exception:
        pass


async def k_garbage(job, src, stats):
    r, w = await _open(job["port"], src)
    try:
        w.write(os.urandom(random.randint(1, 4096)))
        return await _drain(r, 5)
    finally:
        _close(w)


async def k_big_head(job, src, stats):
    r, w = await _open(job["port"], src)
    try:
        w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        return await _drain(r, 5)
    finally:
        _close(w)


async def k_big_body(job, src, stats):
    r, w = await _open(job["port"], src)
    try:
        w.write(b"POST /api/v1/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: "
                b"application/json\r\nContent-Length: 200000\r\n\r\n" + b"{" + b" " * 70000)
        return await _drain(r, 5)
    finally:
        _close(w)


async def k_half_handshake(job, src, stats):
    r, w = await _open(job["port"], src)
    try:
        w.write(b"GET /ws/v1/message HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConn")
        return await _drain(r, job["handshake_timeout"] + 4)
    finally:
        _close(w)


async def _ws(job, src):
    token = random.choice(job["tokens"])
    return await AsyncRawWS.open(job["port"], token, how=random.choice(["bearer", "query"]),
                                 src=src, timeout=10)


async def k_ws_garbage(job, src, stats):
    ws = await _ws(job, src)
    try:
        ws.writer.write(os.urandom(random.randint(2, 2000)))
        return await _drain(ws.reader, 5)
    finally:
        ws.close()


async def k_ws_bad_utf8(job, src, stats):
    ws = await _ws(job, src)
    try:
        ws.send(OP_TEXT, b'{"type":"\xff\xfe\xc0\xaf"}')
        return await _drain(ws.reader, 5)
    finally:
        ws.close()


async def k_ws_oversize(job, src, stats):
    ws = await _ws(job, src)
    try:
        ws.writer.write(fast_frame(OP_TEXT, b" " * 4096, length=10 << 20)[:4096 + 14])
        return await _drain(ws.reader, 5)
    finally:
        ws.close()


async def k_ws_binary(job, src, stats):
    ws = await _ws(job, src)
    try:
        ws.send(OP_BINARY, os.urandom(64))
        return await _drain(ws.reader, 5)
    finally:
        ws.close()


async def k_ws_junk_json(job, src, stats):
    ws = await _ws(job, src)
    try:
        for text in ("{", "[]", '{"type":5}', '{"type":"NO_SUCH_TYPE"}', "null",
                     '{"type":"WRITE_MESSAGE","channelId":-1}', '{"type":"ENTER_REQUEST"}'):
            ws.send(OP_TEXT, text)
        errors = 0
        for _ in range(7):
            msg = await ws.recv_json(5)
            errors += msg.get("type") == "ERROR"
        return errors == 7
    finally:
        _close(ws.writer, reset=True)


async def k_bad_token(job, src, stats):
    ws = await AsyncRawWS.open(job["port"], "A" * 43, how="bearer", src=src, timeout=10)
    ws.close()
    return ws.status == 401


async def k_bad_login(job, src, stats):
    r, w = await _open(job["port"], src)
    try:
        body = json.dumps({"username": "nobody_%d" % random.randint(0, 999),
                           "password": "wrong password"}).encode()
        w.write(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body))
        return await _drain(r, 5)
    finally:
        _close(w)


async def k_rapid(job, src, stats):
    for i in range(10):
        r, w = await _open(job["port"], src)
        stats["connections"] += 1
        _close(w, reset=bool(i & 1))
    stats["connections"] -= 1  # the caller counts one
    return True


KINDS = [k_garbage, k_big_head, k_big_body, k_half_handshake, k_ws_garbage, k_ws_bad_utf8,
         k_ws_oversize, k_ws_binary, k_ws_junk_json, k_bad_token, k_bad_login, k_rapid]


async def abuse(job):
    deadline = time.monotonic() + job["seconds"]
    # "expected": the server closed the connection itself (or, for bogus tokens and junk
    # JSON, answered 401 / ERROR) within the operation's time limit
    stats = {"connections": 0, "ops": {}, "errors": {}, "expected": 0}
    addrs = job["addrs"]

    async def worker(i):
        src = addrs[i % len(addrs)]
        n = i
        while time.monotonic() < deadline:
            kind = KINDS[n % len(KINDS)]
            n += 1
            name = kind.__name__[2:]
            try:
                expected = await asyncio.wait_for(kind(job, src, stats), 15)
                stats["ops"][name] = stats["ops"].get(name, 0) + 1
                if expected:
                    stats["expected"] += 1
            except Exception as e:  # an abusive client does not care; count it
                key = "%s:%s" % (name, type(e).__name__)
                stats["errors"][key] = stats["errors"].get(key, 0) + 1
            stats["connections"] += 1

    await asyncio.gather(*(worker(i) for i in range(job["workers"])))
    return stats


def abuse_main():
    job = json.loads(os.environ["CHATD_ABUSE_JOB"])
    random.seed(job.get("seed", 1))
    stats = asyncio.run(abuse(job))
    sys.stdout.write(json.dumps(stats) + "\n")
    sys.stdout.flush()


# ==== the test ====================================================================================


class Journey:
    """One well-behaved client repeating the whole journey until a deadline."""

    def __init__(self, server, index, deadline):
        self.server = server
        self.index = index
        self.deadline = deadline
        self.latencies = []
        self.failures = []

    def run(self):
        try:
            asyncio.run(self.loop())
        except Exception as e:  # recorded, asserted by the test
            self.failures.append("client %d: %s: %s" % (self.index, type(e).__name__, e))

    async def loop(self):
        while time.monotonic() < self.deadline and not self.failures:
            start = time.monotonic()
            try:
                await asyncio.wait_for(self.journey(), 60)
            except Exception as e:
                self.failures.append("client %d journey %d: %s: %s"
                                     % (self.index, len(self.latencies) + 1,
                                        type(e).__name__, e))
                return
            self.latencies.append(time.monotonic() - start)

    async def step(self, what, coro):
        try:
            return await asyncio.wait_for(coro, STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError("%s: no answer within %.0f s" % (what, STEP_TIMEOUT))

    async def journey(self):
        from harness import unique_name, ws_connect
        from domain import Client

        srv = self.server
        names = [unique_name("good%d" % self.index) for _ in range(2)]
        users = []
        for name in names:
            reg = await asyncio.to_thread(srv.register, name)
            token = await asyncio.to_thread(srv.login, name)
            users.append((name, reg["inviteCode"], token))
        (an, acode, atok), (bn, bcode, btok) = users
        wa = await self.step("WebSocket a", ws_connect(srv, atok, "query"))
        wb = await self.step("WebSocket b", ws_connect(srv, btok, "cookie"))
        ca, cb = Client(wa, None, an), Client(wb, None, bn)
        try:
            r = await self.step("invite", ca.request("INVITE_REQUEST", {"userInviteCode": bcode}))
            assert r.get("type") == "INVITE_RESPONSE", "invite: %r" % r
            r = await self.step("accept", cb.request("ACCEPT_REQUEST", {"username": an}))
            assert r.get("type") == "ACCEPT_RESPONSE", "accept: %r" % r
            r = await self.step("create", ca.request("CREATE_REQUEST", {
                "title": "journey", "participantUsername": bn}))
            assert r.get("type") == "CREATE_RESPONSE", "create: %r" % r
            cid = r["channelId"]
            text = "hello from %s" % an
            r = await self.step("write", ca.request("WRITE_MESSAGE", {
                "channelId": cid, "content": text}))
            assert r.get("type") == "WRITE_MESSAGE_ACK", "write: %r" % r
            r = await self.step("fetch", cb.request("FETCH_MESSAGES_REQUEST", {"channelId": cid}))
            assert r.get("type") == "FETCH_MESSAGES_RESPONSE", "fetch: %r" % r
            assert [m["content"] for m in r["messages"]] == [text], "fetch: %r" % r
            for tok, how in ((atok, "bearer"), (btok, "cookie")):
                status, _, body = await asyncio.to_thread(srv.logout, tok, how)
                assert status == 204, "logout: %s %r" % (status, body)
            for ws in (wa, wb):
                await self.step("close after logout", ws.wait_closed())
                assert ws.close_code == 4001, "close code after logout: %r" % ws.close_code
        finally:
            await ca.close()
            await cb.close()


class FloodTest(ServerTestCase):
    HANDSHAKE_TIMEOUT = 3
    server_sets = [RELAXED_LOGIN, "ws.handshake_timeout=%d" % HANDSHAKE_TIMEOUT,
                   "storage.sqlite.synchronous=\"normal\""]

    def test_abusive_flood_does_not_hurt_good_clients(self):
        srv = self.server
        port = srv.port
        pid = srv.proc.pid
        tokens = [srv.new_user("abuser").token for _ in range(10)]
        time.sleep(0.3)
        rss_before = rss_kib(pid)
        job = {"port": port, "seconds": FLOOD_SECONDS, "workers": ABUSERS, "tokens": tokens,
               "addrs": loopback_addrs(ABUSE_ADDRS, 10),
               "handshake_timeout": self.HANDSHAKE_TIMEOUT, "seed": 7}
        env = dict(os.environ, CHATD_ABUSE_JOB=json.dumps(job))
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--abuse"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env)
        try:
            time.sleep(1.0)  # let the flood build up first
            deadline = time.monotonic() + FLOOD_SECONDS - 2.0
            journeys = [Journey(srv, i, deadline) for i in range(GOOD_CLIENTS)]
            threads = [threading.Thread(target=j.run, daemon=True) for j in journeys]
            for t in threads:
                t.start()
            for t in threads:
                t.join(FLOOD_SECONDS + 90)
            hung = [t for t in threads if t.is_alive()]
            out, err = child.communicate(timeout=FLOOD_SECONDS + 40)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        self.assertEqual(child.returncode, 0, "abusive process failed: %s"
                         % err.decode(errors="replace")[-2000:])
        stats = json.loads(out.decode().strip().splitlines()[-1])

        self.assertTrue(srv.alive(), "chatd died under the flood; log:\n" + srv.log_tail())
        # every abusive connection goes away again
        deadline = time.monotonic() + self.HANDSHAKE_TIMEOUT + 8
        open_conns = None
        while time.monotonic() < deadline:
            open_conns = metric(port, "chatd_connections")
            if open_conns <= 1:
                break
            time.sleep(0.25)
        time.sleep(0.5)
        rss_after = rss_kib(pid)
        m = metrics(port)
        status, _, body = srv.healthz()

        lat = [x for j in journeys for x in j.latencies]
        failures = [f for j in journeys for f in j.failures]
        print("\nflood: %d abusive clients from %d addresses for %.0f s: %d connections"
              % (ABUSERS, ABUSE_ADDRS, FLOOD_SECONDS, stats["connections"]))
        print("flood: operations by kind: %s" % json.dumps(stats["ops"], sort_keys=True))
        print("flood: %d of %d operations met the expected reaction (closed by the server, 401, "
              "ERROR); client-side errors: %s"
              % (stats["expected"], sum(stats["ops"].values()),
                 json.dumps(stats["errors"], sort_keys=True)))
        print("flood: %d journeys completed by %d good clients (%s); latency p50 %.0f ms, "
              "p99 %.0f ms, max %.0f ms" % (len(lat), GOOD_CLIENTS,
                                            ", ".join(str(len(j.latencies)) for j in journeys),
                                            percentile(lat, 50) * 1000,
                                            percentile(lat, 99) * 1000,
                                            max(lat) * 1000 if lat else 0))
        print("flood: server counters: %s" % ", ".join(
            "%s=%d" % (k[6:], v) for k, v in sorted(m.items())
            if k in ("chatd_connections_accepted_total", "chatd_connections_refused_total",
                     "chatd_http_rejected_total", "chatd_ws_invalid_utf8_total",
                     "chatd_ws_opened_total", "chatd_connections", "chatd_accept_errors_total",
                     "chatd_http_requests_total")))
        print("flood: server RSS before %d KiB, after %d KiB (+%d KiB)"
              % (rss_before, rss_after, rss_after - rss_before))

        self.assertEqual(failures, [], "well-behaved clients failed under the flood")
        self.assertEqual(hung, [], "a well-behaved client hung")
        for j in journeys:
            self.assertGreaterEqual(len(j.latencies), 1, "client %d completed no journey"
                                    % j.index)
        self.assertGreaterEqual(stats["connections"], ABUSERS * 5,
                                "the flood was too thin to mean anything")
        self.assertEqual((status, body), (200, {"status": "ok"}), "/healthz after the flood")
        self.assertLessEqual(open_conns, 1, "abusive connections still open %.0f s after the "
                             "flood: %s" % (self.HANDSHAKE_TIMEOUT + 8, open_conns))
        san = sanitizer_of(pid)
        if san:
            print("flood: RSS not bounded under %s (its allocator holds freed memory back)"
                  % san)
        else:
            self.assertLess(rss_after - rss_before, RSS_GROWTH_BOUND_KIB,
                            "server RSS grew by %d KiB over the flood"
                            % (rss_after - rss_before))


if __name__ == "__main__":
    if "--abuse" in sys.argv:
        abuse_main()
    else:
        unittest.main(verbosity=2)
