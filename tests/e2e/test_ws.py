#!/usr/bin/python3
"""End-to-end tests of chatd's WebSocket endpoint: handshake, auth, framing, session."""

import asyncio
import functools
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWebSocket,
    Server,
    ServerTestCase,
    connection_closed_types,
    error_code,
    run,
    unique_name,
    ws_accept_for,
    ws_connect,
    ws_expect_silence,
    ws_handshake_status,
    ws_recv,
    ws_request,
    ws_send,
    ws_wait_close,
)

INVITE_REQ = "FETCH_USER_INVITECODE_REQUEST"
INVITE_RESP = "FETCH_USER_INVITECODE_RESPONSE"
CLOSE_SESSION_ENDED = 4001

RELAXED_ADDR_LIMIT = "plugins.auth.login_max_failures_per_addr=1000"


def async_test(fn):
    """Run an async test method; WebSockets opened through self.connect are closed after."""

    @functools.wraps(fn)
    def wrapper(self):
        async def main():
            self._sockets = []
            try:
                await fn(self)
            finally:
                for ws in self._sockets:
                    try:
                        await asyncio.wait_for(ws.close(), 3)
                    except Exception:
                        pass

        run(main())

    return wrapper


class WsTestCase(ServerTestCase):
    server_sets = [RELAXED_ADDR_LIMIT]

    async def connect(self, token, how="query", **kw):
        ws = await ws_connect(self.server, token, how, **kw)
        self._sockets.append(ws)
        return ws

    async def assertInviteCode(self, ws, user, request_id="r1"):
        resp = await ws_request(ws, {"type": INVITE_REQ, "requestId": request_id})
        self.assertEqual(resp, {"type": INVITE_RESP, "inviteCode": user.invite_code,
                                "requestId": request_id})

    async def assertErrorFrame(self, ws, request, code="BAD_REQUEST", message_type=None,
                               request_id=None):
        await ws_send(ws, request)
        resp = await ws_recv(ws)
        self.assertEqual((resp.get("type"), resp.get("code")), ("ERROR", code),
                         "request %r got %r" % (request, resp))
        self.assertIsInstance(resp.get("message"), str, resp)
        self.assertTrue(resp["message"], resp)
        if message_type is not None:
            self.assertEqual(resp.get("messageType"), message_type, resp)
        if request_id is not None:
            self.assertEqual(resp.get("requestId"), request_id, resp)
        return resp

    async def assertClosedWith(self, ws, code, timeout=5.0):
        got = await ws_wait_close(ws, timeout)
        self.assertEqual(got, code, "close code (reason %r)" % ws.close_reason)

    def raw(self, user=None, how="bearer", **kw):
        """A RawWebSocket that has completed the handshake (status 101 asserted)."""
        sock = RawWebSocket(self.server.port)
        status = sock.handshake(user.token if user else None, how, **kw)
        if status != 101:
            sock.close()
            self.fail("handshake answered %s, expected 101" % status)
        return sock


class WsHandshakeTests(WsTestCase):

    @async_test
    async def test_no_credentials_401(self):
        self.assertEqual(await ws_handshake_status(self.server, None, None), 401)

    @async_test
    async def test_invalid_token_401(self):
        for how in ("query", "bearer", "cookie"):
            with self.subTest(how=how):
                status = await ws_handshake_status(self.server, "bogus-token-" + how, how)
                self.assertEqual(status, 401)

    @async_test
    async def test_token_in_query(self):
        user = self.server.new_user("wq")
        await self.assertInviteCode(await self.connect(user.token, "query"), user)

    @async_test
    async def test_token_as_bearer(self):
        user = self.server.new_user("wb")
        await self.assertInviteCode(await self.connect(user.token, "bearer"), user)

    @async_test
    async def test_token_as_cookie(self):
        user = self.server.new_user("wc")
        await self.assertInviteCode(await self.connect(user.token, "cookie"), user)

    @async_test
    async def test_several_sockets_on_one_session(self):
        user = self.server.new_user("ws2")
        a = await self.connect(user.token, "query")
        b = await self.connect(user.token, "bearer")
        await self.assertInviteCode(a, user, "a")
        await self.assertInviteCode(b, user, "b")

    @async_test
    async def test_permessage_deflate_offer_is_harmless(self):
        user = self.server.new_user("wz")
        ws = await self.connect(user.token, "query", compression="deflate")
        await self.assertInviteCode(ws, user)

    def test_raw_handshake_101(self):
        user = self.server.new_user("wr")
        with RawWebSocket(self.server.port) as sock:
            self.assertEqual(sock.handshake(user.token, "bearer"), 101)
            self.assertEqual(sock.headers.get("upgrade", "").lower(), "websocket")
            self.assertIn("upgrade", sock.headers.get("connection", "").lower())
            self.assertEqual(sock.headers.get("sec-websocket-accept"), ws_accept_for(sock.key))
            sock.send_json({"type": INVITE_REQ, "requestId": "raw"})
            frame = sock.recv_message()
            self.assertEqual(frame.opcode, OP_TEXT)
            self.assertIn(user.invite_code.encode(), frame.payload)

    def test_missing_key_400(self):
        user = self.server.new_user("wk")
        with RawWebSocket(self.server.port) as sock:
            self.assertEqual(sock.handshake(user.token, "bearer", key=False), 400)

    def test_wrong_version_400(self):
        user = self.server.new_user("wv")
        for version in ("8", "12", "abc", None):
            with self.subTest(version=version):
                with RawWebSocket(self.server.port) as sock:
                    self.assertEqual(sock.handshake(user.token, "bearer", version=version), 400)

    def test_server_survives_bad_handshakes(self):
        with RawWebSocket(self.server.port) as sock:
            sock.handshake(None, None, key=False)
        self.assertServerUp()


class WsOriginTests(WsTestCase):
    server_sets = [RELAXED_ADDR_LIMIT, 'http.allowed_origins=["http://good.example"]']

    @async_test
    async def test_foreign_origin_403(self):
        user = self.server.new_user("oe")
        for how in ("cookie", "query"):
            with self.subTest(how=how):
                status = await ws_handshake_status(self.server, user.token, how,
                                                   origin="http://evil.example")
                self.assertEqual(status, 403)

    @async_test
    async def test_allowed_origin_101(self):
        user = self.server.new_user("og")
        ws = await self.connect(user.token, "cookie", origin="http://good.example")
        await self.assertInviteCode(ws, user)

    @async_test
    async def test_no_origin_allowed(self):
        user = self.server.new_user("on")
        ws = await self.connect(user.token, "bearer")
        await self.assertInviteCode(ws, user)


class WsMessageTests(WsTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = cls.server.new_user("msg")

    @async_test
    async def test_fetch_invite_code(self):
        ws = await self.connect(self.user.token)
        await self.assertInviteCode(ws, self.user, "r1")

    @async_test
    async def test_no_request_id_when_none_sent(self):
        ws = await self.connect(self.user.token)
        resp = await ws_request(ws, {"type": INVITE_REQ})
        self.assertEqual(resp.get("type"), INVITE_RESP, resp)
        self.assertEqual(resp.get("inviteCode"), self.user.invite_code)
        self.assertIsNone(resp.get("requestId"), resp)

    @async_test
    async def test_malformed_messages_keep_connection_open(self):
        ws = await self.connect(self.user.token)
        for i, bad in enumerate(["{not json", "[1,2]", '"text"', "42", "null", "",
                                 '{"requestId":"m"}', '{"type":5}', '{"type":null}',
                                 '{"type":["X"]}', '{"type":{"a":1}}']):
            with self.subTest(message=bad):
                await self.assertErrorFrame(ws, bad, "BAD_REQUEST")
                await self.assertInviteCode(ws, self.user, "after%d" % i)

    @async_test
    async def test_error_for_bad_type_echoes_request_id(self):
        ws = await self.connect(self.user.token)
        await self.assertErrorFrame(ws, '{"requestId":"m1"}', request_id="m1")
        await self.assertErrorFrame(ws, '{"type":7,"requestId":"m2"}', request_id="m2")

    @async_test
    async def test_json_that_jansson_cannot_hold_keeps_its_request_id(self):
        """Valid JSON (RFC 8259) with values a parser may refuse still gets an
        ERROR the client can match: requestId and messageType, and the field."""
        ws = await self.connect(self.user.token)
        cases = [
            ('"content":"\\ud83d"', "content"),          # a browser cutting an emoji in two
            ('"content":"a\\udc00b"', "content"),         # a lone low surrogate
            ('"content":"a\\u0000b"', "content"),         # NUL
            ('"limit":99999999999999999999', "limit"),      # beyond int64
            ('"limit":-99999999999999999999', "limit"),
            ('"limit":1e309', "limit"),                      # beyond a double
            ('"x":{"y":[1,"\\ud800"]}', "x.y[1]"),          # nested
        ]
        for i, (field, where) in enumerate(cases):
            with self.subTest(field=field):
                text = '{"type":"WRITE_MESSAGE","requestId":"j%d",%s}' % (i, field)
                resp = await self.assertErrorFrame(ws, text, "BAD_REQUEST",
                                                   message_type="WRITE_MESSAGE",
                                                   request_id="j%d" % i)
                self.assertIn("'%s'" % where, resp["message"])
        # the fields may come in any order, and the id after the fault
        resp = await self.assertErrorFrame(
            ws, '{"content":"\\ud83d","requestId":"late","type":"WRITE_MESSAGE"}',
            "BAD_REQUEST", message_type="WRITE_MESSAGE", request_id="late")
        # a pair is a character, not a fault
        await self.assertInviteCode(ws, self.user, "\U0001F600")
        await ws_send(ws, '{"type":"%s","requestId":"\\ud83d\\ude00"}' % INVITE_REQ)
        resp = await ws_recv(ws)
        self.assertEqual((resp.get("type"), resp.get("requestId")), (INVITE_RESP, "\U0001F600"))
        # a key given twice is JSON too
        resp = await self.assertErrorFrame(ws, '{"type":"%s","requestId":"d","a":1,"a":2}'
                                           % INVITE_REQ, "BAD_REQUEST",
                                           message_type=INVITE_REQ, request_id="d")
        await self.assertInviteCode(ws, self.user)

    @async_test
    async def test_malformed_json_keeps_what_it_could_read(self):
        ws = await self.connect(self.user.token)
        resp = await self.assertErrorFrame(ws, '{"type":"X","requestId":"m9","a":}',
                                           "BAD_REQUEST", message_type="X", request_id="m9")
        self.assertIn("malformed JSON", resp["message"])
        await self.assertInviteCode(ws, self.user)

    @async_test
    async def test_unknown_type(self):
        ws = await self.connect(self.user.token)
        resp = await self.assertErrorFrame(ws, {"type": "NO_SUCH", "requestId": "x"},
                                           "BAD_REQUEST", message_type="NO_SUCH",
                                           request_id="x")
        self.assertEqual(resp["type"], "ERROR")
        await self.assertInviteCode(ws, self.user)

    @async_test
    async def test_bad_request_ids(self):
        ws = await self.connect(self.user.token)
        for rid in (5, True, ["a"], {"a": "b"}, "r" * 65, "\u00e9" * 33):
            with self.subTest(requestId=rid if not isinstance(rid, str) else len(rid)):
                await self.assertErrorFrame(ws, {"type": INVITE_REQ, "requestId": rid},
                                            "BAD_REQUEST", message_type=INVITE_REQ)
        await self.assertInviteCode(ws, self.user)

    @async_test
    async def test_request_id_of_64_bytes(self):
        ws = await self.connect(self.user.token)
        await self.assertInviteCode(ws, self.user, "r" * 64)
        await self.assertInviteCode(ws, self.user, "\u00e9" * 32)

    @async_test
    async def test_keep_alive_gets_no_reply(self):
        ws = await self.connect(self.user.token)
        await ws_send(ws, {"type": "KEEP_ALIVE"})
        await ws_expect_silence(ws, 0.5)
        await ws_send(ws, {"type": "KEEP_ALIVE", "requestId": "k"})
        await ws_expect_silence(ws, 0.5)
        await self.assertInviteCode(ws, self.user)

    @async_test
    async def test_many_requests_all_answered(self):
        ws = await self.connect(self.user.token)
        ids = ["p%d" % i for i in range(20)]
        for rid in ids:
            await ws_send(ws, {"type": INVITE_REQ, "requestId": rid})
        got = []
        for _ in ids:
            resp = await ws_recv(ws)
            self.assertEqual(resp.get("type"), INVITE_RESP, resp)
            got.append(resp.get("requestId"))
        self.assertEqual(sorted(got), sorted(ids))

    @async_test
    async def test_whitespace_padded_json(self):
        ws = await self.connect(self.user.token)
        await ws_send(ws, '  {"type" : "%s" ,\n "requestId":"ws"}\t ' % INVITE_REQ)
        resp = await ws_recv(ws)
        self.assertEqual(resp.get("requestId"), "ws", resp)


class WsSessionEndTests(WsTestCase):

    async def _logout_closes(self, how):
        user = self.server.new_user("lo")
        other_session = self.server.login(user.username, user.password)
        a = await self.connect(user.token, "query")
        b = await self.connect(user.token, "cookie")
        c = await self.connect(other_session, "bearer")
        await self.assertInviteCode(a, user)
        status, _, body = self.server.logout(user.token, how)
        self.assertEqual(status, 204, body)
        await self.assertClosedWith(a, CLOSE_SESSION_ENDED)
        await self.assertClosedWith(b, CLOSE_SESSION_ENDED)
        # a second session of the same user is not affected
        await self.assertInviteCode(c, user)
        # the token is dead for HTTP and for new upgrades
        self.assertEqual(self.server.logout(user.token, how)[0], 401)
        for way in ("query", "bearer", "cookie"):
            with self.subTest(upgrade_with=way):
                self.assertEqual(await ws_handshake_status(self.server, user.token, way), 401)

    @async_test
    async def test_logout_with_cookie_closes_session_sockets(self):
        await self._logout_closes("cookie")

    @async_test
    async def test_logout_with_bearer_closes_session_sockets(self):
        await self._logout_closes("bearer")

    @async_test
    async def test_logout_without_auth(self):
        status, _, body = self.server.request("POST", "/api/v1/auth/logout")
        self.assertEqual((status, error_code(body)), (401, "UNAUTHORIZED"))

    @async_test
    async def test_unregister_closes_all_user_sockets(self):
        user = self.server.new_user("un")
        bystander = self.server.new_user("by")
        second = self.server.login(user.username, user.password)
        a = await self.connect(user.token, "query")
        b = await self.connect(second, "cookie")
        c = await self.connect(bystander.token, "bearer")
        await self.assertInviteCode(b, user)
        status, _, body = self.server.unregister(user.token, "bearer")
        self.assertEqual(status, 204, body)
        await self.assertClosedWith(a, CLOSE_SESSION_ENDED)
        await self.assertClosedWith(b, CLOSE_SESSION_ENDED)
        await self.assertInviteCode(c, bystander)
        status, _, body = self.server.login_response(user.username, user.password)
        self.assertEqual((status, error_code(body)), (401, "UNAUTHORIZED"))
        self.assertEqual(await ws_handshake_status(self.server, second, "bearer"), 401)
        again = self.server.register(user.username, user.password)
        self.assertEqual(again["username"], user.username)

    @async_test
    async def test_unregister_without_auth(self):
        status, _, body = self.server.request("POST", "/api/v1/auth/unregister")
        self.assertEqual((status, error_code(body)), (401, "UNAUTHORIZED"))


class WsFrameErrorTests(WsTestCase):

    def test_invalid_utf8_text_closes_1007(self):
        user = self.server.new_user("u8")
        with self.raw(user) as sock:
            sock.send_frame(OP_TEXT, b"\xff\xfe")
            self.assertEqual(sock.recv_close_code(), 1007)
            self.assertIsNotNone(sock.wait_eof(5), "server kept the TCP connection open")
        self.assertServerUp()

    def test_invalid_utf8_split_across_fragments_closes_1007(self):
        user = self.server.new_user("u8f")
        with self.raw(user) as sock:
            sock.send_frame(OP_TEXT, b'{"type":"\xe2\x82', fin=False)
            sock.send_frame(OP_CONT, b'\x28"}', fin=True)  # broken 3-byte sequence
            self.assertEqual(sock.recv_close_code(), 1007)

    def test_message_over_64k_closes_1009(self):
        user = self.server.new_user("big")
        with self.raw(user) as sock:
            sock.send_frame_staged(OP_TEXT, b"a" * 70000)
            self.assertEqual(sock.recv_close_code(), 1009)
        self.assertServerUp()

    def test_binary_frame_closes_1003(self):
        user = self.server.new_user("bin")
        with self.raw(user) as sock:
            sock.send_frame(OP_BINARY, b'{"type":"KEEP_ALIVE"}')
            self.assertEqual(sock.recv_close_code(), 1003)
        self.assertServerUp()

    def test_fragmented_request_is_reassembled(self):
        user = self.server.new_user("frag")
        with self.raw(user) as sock:
            msg = ('{"type":"%s","requestId":"fr"}' % INVITE_REQ).encode()
            sock.send_frame(OP_TEXT, msg[:10], fin=False)
            sock.send_frame(OP_PING, b"mid")  # control frames may interleave
            sock.send_frame(OP_CONT, msg[10:20], fin=False)
            sock.send_frame(OP_CONT, msg[20:], fin=True)
            frame = sock.recv_message()
            self.assertEqual(frame.opcode, OP_TEXT)
            self.assertIn(b'"fr"', frame.payload)
            self.assertIn(user.invite_code.encode(), frame.payload)

    def test_client_ping_gets_pong(self):
        user = self.server.new_user("ping")
        with self.raw(user) as sock:
            sock.send_frame(OP_PING, b"hello")
            deadline = time.monotonic() + 5
            while True:
                frame = sock.recv_frame(max(0.0, deadline - time.monotonic()))
                if frame.opcode == OP_PONG:
                    break
            self.assertEqual(frame.payload, b"hello")

    def test_client_close_is_answered(self):
        user = self.server.new_user("cl")
        with self.raw(user) as sock:
            sock.send_close(1000)
            self.assertEqual(sock.recv_close_code(), 1000)
        self.assertServerUp()

    def test_abrupt_disconnect_is_harmless(self):
        user = self.server.new_user("ab")
        sock = self.raw(user)
        sock.send_raw(b"\x81\xfe\x01")  # half a frame header, then vanish
        sock.close()
        self.assertServerUp()


class WsSmallMessageLimitTests(WsTestCase):
    server_sets = [RELAXED_ADDR_LIMIT, "ws.max_message_size=1024"]

    def test_frame_of_2000_bytes_closes_1009(self):
        user = self.server.new_user("sm")
        with self.raw(user) as sock:
            sock.send_frame_staged(OP_TEXT, b" " * 2000, first=100)
            self.assertEqual(sock.recv_close_code(), 1009)
        self.assertServerUp()

    def test_fragmented_message_over_limit_closes_1009(self):
        user = self.server.new_user("smf")
        with self.raw(user) as sock:
            sock.send_frame(OP_TEXT, b" " * 600, fin=False)
            sock.send_frame(OP_CONT, b" " * 600, fin=True)
            self.assertEqual(sock.recv_close_code(), 1009)

    def test_message_under_limit_is_answered(self):
        user = self.server.new_user("smo")
        with self.raw(user) as sock:
            msg = '{"type":"%s",%s"requestId":"pad"}' % (INVITE_REQ, " " * 900)
            self.assertLess(len(msg), 1024)
            sock.send_text(msg)
            frame = sock.recv_message()
            self.assertIn(user.invite_code.encode(), frame.payload)


class WsQuietSocketTests(WsTestCase):
    """The handshake must finish within ws.handshake_timeout; an open WebSocket
    may then stay silent (pings apart) for as long as ws.idle_timeout allows."""
    server_sets = [RELAXED_ADDR_LIMIT, "ws.handshake_timeout=1", "ws.idle_timeout=30",
                   "ws.ping_interval=20"]

    @async_test
    async def test_quiet_socket_outlives_the_handshake_timeout(self):
        user = self.server.new_user("quiet")
        ws = await self.connect(user.token)
        await self.assertInviteCode(ws, user, "before")
        await asyncio.sleep(2.5)    # silent, before and after its first request
        await self.assertInviteCode(ws, user, "after")
        self.assertIsNone(ws.close_code)

    def test_raw_socket_silent_from_the_start_stays_open(self):
        user = self.server.new_user("quiet")
        with self.raw(user) as sock:
            time.sleep(2.5)
            sock.send_text('{"type":"%s","requestId":"late"}' % INVITE_REQ)
            frame = sock.recv_message()
            self.assertIn(user.invite_code.encode(), frame.payload)


class WsSessionTtlTests(WsTestCase):
    server_sets = [RELAXED_ADDR_LIMIT, "session.ttl=3"]

    def test_expires_in_reports_ttl(self):
        name = unique_name("ttl")
        self.server.register(name)
        status, _, body = self.server.login_response(name)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["expiresIn"], 3)

    @async_test
    async def test_keep_alive_refreshes_session(self):
        user = self.server.new_user("kar")
        ws = await self.connect(user.token)
        for _ in range(5):
            await ws_send(ws, {"type": "KEEP_ALIVE"})
            await asyncio.sleep(1)
        await self.assertInviteCode(ws, user)
        self.assertEqual(self.server.logout(user.token)[0], 204,
                         "KEEP_ALIVE did not keep the session itself alive")

    @async_test
    async def test_idle_session_expires(self):
        user = self.server.new_user("idl")
        ws = await self.connect(user.token)
        await self.assertInviteCode(ws, user)
        await asyncio.sleep(4.5)
        try:
            await ws_send(ws, {"type": INVITE_REQ, "requestId": "late"})
            msg = await ws_recv(ws)
            self.fail("expired session still answered: %r" % msg)
        except connection_closed_types():
            pass
        await self.assertClosedWith(ws, CLOSE_SESSION_ENDED)
        status, _, body = self.server.logout(user.token)
        self.assertEqual((status, error_code(body)), (401, "UNAUTHORIZED"))
        self.assertEqual(await ws_handshake_status(self.server, user.token, "query"), 401)


    @async_test
    async def test_expired_session_closes_silent_sockets(self):
        """The end of a session by its TTL closes its WebSockets with 4001, as a
        logout does, without the client sending anything (on every node)."""
        user = self.server.new_user("exs")
        logged_in = time.monotonic()
        socks = [await self.connect(user.token, how) for how in ("query", "bearer", "cookie")]
        for ws in socks:
            await self.assertInviteCode(ws, user)
        for ws in socks:
            # TTL 3 s from the login (whole seconds), then one sweep (1 s)
            await self.assertClosedWith(ws, CLOSE_SESSION_ENDED,
                                        timeout=max(0.5, logged_in + 5.5 - time.monotonic()))
        self.assertLess(time.monotonic() - logged_in, 5.5)
        self.assertGreater(time.monotonic() - logged_in, 1.9, "closed before its TTL")


class WsServerPingTests(WsTestCase):
    server_sets = [RELAXED_ADDR_LIMIT, "ws.ping_interval=1"]

    @async_test
    async def test_client_answering_pings_stays_connected(self):
        user = self.server.new_user("png")
        ws = await self.connect(user.token)
        await asyncio.sleep(4)
        self.assertTrue(ws.open, "closed with %s" % ws.close_code)
        await self.assertInviteCode(ws, user)

    def test_server_sends_pings(self):
        user = self.server.new_user("pr")
        with self.raw(user) as sock:
            frame = sock.recv_frame(3.0)
            self.assertEqual(frame.opcode, OP_PING, frame)
            sock.send_frame(OP_PONG, frame.payload)


class WsIdleTimeoutTests(WsTestCase):
    server_sets = [RELAXED_ADDR_LIMIT, "ws.idle_timeout=2", "ws.ping_interval=1"]

    def test_silent_client_is_disconnected(self):
        user = self.server.new_user("sil")
        with self.raw(user) as sock:
            took = sock.wait_eof(8.0)
            self.assertIsNotNone(took, "silent client still connected after 8 s")
            self.assertGreaterEqual(took, 1.0, "closed before the idle timeout could pass")
            self.assertLessEqual(took, 5.5)
        self.assertServerUp()

    @async_test
    async def test_client_answering_pings_outlives_idle_timeout(self):
        user = self.server.new_user("liv")
        ws = await self.connect(user.token)
        await asyncio.sleep(4)
        self.assertTrue(ws.open, "closed with %s" % ws.close_code)
        await self.assertInviteCode(ws, user)


class ShutdownTests(unittest.TestCase):
    """SIGTERM with live WebSockets: they get close 1001, and chatd exits 0."""

    @async_test
    async def test_sigterm_closes_sockets_with_1001_and_exits_0(self):
        srv = Server([RELAXED_ADDR_LIMIT]).start()
        try:
            user = srv.new_user("down")
            ws = await ws_connect(srv, user.token, "query")
            self._sockets.append(ws)
            resp = await ws_request(ws, {"type": INVITE_REQ})
            self.assertEqual(resp.get("inviteCode"), user.invite_code)
            loop = asyncio.get_running_loop()
            stopping = loop.run_in_executor(None, srv.stop)
            code = await ws_wait_close(ws, 10)
            await stopping  # raises if the exit code was not 0
            self.assertEqual(code, 1001)
        finally:
            if srv.alive():
                srv._kill()


if __name__ == "__main__":
    unittest.main(verbosity=2)
