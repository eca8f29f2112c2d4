#!/usr/bin/python3
"""Hardening: every configured limit of chatd, each set small with --set.

Each test class runs its own chatd with the limit under test lowered, drives
the server just past it and checks the documented reaction (connection closed,
HTTP status, ERROR code) -- and that what stays within the limit still works.
Every assertion message names the setting it is about.
"""

import asyncio
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hardening_util import (  # noqa: E402
    OP_TEXT,
    RELAXED_LOGIN,
    ServerTestCase,
    http_request,
    metric,
    raw_ws_open,
    read_http_answer,
    send_quietly,
    tcp_connect,
    wait_closed,
)
import harness  # noqa: E402
from harness import RawWebSocket, error_code, unique_name, ws_connect  # noqa: E402
from domain import ADDR_LIMIT_SET, DomainTestCase, async_test, chan  # noqa: E402

INVITE_REQ = "FETCH_USER_INVITECODE_REQUEST"
INVITE_RESP = "FETCH_USER_INVITECODE_RESPONSE"
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def healthz_on(sock, timeout=3.0):
    """Send GET /healthz on an open keep-alive socket; return the status (None: no answer)."""
    if not send_quietly(sock, HEALTHZ):
        return None
    resp, _ = read_http_answer(sock, timeout)
    return resp.status if resp else None


def fresh_healthz(port, src, timeout=3.0):
    """GET /healthz on a new connection from ``src``; the status, or None if refused."""
    try:
        sock = tcp_connect(port, src=src, timeout=timeout)
    except OSError:
        return None
    try:
        return healthz_on(sock, timeout)
    finally:
        sock.close()


# ---- server.max_connections_per_addr ------------------------------------------------------


class ConnectionsPerAddressTest(ServerTestCase):
    LIMIT = 5
    server_sets = [RELAXED_LOGIN, "server.max_connections_per_addr=%d" % LIMIT]

    def test_extra_connection_from_one_address_is_closed(self):
        port = self.server.port
        refused_before = metric(port, "chatd_connections_refused_total", src="127.0.0.3")
        held = []
        try:
            for i in range(self.LIMIT):
                s = tcp_connect(port, src="127.0.0.1")
                held.append(s)
                # an answered request proves the server has accepted this one
                self.assertEqual(healthz_on(s), 200,
                                 "server.max_connections_per_addr=%d: connection %d of %d "
                                 "from 127.0.0.1 not served" % (self.LIMIT, i + 1, self.LIMIT))
            extra = tcp_connect(port, src="127.0.0.1")
            try:
                send_quietly(extra, HEALTHZ)
                how, took, data = wait_closed(extra, 3.0)
                self.assertIsNotNone(how, "server.max_connections_per_addr=%d: connection %d "
                                     "from 127.0.0.1 still open after 3 s" % (self.LIMIT,
                                                                              self.LIMIT + 1))
                self.assertEqual(data, b"", "server.max_connections_per_addr: the refused "
                                 "connection got an answer: %r" % data[:200])
                self.assertLess(took, 1.0, "server.max_connections_per_addr: the refused "
                                "connection was closed only after %.2f s" % took)
            finally:
                extra.close()
            # the ones within the limit still work
            for s in held:
                self.assertEqual(healthz_on(s), 200, "server.max_connections_per_addr: a "
                                 "connection within the limit stopped working")
            # another address has its own allowance
            self.assertEqual(fresh_healthz(port, "127.0.0.2"), 200,
                             "server.max_connections_per_addr: a connection from 127.0.0.2 was "
                             "refused while 127.0.0.1 was at its limit")
            refused = metric(port, "chatd_connections_refused_total", src="127.0.0.3")
            self.assertGreaterEqual(refused - refused_before, 1,
                                    "server.max_connections_per_addr: "
                                    "chatd_connections_refused_total did not count the refusal")
            # closing one frees its slot
            held.pop().close()
            deadline = time.monotonic() + 3.0
            status = None
            while time.monotonic() < deadline:
                status = fresh_healthz(port, "127.0.0.1", timeout=1.0)
                if status == 200:
                    break
                time.sleep(0.1)
            self.assertEqual(status, 200, "server.max_connections_per_addr: the slot of a closed "
                             "connection was not given back within 3 s")
        finally:
            for s in held:
                s.close()


# ---- ws.handshake_timeout (and http.keepalive_timeout) -------------------------------------


class HandshakeTimeoutTest(ServerTestCase):
    TIMEOUT = 2
    server_sets = [RELAXED_LOGIN, "ws.handshake_timeout=%d" % TIMEOUT,
                   "http.keepalive_timeout=2"]

    def assertClosedAfterTimeout(self, how, took, what):
        self.assertIsNotNone(how, "ws.handshake_timeout=%d: %s still connected after %.1f s"
                             % (self.TIMEOUT, what, took))
        self.assertGreaterEqual(took, self.TIMEOUT - 0.6,
                                "ws.handshake_timeout=%d: %s closed too early (%.2f s)"
                                % (self.TIMEOUT, what, took))
        self.assertLessEqual(took, self.TIMEOUT + 1.5,
                             "ws.handshake_timeout=%d: %s closed only after %.2f s"
                             % (self.TIMEOUT, what, took))

    def test_half_a_request_head_is_dropped(self):
        s = tcp_connect(self.server.port)
        try:
            s.sendall(b"GET /ws/v1/message HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webso")
            how, took, data = wait_closed(s, self.TIMEOUT + 5)
            self.assertClosedAfterTimeout(how, took, "a client that sent half a request head")
        finally:
            s.close()
        self.assertServerUp()

    def test_silent_connection_is_dropped(self):
        s = tcp_connect(self.server.port)
        try:
            how, took, _ = wait_closed(s, self.TIMEOUT + 5)
            self.assertClosedAfterTimeout(how, took, "a client that sent nothing")
        finally:
            s.close()

    def test_trickled_request_head_is_dropped(self):
        """A head trickled a byte at a time and never finished (slowloris) is dropped.

        ws.handshake_timeout is the time to send a complete request, so a byte
        arriving now and then must not restart it."""
        s = tcp_connect(self.server.port)
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
        start = time.monotonic()
        closed_at = None
        try:
            for i in range(len(head)):
                if time.monotonic() - start > self.TIMEOUT + 5:
                    break
                if not send_quietly(s, head[i:i + 1]):
                    closed_at = time.monotonic() - start
                    break
                how, _, _ = wait_closed(s, 0.3)
                if how is not None:
                    closed_at = time.monotonic() - start
                    break
        finally:
            s.close()
        self.assertIsNotNone(closed_at, "ws.handshake_timeout=%d: a client trickling a request "
                             "head (a byte every 0.3 s) was still connected after %.1f s"
                             % (self.TIMEOUT, time.monotonic() - start))
        self.assertLessEqual(closed_at, self.TIMEOUT + 1.5,
                             "ws.handshake_timeout=%d: a trickling client was dropped only "
                             "after %.1f s" % (self.TIMEOUT, closed_at))

    def test_slow_but_complete_request_is_served(self):
        s = tcp_connect(self.server.port)
        try:
            s.sendall(HEALTHZ[:20])
            time.sleep(self.TIMEOUT / 2.0)
            s.sendall(HEALTHZ[20:])
            resp, _ = read_http_answer(s, 3.0)
            self.assertIsNotNone(resp, "ws.handshake_timeout=%d: a request completed within "
                                 "the timeout got no answer" % self.TIMEOUT)
            self.assertEqual(resp.status, 200)
        finally:
            s.close()

    def test_idle_keep_alive_connection_is_closed(self):
        s = tcp_connect(self.server.port)
        try:
            self.assertEqual(healthz_on(s), 200)
            how, took, _ = wait_closed(s, 6.0)
            self.assertIsNotNone(how, "http.keepalive_timeout=2: idle keep-alive connection "
                                 "still open after 6 s")
            self.assertGreaterEqual(took, 1.4, "http.keepalive_timeout=2: closed after %.2f s"
                                    % took)
            self.assertLessEqual(took, 3.5, "http.keepalive_timeout=2: closed after %.2f s"
                                 % took)
        finally:
            s.close()


# ---- ws.idle_timeout / ws.ping_interval ------------------------------------------------------


class IdleTimeoutTest(ServerTestCase):
    server_sets = [RELAXED_LOGIN, "ws.idle_timeout=3", "ws.ping_interval=1"]

    def test_silent_websocket_is_dropped_and_ponging_one_is_kept(self):
        user = self.server.new_user("idle")
        port = self.server.port
        before = metric(port, "chatd_ws_idle_closed_total")

        async def main():
            alive = await ws_connect(self.server, user.token)  # answers pings by itself
            try:
                start = time.monotonic()
                sock, resp, _ = raw_ws_open(port, user.token)
                try:
                    self.assertEqual(resp.status, 101)
                    # read and discard everything (pings too), never answer
                    how, took, _ = await asyncio.to_thread(wait_closed, sock, 9.0)
                finally:
                    sock.close()
                self.assertIsNotNone(how, "ws.idle_timeout=3: a WebSocket that never answers "
                                     "was still open after 9 s")
                self.assertGreaterEqual(took, 2.0, "ws.idle_timeout=3: silent WebSocket closed "
                                        "after only %.2f s" % took)
                self.assertLessEqual(took, 5.5, "ws.idle_timeout=3: silent WebSocket closed "
                                     "after %.2f s" % took)
                await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - start)))
                self.assertTrue(alive.open, "ws.idle_timeout=3: a client answering the "
                                "server's pings was dropped (code %s)" % alive.close_code)
                await alive.send('{"type":"%s","requestId":"still"}' % INVITE_REQ)
                reply = await asyncio.wait_for(alive.recv(), 5)
                self.assertIn(user.invite_code, reply)
            finally:
                await alive.close()

        harness.run(main())
        self.assertGreaterEqual(metric(port, "chatd_ws_idle_closed_total") - before, 1,
                                "ws.idle_timeout: chatd_ws_idle_closed_total not counted")


# ---- ws.rate_limit / ws.rate_burst -------------------------------------------------------------


class WebSocketRateTest(ServerTestCase):
    server_sets = [RELAXED_LOGIN, "ws.rate_limit=5", "ws.rate_burst=5"]

    def test_burst_is_rate_limited_and_connection_stays_open(self):
        user = self.server.new_user("rate")
        port = self.server.port
        before = metric(port, "chatd_ws_rate_limited_total")

        async def burst(ws, n, tag):
            ids = ["%s%d" % (tag, i) for i in range(n)]
            for rid in ids:
                await ws.send('{"type":"%s","requestId":"%s"}' % (INVITE_REQ, rid))
            answers = {}
            for _ in range(n):
                msg = await harness.ws_recv(ws, 5.0)
                rid = msg.get("requestId")
                self.assertIn(rid, ids, "ws.rate_limit: answer to an unknown request: %r" % msg)
                self.assertNotIn(rid, answers, "ws.rate_limit: two answers to %s" % rid)
                answers[rid] = msg
            return answers

        async def main():
            ws = await ws_connect(self.server, user.token)
            try:
                answers = await burst(ws, 20, "b")
                ok = [m for m in answers.values() if m.get("type") == INVITE_RESP]
                limited = [m for m in answers.values() if m.get("type") == "ERROR"]
                self.assertEqual(len(ok) + len(limited), 20, answers)
                for m in limited:
                    self.assertEqual(m.get("code"), "RATE_LIMITED",
                                     "ws.rate_limit: unexpected error %r" % m)
                    self.assertEqual(m.get("messageType"), INVITE_REQ,
                                     "ws.rate_limit: RATE_LIMITED without messageType: %r" % m)
                    self.assertTrue(m.get("requestId"),
                                    "ws.rate_limit: RATE_LIMITED without requestId: %r" % m)
                self.assertGreaterEqual(len(ok), 5, "ws.rate_burst=5: fewer than 5 of a burst "
                                        "of 20 were served")
                self.assertLessEqual(len(ok), 6, "ws.rate_limit=5/ws.rate_burst=5: %d of a "
                                     "burst of 20 were served" % len(ok))
                self.assertGreaterEqual(len(limited), 14)
                print("ws.rate_limit: burst of 20 -> %d served, %d RATE_LIMITED"
                      % (len(ok), len(limited)))
                # the limit is per WebSocket: another socket of the same user is served
                other = await ws_connect(self.server, user.token)
                try:
                    got = await burst(other, 5, "o")
                    self.assertTrue(all(m.get("type") == INVITE_RESP for m in got.values()),
                                    "ws.rate_limit: a second WebSocket was limited by the "
                                    "first one's burst: %r" % got)
                finally:
                    await other.close()
                # the connection stayed open and recovers
                self.assertTrue(ws.open, "ws.rate_limit: rate-limited connection was closed")
                await asyncio.sleep(1.5)
                again = await burst(ws, 5, "a")
                self.assertTrue(all(m.get("type") == INVITE_RESP for m in again.values()),
                                "ws.rate_limit=5: after 1.5 s requests are still refused: %r"
                                % again)
            finally:
                await ws.close()

        harness.run(main())
        self.assertGreaterEqual(metric(port, "chatd_ws_rate_limited_total") - before, 14,
                                "ws.rate_limit: chatd_ws_rate_limited_total did not count")

    def test_malformed_messages_count_against_the_rate(self):
        """Malformed messages count against ws.rate_limit too.

        The limit is on messages, not only on well-formed requests: a burst of
        malformed JSON must not get a full answer each beyond the burst."""
        user = self.server.new_user("ratej")

        async def main():
            ws = await ws_connect(self.server, user.token)
            try:
                for i in range(20):
                    await ws.send("{not json %d" % i)
                answers = [await harness.ws_recv(ws, 5.0) for _ in range(20)]
                codes = [m.get("code") for m in answers]
                print("ws.rate_limit: burst of 20 malformed messages -> %d BAD_REQUEST, "
                      "%d RATE_LIMITED" % (codes.count("BAD_REQUEST"),
                                           codes.count("RATE_LIMITED")))
                self.assertEqual(set(codes) - {"BAD_REQUEST", "RATE_LIMITED"}, set(), answers)
                self.assertLessEqual(codes.count("BAD_REQUEST"), 6,
                                     "ws.rate_limit=5/ws.rate_burst=5: a burst of 20 malformed "
                                     "messages was answered in full (%d BAD_REQUEST, %d "
                                     "RATE_LIMITED): malformed messages escape the rate limit"
                                     % (codes.count("BAD_REQUEST"), codes.count("RATE_LIMITED")))
                self.assertTrue(ws.open, "ws.rate_limit: connection closed")
            finally:
                await ws.close()

        harness.run(main())


# ---- plugins.messaging.max_writes_per_second / write_burst -------------------------------------


class WriteRateTest(DomainTestCase):
    server_sets = [ADDR_LIMIT_SET, "plugins.messaging.max_writes_per_second=2",
                   "plugins.messaging.write_burst=3", "storage.sqlite.synchronous=\"normal\""]

    @async_test
    async def test_writes_per_user_are_rate_limited(self):
        a, b = self.users(2, "wr")
        cid = await self.channel_with(a, b)
        a1 = await self.connect(a)
        a2 = await self.connect(a)
        cb = await self.connect(b)
        # 9 writes by one user at once, one of them on a second socket
        sent = []
        for i in range(9):
            c = a2 if i == 3 else a1
            rid = "w%d" % i
            await c.send({"type": "WRITE_MESSAGE", "requestId": rid, "channelId": chan(cid),
                          "content": "burst %d" % i, "clientMessageId": "cm%d" % i})
            sent.append((c, rid))
        acks, limited = [], []
        for c, rid in sent:
            msg = await c.reply(rid, "WRITE_MESSAGE", timeout=10)
            if msg.get("type") == "WRITE_MESSAGE_ACK":
                acks.append(msg)
            else:
                self.assertErr(msg, "RATE_LIMITED", "WRITE_MESSAGE", rid)
                limited.append(msg)
        print("plugins.messaging.write_burst=3: burst of 9 writes -> %d acknowledged, "
              "%d RATE_LIMITED" % (len(acks), len(limited)))
        self.assertGreaterEqual(len(acks), 3, "plugins.messaging.write_burst=3: fewer than 3 "
                                "writes of a burst acknowledged")
        self.assertLessEqual(len(acks), 4, "plugins.messaging.write_burst=3 (per user, over "
                             "all sockets): %d writes of a burst of 9 acknowledged" % len(acks))
        # another user is not affected
        ack = await self.write(cb, cid, "from b")
        self.assertEqual(ack["type"], "WRITE_MESSAGE_ACK",
                         "plugins.messaging.max_writes_per_second: one user's burst limited "
                         "another user")
        # the socket stays usable and the bucket refills at 2/s
        await asyncio.sleep(1.6)
        for i in range(3):
            resp = await a2.request("WRITE_MESSAGE", {"channelId": chan(cid),
                                                      "content": "later %d" % i})
            self.assertOk(resp, "WRITE_MESSAGE_ACK")
        # refused writes took no sequence number
        msgs = await self.fetch_all(a1, cid)
        seqs = [m["messageSequence"] for m in msgs]
        self.assertEqual(seqs, list(range(1, len(acks) + 5)),
                         "plugins.messaging.max_writes_per_second: refused writes left gaps or "
                         "were stored: %r" % seqs)


# ---- ws.max_connections_per_user --------------------------------------------------------------


class WebSocketsPerUserTest(ServerTestCase):
    LIMIT = 3
    server_sets = [RELAXED_LOGIN, "ws.max_connections_per_user=%d" % LIMIT]

    def test_fourth_websocket_is_refused_until_one_closes(self):
        port = self.server.port
        a = self.server.new_user("wpu")
        b = self.server.new_user("wpo")
        held = []
        try:
            for i in range(self.LIMIT):
                sock, resp, _ = raw_ws_open(port, a.token)
                held.append(sock)
                self.assertEqual(resp.status, 101, "ws.max_connections_per_user=%d: WebSocket "
                                 "%d refused: %r" % (self.LIMIT, i + 1, resp))
            for token, what in ((a.token, "same session"),
                                (self.server.login(a.username), "a second session")):
                sock, resp, _ = raw_ws_open(port, token, how="cookie")
                sock.close()
                self.assertIsNotNone(resp, "ws.max_connections_per_user: no answer")
                self.assertEqual(resp.status, 429, "ws.max_connections_per_user=%d: handshake "
                                 "%d (%s) answered %r" % (self.LIMIT, self.LIMIT + 1, what, resp))
                self.assertEqual(error_code(resp.json()), "LIMIT_EXCEEDED",
                                 "ws.max_connections_per_user: 429 body %r" % resp.body)
            sock, resp, _ = raw_ws_open(port, b.token)
            sock.close()
            self.assertEqual(resp.status, 101, "ws.max_connections_per_user: another user was "
                             "refused: %r" % resp)
            # close one properly; then a new one gets in
            first = held.pop(0)
            send_quietly(first, harness.build_frame(harness.OP_CLOSE, b"\x03\xe8"))
            wait_closed(first, 3.0)
            first.close()
            deadline = time.monotonic() + 3.0
            status = None
            while time.monotonic() < deadline:
                sock, resp, _ = raw_ws_open(port, a.token)
                status = resp.status if resp else None
                if status == 101:
                    held.append(sock)
                    break
                sock.close()
                time.sleep(0.1)
            self.assertEqual(status, 101, "ws.max_connections_per_user: closing a WebSocket did "
                             "not free its place within 3 s")
        finally:
            for s in held:
                s.close()


# ---- plugins.auth.login_max_failures(_per_addr) ----------------------------------------------


class LoginAttemptsTest(ServerTestCase):
    PER_USER = 3
    PER_ADDR = 6
    WINDOW = 4
    server_sets = ["plugins.auth.login_max_failures=%d" % PER_USER,
                   "plugins.auth.login_max_failures_per_addr=%d" % PER_ADDR,
                   "plugins.auth.login_window=%d" % WINDOW]

    def login(self, username, password, src, headers=None):
        status, _, body = http_request(self.server.port, "POST", "/api/v1/auth/login",
                                       {"username": username, "password": password},
                                       headers=headers, src=src)
        if status == 200:
            self.server.tokens.append(body["token"])
        return status, body

    def test_failures_per_username(self):
        name = unique_name("lf")
        self.server.register(name)
        other = unique_name("lo")
        self.server.register(other)
        start = None
        for i in range(self.PER_USER):
            status, body = self.login(name, "wrong password %d" % i, "127.0.0.21")
            self.assertEqual(status, 401, body)
            if start is None:
                start = time.monotonic()  # the window began before this answer
        for src in ("127.0.0.21", "127.0.0.22"):
            status, body = self.login(name, harness.DEFAULT_PASSWORD, src)
            self.assertEqual((status, error_code(body)), (429, "RATE_LIMITED"),
                             "plugins.auth.login_max_failures=%d: right password from %s after "
                             "%d failures answered %s %r" % (self.PER_USER, src, self.PER_USER,
                                                             status, body))
        status, body = self.login(other, harness.DEFAULT_PASSWORD, "127.0.0.21")
        self.assertEqual(status, 200, "plugins.auth.login_max_failures: another user was "
                         "blocked: %s %r" % (status, body))
        time.sleep(max(0.0, self.WINDOW + 0.5 - (time.monotonic() - start)))
        status, body = self.login(name, harness.DEFAULT_PASSWORD, "127.0.0.23")
        self.assertEqual(status, 200, "plugins.auth.login_window=%d: still blocked after the "
                         "window: %s %r" % (self.WINDOW, status, body))

    def test_failures_per_address(self):
        name = unique_name("la")
        self.server.register(name)
        for i in range(self.PER_ADDR):
            status, body = self.login(unique_name("nobody"), "whatever pw", "127.0.0.31")
            self.assertEqual(status, 401, body)
        status, body = self.login(name, harness.DEFAULT_PASSWORD, "127.0.0.31")
        self.assertEqual((status, error_code(body)), (429, "RATE_LIMITED"),
                         "plugins.auth.login_max_failures_per_addr=%d: login from the address "
                         "answered %s %r" % (self.PER_ADDR, status, body))
        status, body = self.login(name, harness.DEFAULT_PASSWORD, "127.0.0.31",
                                  headers={"X-Forwarded-For": "10.9.8.7",
                                           "X-Real-IP": "10.9.8.7"})
        self.assertEqual(status, 429, "plugins.auth.login_max_failures_per_addr: a forged "
                         "X-Forwarded-For header escaped the limit")
        status, body = self.login(name, harness.DEFAULT_PASSWORD, "127.0.0.32")
        self.assertEqual(status, 200, "plugins.auth.login_max_failures_per_addr: another "
                         "address was blocked: %s %r" % (status, body))

    def test_success_clears_the_username_count(self):
        name = unique_name("lc")
        self.server.register(name)
        for round_ in range(2):
            for i in range(self.PER_USER - 1):
                status, _ = self.login(name, "wrong %d" % i, "127.0.0.41")
                self.assertEqual(status, 401)
            status, body = self.login(name, harness.DEFAULT_PASSWORD, "127.0.0.41")
            self.assertEqual(status, 200, "plugins.auth.login_max_failures: a success did not "
                             "clear the count (round %d): %s %r" % (round_, status, body))


# ---- sizes: http.max_head_size, http.max_body_size, ws.max_message_size, content, title ----


class SizesTest(DomainTestCase):
    server_sets = [ADDR_LIMIT_SET, "http.max_head_size=1024", "http.max_body_size=2048",
                   "ws.max_message_size=4096", "plugins.messaging.max_content_bytes=100",
                   "plugins.channel.max_title_length=10"]

    def exchange(self, data, then=None):
        out, eof = harness.raw_exchange(self.server.port, data, timeout=5.0, then=then)
        return harness.parse_http_response(out), eof

    def test_head_over_limit_is_431_and_closed(self):
        big = ("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: %s\r\n\r\n"
               % ("p" * 1500)).encode()
        resp, eof = self.exchange(big)
        self.assertIsNotNone(resp, "http.max_head_size=1024: no answer to a 1.5 KiB head")
        self.assertEqual(resp.status, 431, "http.max_head_size=1024: %r" % resp)
        self.assertEqual(error_code(resp.json()), "LIMIT_EXCEEDED")
        self.assertTrue(eof, "http.max_head_size: connection left open after 431")
        ok = ("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: %s"
              "\r\n\r\n" % ("p" * 700)).encode()
        resp, _ = self.exchange(ok)
        self.assertEqual(resp.status if resp else None, 200,
                         "http.max_head_size=1024: a 0.8 KiB head was refused: %r" % resp)

    def login_body(self, size):
        base = '{"username":"nobody_here","password":"not the password"}'
        return (base[:-1] + " " * (size - len(base)) + "}").encode()

    def test_body_over_limit_is_413_and_closed(self):
        body = self.login_body(3000)
        head = ("POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                "application/json\r\nContent-Length: %d\r\n\r\n" % len(body)).encode()
        resp, eof = self.exchange(head, then=body)
        self.assertEqual(resp.status if resp else None, 413,
                         "http.max_body_size=2048: 3000-byte body answered %r" % resp)
        self.assertEqual(error_code(resp.json()), "LIMIT_EXCEEDED")
        self.assertTrue(eof, "http.max_body_size: connection left open after 413")
        # chunked: no Content-Length to check up front
        chunk = b"%x\r\n%s\r\n" % (1000, b" " * 1000)
        head = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        resp, eof = self.exchange(head + chunk * 3 + b"0\r\n\r\n")
        self.assertEqual(resp.status if resp else None, 413,
                         "http.max_body_size=2048: 3000-byte chunked body answered %r" % resp)
        self.assertTrue(eof)
        # exactly at the limit: processed (a failed login), not refused for size
        status, _, body = self.server.request("POST", "/api/v1/auth/login",
                                              self.login_body(2048),
                                              headers={"Content-Type": "application/json"})
        self.assertEqual(status, 401, "http.max_body_size=2048: a 2048-byte body answered %s %r"
                         % (status, body))

    def test_websocket_message_over_limit_closes_1009(self):
        user = self.user("msz")
        with RawWebSocket(self.server.port) as rw:
            self.assertEqual(rw.handshake(user.token, "bearer"), 101)
            msg = '{"type":"%s",%s"requestId":"pad"}' % (INVITE_REQ, " " * 3900)
            self.assertLess(len(msg), 4096)
            rw.send_text(msg)
            frame = rw.recv_message()
            self.assertIn(user.invite_code.encode(), frame.payload,
                          "ws.max_message_size=4096: a 3.9 KiB message was not answered")
            rw.send_frame_staged(OP_TEXT, b" " * 5000, first=100)
            self.assertEqual(rw.recv_close_code(), 1009,
                             "ws.max_message_size=4096: a 5000-byte message did not close 1009")
        self.assertServerUp()

    @async_test
    async def test_content_and_title_limits(self):
        a, b = self.users(2, "csz")
        await self.befriend(a, b)
        ca = await self.connect(a)
        resp = await ca.request("CREATE_REQUEST", {"title": "t" * 11,
                                                   "participantUsername": b.username})
        self.assertErr(resp, "BAD_REQUEST", "CREATE_REQUEST")
        cid = await self.create_group(ca, [b], title="\u00e9" * 10)  # 10 characters, 20 bytes
        for content in ("x" * 101, "\u20ac" * 34):  # 101 bytes; 34 characters = 102 bytes
            resp = await ca.request("WRITE_MESSAGE", {"channelId": chan(cid), "content": content})
            self.assertErr(resp, "LIMIT_EXCEEDED", "WRITE_MESSAGE")
        for content in ("x" * 100, "\u20ac" * 33):
            resp = await ca.request("WRITE_MESSAGE", {"channelId": chan(cid), "content": content})
            self.assertOk(resp, "WRITE_MESSAGE_ACK")
        msgs = await self.fetch(ca, cid)
        self.assertEqual([m["content"] for m in msgs], ["x" * 100, "\u20ac" * 33],
                         "plugins.messaging.max_content_bytes=100: stored %r" % msgs)
        await ca.send({"type": INVITE_REQ, "requestId": "r" * 65})
        resp = await ca.expect("ERROR")
        self.assertErr(resp, "BAD_REQUEST", INVITE_REQ)
        self.assertNotIn("requestId", resp, "a requestId over 64 bytes was echoed")

    def test_username_and_password_lengths(self):
        for name, pw in (("u" * 33, harness.DEFAULT_PASSWORD), (unique_name("pl"), "p" * 257)):
            status, _, body = self.server.request("POST", "/api/v1/auth/register",
                                                  {"username": name, "password": pw})
            self.assertEqual((status, error_code(body)), (400, "BAD_REQUEST"),
                             "username_max_length/password_max_length: %s %r" % (status, body))


# ---- plugins.channel.max_channel_members --------------------------------------------------------


class ChannelMembersTest(DomainTestCase):
    LIMIT = 3
    server_sets = [ADDR_LIMIT_SET, "plugins.channel.max_channel_members=%d" % LIMIT]

    @async_test
    async def test_members_per_channel(self):
        o, p1, p2, p3, j, k = self.users(6, "mem")
        await self.befriend(o, p1, p2, p3)
        co = await self.connect(o)
        resp = await co.request("CREATE_REQUEST", {
            "title": "too big", "participantUsernames": [p1.username, p2.username, p3.username]})
        self.assertErr(resp, "LIMIT_EXCEEDED", "CREATE_REQUEST")
        cid = await self.create_group(co, [p1, p2])
        self.assertEqual((await self.channel_entry(co, cid))["headCount"], 3)
        resp = await co.request("FETCH_CHANNEL_INVITECODE_REQUEST", {"channelId": chan(cid)})
        self.assertOk(resp, "FETCH_CHANNEL_INVITECODE_RESPONSE")
        code = resp["inviteCode"]
        cj = await self.connect(j)
        resp = await cj.request("JOIN_REQUEST", {"inviteCode": code})
        self.assertErr(resp, "LIMIT_EXCEEDED", "JOIN_REQUEST")
        c2 = await self.connect(p2)
        self.assertOk(await c2.request("QUIT_REQUEST", {"channelId": chan(cid)}), "QUIT_RESPONSE")
        self.assertOk(await cj.request("JOIN_REQUEST", {"inviteCode": code}), "JOIN_RESPONSE")
        ck = await self.connect(k)
        resp = await ck.request("JOIN_REQUEST", {"inviteCode": code})
        self.assertErr(resp, "LIMIT_EXCEEDED", "JOIN_REQUEST")
        self.assertEqual((await self.channel_entry(co, cid))["headCount"], self.LIMIT,
                         "plugins.channel.max_channel_members=%d: wrong headCount" % self.LIMIT)


# ---- plugins.connection.max_connections_per_user ------------------------------------------------


class FriendsPerUserTest(DomainTestCase):
    LIMIT = 2
    server_sets = [ADDR_LIMIT_SET, "plugins.connection.max_connections_per_user=%d" % LIMIT]

    @async_test
    async def test_friends_per_user(self):
        a, b, c, d, w = self.users(5, "fr")
        ca, cb, cc, cd, cw = [await self.connect(u) for u in (a, b, c, d, w)]
        for invitee in (b, c, d):
            await self.invite(ca, invitee)
        await self.accept(cb, a)
        await self.accept(cc, a)
        resp = await cd.request("ACCEPT_REQUEST", {"username": a.username})
        self.assertErr(resp, "LIMIT_EXCEEDED", "ACCEPT_REQUEST")
        self.assertEqual((await self.connections(cd)).get(a.username, (None,))[0], "PENDING",
                         "plugins.connection.max_connections_per_user: a refused accept changed "
                         "the relation")
        accepted = await self.connections(ca, "ACCEPTED")
        self.assertEqual(len(accepted), self.LIMIT,
                         "plugins.connection.max_connections_per_user=%d: %r"
                         % (self.LIMIT, accepted))
        # the limit also holds for the one who accepts: a is full, w invites a
        await self.invite(cw, a)
        resp = await ca.request("ACCEPT_REQUEST", {"username": w.username})
        self.assertErr(resp, "LIMIT_EXCEEDED", "ACCEPT_REQUEST")
        # a drops a friend: the pending accept now succeeds
        resp = await ca.request("DISCONNECT_REQUEST", {"username": b.username})
        self.assertOk(resp, "DISCONNECT_RESPONSE")
        await self.accept(cd, a)
        self.assertEqual(set(await self.connections(ca, "ACCEPTED")), {c.username, d.username})


if __name__ == "__main__":
    unittest.main(verbosity=2)
