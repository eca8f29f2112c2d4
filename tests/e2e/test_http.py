#!/usr/bin/python3
"""End-to-end tests of chatd's HTTP surface: auth endpoints, health, metrics, limits."""

import json
import os
import shutil
import socket
import tempfile
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
    DEFAULT_PASSWORD,
    ServerTestCase,
    auth_headers,
    error_code,
    open_socket,
    parse_http_response,
    raw_exchange,
    recv_until_close,
    unique_name,
)

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
LOGOUT = "/api/v1/auth/logout"
UNREGISTER = "/api/v1/auth/unregister"

# The general class must not trip the per-address login limiter by accident.
RELAXED_ADDR_LIMIT = "plugins.auth.login_max_failures_per_addr=1000"


def parse_metrics(text):
    """{series name: summed value} over all label sets of a Prometheus text body."""
    totals = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        totals[m.group(1)] = totals.get(m.group(1), 0.0) + value
    return totals


def post_raw(port, path, body):
    """POST a JSON body over a raw socket, sending the head first.

    The body follows only if the server has not answered the head within a moment,
    so a server that refuses on Content-Length alone is not hit by a reset.
    """
    head = (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(body)))
    data, _ = raw_exchange(port, head, then=body)
    resp = parse_http_response(data)
    if resp is None:
        raise AssertionError("no HTTP response; got %r" % data[:200])
    return resp


class RegisterTests(ServerTestCase):
    server_sets = [RELAXED_ADDR_LIMIT]

    def register(self, body):
        return self.server.request("POST", REGISTER, body)

    def test_register_returns_201_with_user(self):
        name = unique_name("reg")
        status, headers, body = self.register({"username": name, "password": DEFAULT_PASSWORD})
        self.assertEqual(status, 201, body)
        self.assertTrue(headers.get("Content-Type", "").startswith("application/json"),
                        headers.get("Content-Type"))
        self.assertIsInstance(body, dict)
        self.assertEqual(set(body), {"userId", "username", "inviteCode"}, body)
        self.assertIsInstance(body["userId"], int)
        self.assertNotIsInstance(body["userId"], bool)
        self.assertEqual(body["username"], name)
        self.assertIsInstance(body["inviteCode"], str)
        self.assertTrue(body["inviteCode"])

    def test_two_users_get_distinct_ids_and_invite_codes(self):
        a = self.server.register(unique_name("dis"))
        b = self.server.register(unique_name("dis"))
        self.assertNotEqual(a["userId"], b["userId"])
        self.assertNotEqual(a["inviteCode"], b["inviteCode"])

    def test_username_boundaries_accepted(self):
        tag = os.urandom(4).hex()
        for name in ("x%s" % tag[:2],                      # 3 characters
                     ("L" + tag + "_" * 32)[:32],           # 32 characters
                     "a.b-c_D9" + tag):                     # every allowed class
            with self.subTest(name=name):
                status, _, body = self.register({"username": name, "password": DEFAULT_PASSWORD})
                self.assertEqual(status, 201, body)

    def test_invalid_usernames_rejected(self):
        tag = os.urandom(3).hex()
        for name in ("ab", "", "x" * 33, "bad name" + tag, "bad!" + tag, "bad/" + tag,
                     "caf\u00e9" + tag, "tab\t" + tag, "semi;" + tag):
            with self.subTest(name=name):
                resp = self.register({"username": name, "password": DEFAULT_PASSWORD})
                self.assertError(resp, 400, "BAD_REQUEST")

    def test_password_length_in_bytes(self):
        cases = [
            ("p" * 7, 400),
            ("p" * 8, 201),
            ("p" * 256, 201),
            ("p" * 257, 400),
            ("\u00e9" * 4, 201),    # 4 characters, 8 bytes
            ("\u00e9" * 129, 400),  # 129 characters, 258 bytes
        ]
        for password, expected in cases:
            with self.subTest(chars=len(password), utf8_bytes=len(password.encode())):
                resp = self.register({"username": unique_name("pw"), "password": password})
                if expected == 201:
                    self.assertEqual(resp[0], 201, resp[2])
                else:
                    self.assertError(resp, 400, "BAD_REQUEST")

    def test_missing_fields_rejected(self):
        for body in ({"username": unique_name("mf")}, {"password": DEFAULT_PASSWORD}, {}):
            with self.subTest(body=body):
                self.assertError(self.register(body), 400, "BAD_REQUEST")

    def test_mistyped_fields_rejected(self):
        for body in ({"username": 12345, "password": DEFAULT_PASSWORD},
                     {"username": unique_name("mt"), "password": 12345678},
                     {"username": None, "password": DEFAULT_PASSWORD},
                     {"username": [unique_name("mt")], "password": DEFAULT_PASSWORD}):
            with self.subTest(body=body):
                self.assertError(self.register(body), 400, "BAD_REQUEST")

    def test_non_object_json_rejected(self):
        for body in ("[1, 2]", '"alice"', "42", "null", "true"):
            with self.subTest(body=body):
                self.assertError(self.register(body), 400, "BAD_REQUEST")

    def test_invalid_json_rejected(self):
        for body in (b"{not json", b'{"username": "abc", "password": ', b"", b"\xff\xfe{}"):
            with self.subTest(body=body):
                resp = self.server.request("POST", REGISTER, body,
                                           {"Content-Type": "application/json"})
                self.assertError(resp, 400, "BAD_REQUEST")

    def test_username_taken_conflict(self):
        name = unique_name("dup")
        self.server.register(name)
        resp = self.register({"username": name, "password": "another password"})
        self.assertError(resp, 409, "CONFLICT")

    def test_username_taken_case_insensitive(self):
        name = unique_name("case").lower()
        self.server.register(name)
        for variant in (name.upper(), name[0].upper() + name[1:]):
            with self.subTest(variant=variant):
                resp = self.register({"username": variant, "password": DEFAULT_PASSWORD})
                self.assertError(resp, 409, "CONFLICT")


class LoginLogoutTests(ServerTestCase):
    server_sets = [RELAXED_ADDR_LIMIT]

    def login(self, username, password=DEFAULT_PASSWORD):
        return self.server.login_response(username, password)

    def test_login_returns_token_and_cookie(self):
        name = unique_name("li")
        reg = self.server.register(name)
        status, headers, body = self.login(name)
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body), {"token", "userId", "username", "expiresIn"}, body)
        self.assertIsInstance(body["token"], str)
        self.assertGreaterEqual(len(body["token"]), 16, "token looks too short to be secure")
        self.assertEqual(body["userId"], reg["userId"])
        self.assertEqual(body["username"], name)
        self.assertEqual(body["expiresIn"], 86400)

        cookies = [c for c in headers.get_all("Set-Cookie") or []
                   if c.strip().startswith("CHATSESSION=")]
        self.assertEqual(len(cookies), 1, headers.get_all("Set-Cookie"))
        parts = [p.strip() for p in cookies[0].split(";")]
        self.assertEqual(parts[0], "CHATSESSION=" + body["token"])
        attrs = {p.lower() for p in parts[1:]}
        self.assertIn("httponly", attrs, cookies[0])
        self.assertIn("samesite=strict", attrs, cookies[0])
        self.assertIn("path=/", attrs, cookies[0])

    def test_each_login_is_a_new_session(self):
        name = unique_name("two")
        self.server.register(name)
        t1 = self.server.login(name)
        t2 = self.server.login(name)
        self.assertNotEqual(t1, t2)

    def test_login_wrong_password(self):
        name = unique_name("wp")
        self.server.register(name)
        self.assertError(self.login(name, "wrong password"), 401, "UNAUTHORIZED")

    def test_login_unknown_user(self):
        self.assertError(self.login(unique_name("nouser")), 401, "UNAUTHORIZED")

    def test_login_bad_bodies(self):
        for body in ({"username": unique_name("lb")}, "[1]", b"{not json"):
            with self.subTest(body=body):
                resp = self.server.request("POST", LOGIN, body,
                                           {"Content-Type": "application/json"})
                self.assertError(resp, 400, "BAD_REQUEST")

    def _logout_kills_token(self, how):
        name = unique_name("lo")
        self.server.register(name)
        token = self.server.login(name)
        status, headers, body = self.server.request("POST", LOGOUT,
                                                    headers=auth_headers(token, how))
        self.assertEqual(status, 204, body)
        self.assertFalse(body, "204 must have no body")
        # the browser is told to drop its cookie
        self.assertEqual(headers.get("Set-Cookie"),
                         "CHATSESSION=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
        self.assertError(self.server.logout(token, "cookie"), 401, "UNAUTHORIZED")
        self.assertError(self.server.logout(token, "bearer"), 401, "UNAUTHORIZED")

    def test_logout_with_cookie(self):
        self._logout_kills_token("cookie")

    def test_logout_with_bearer(self):
        self._logout_kills_token("bearer")

    def test_logout_only_ends_that_session(self):
        name = unique_name("lo2")
        self.server.register(name)
        t1 = self.server.login(name)
        t2 = self.server.login(name)
        self.assertEqual(self.server.logout(t1)[0], 204)
        self.assertEqual(self.server.logout(t2)[0], 204, "other session must stay valid")

    def test_logout_without_auth(self):
        self.assertError(self.server.request("POST", LOGOUT), 401, "UNAUTHORIZED")

    def test_logout_with_bogus_tokens(self):
        for how, token in (("bearer", "not-a-real-token"), ("cookie", "x" * 64),
                           ("bearer", "")):
            with self.subTest(how=how, token=token[:10]):
                resp = self.server.request("POST", LOGOUT, headers=auth_headers(token, how))
                self.assertError(resp, 401, "UNAUTHORIZED")

    def test_cookie_among_other_cookies(self):
        name = unique_name("ck")
        self.server.register(name)
        token = self.server.login(name)
        resp = self.server.request("POST", LOGOUT, headers={
            "Cookie": "theme=dark; CHATSESSION=%s; lang=en" % token})
        self.assertEqual(resp[0], 204, resp[2])

    def test_unregister(self):
        name = unique_name("unr")
        self.server.register(name)
        token = self.server.login(name)
        other = self.server.login(name)
        status, _, body = self.server.unregister(token, "cookie")
        self.assertEqual(status, 204, body)
        self.assertError(self.server.login_response(name), 401, "UNAUTHORIZED")
        # every session of the user is gone
        self.assertError(self.server.logout(token), 401, "UNAUTHORIZED")
        self.assertError(self.server.logout(other), 401, "UNAUTHORIZED")
        self.assertError(self.server.unregister(other), 401, "UNAUTHORIZED")
        # the name is free again, and the new account works
        reg = self.server.register(name, "a new password")
        self.assertEqual(reg["username"], name)
        token2 = self.server.login(name, "a new password")
        self.assertEqual(self.server.logout(token2)[0], 204)

    def test_unregister_with_bearer(self):
        name = unique_name("unb")
        self.server.register(name)
        token = self.server.login(name)
        self.assertEqual(self.server.unregister(token, "bearer")[0], 204)
        self.assertError(self.server.login_response(name), 401, "UNAUTHORIZED")

    def test_unregister_without_auth(self):
        self.assertError(self.server.request("POST", UNREGISTER), 401, "UNAUTHORIZED")
        resp = self.server.request("POST", UNREGISTER, headers=auth_headers("bogus", "bearer"))
        self.assertError(resp, 401, "UNAUTHORIZED")


class LoginRateLimitPerUserTests(ServerTestCase):
    server_sets = []  # defaults: 5 failures per username, 20 per address

    def test_sixth_login_after_five_failures_is_rate_limited(self):
        name = unique_name("rl")
        self.server.register(name)
        for i in range(5):
            with self.subTest(attempt=i + 1):
                resp = self.server.login_response(name, "wrong password %d" % i)
                self.assertError(resp, 401, "UNAUTHORIZED")
        resp = self.server.login_response(name, DEFAULT_PASSWORD)
        self.assertError(resp, 429, "RATE_LIMITED")
        # The limit is per username: another user from the same address logs in.
        other = unique_name("rl")
        self.server.register(other)
        status, _, body = self.server.login_response(other)
        self.assertEqual(status, 200, body)


class LoginRateLimitPerAddrTests(ServerTestCase):
    server_sets = ["plugins.auth.login_max_failures_per_addr=3"]

    def test_failures_over_many_usernames_rate_limit_the_address(self):
        names = [unique_name("ra") for _ in range(4)]
        for n in names:
            self.server.register(n)
        for n in names[:3]:
            with self.subTest(user=n):
                self.assertError(self.server.login_response(n, "wrong password"),
                                 401, "UNAUTHORIZED")
        resp = self.server.login_response(names[3], DEFAULT_PASSWORD)
        self.assertError(resp, 429, "RATE_LIMITED")


class TrustedProxyTests(ServerTestCase):
    """Behind a balancer listed in http.trusted_proxies, the client address is
    the last X-Forwarded-For entry: limits apply per real client."""
    server_sets = ["plugins.auth.login_max_failures_per_addr=2",
                   'http.trusted_proxies=["127.0.0.1"]']

    def login_from(self, name, password, client):
        return self.server.login_response(name, password,
                                          headers={"X-Forwarded-For": "192.0.2.99, " + client})

    def test_address_limit_follows_forwarded_client(self):
        names = [unique_name("tp") for _ in range(3)]
        for n in names:
            self.server.register(n)
        for n in names[:2]:
            self.assertError(self.login_from(n, "wrong password", "198.51.100.7"),
                             401, "UNAUTHORIZED")
        # that client is limited...
        self.assertError(self.login_from(names[2], DEFAULT_PASSWORD, "198.51.100.7"),
                         429, "RATE_LIMITED")
        # ...another client behind the same balancer is not
        status, _, body = self.login_from(names[2], DEFAULT_PASSWORD, "198.51.100.8")
        self.assertEqual(status, 200, body)


class UntrustedForwardedForTests(ServerTestCase):
    """X-Forwarded-For from a peer not in http.trusted_proxies is ignored."""
    server_sets = ["plugins.auth.login_max_failures_per_addr=2"]

    def test_forwarded_for_cannot_dodge_the_address_limit(self):
        names = [unique_name("uf") for _ in range(3)]
        for n in names:
            self.server.register(n)
        for i, n in enumerate(names[:2]):
            resp = self.server.login_response(n, "wrong password",
                                              headers={"X-Forwarded-For": "203.0.113.%d" % i})
            self.assertError(resp, 401, "UNAUTHORIZED")
        resp = self.server.login_response(names[2], DEFAULT_PASSWORD,
                                          headers={"X-Forwarded-For": "203.0.113.9"})
        self.assertError(resp, 429, "RATE_LIMITED")


class RoutingTests(ServerTestCase):
    server_sets = [RELAXED_ADDR_LIMIT]

    def test_healthz(self):
        status, headers, body = self.server.request("GET", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"status": "ok"})
        self.assertTrue(headers.get("Content-Type", "").startswith("application/json"))

    def test_unknown_path_404(self):
        for path in ("/nope", "/api/v1/nope", "/api/v1/auth/loginx", "/api/v2/auth/login",
                     "/healthz/extra"):
            with self.subTest(path=path):
                self.assertError(self.server.request("GET", path), 404, "NOT_FOUND")
        self.assertError(self.server.request("POST", "/api/v1/nope", {}), 404, "NOT_FOUND")

    def test_root_404_without_web_root(self):
        status, _, body = self.server.request("GET", "/")
        self.assertEqual(status, 404, body)
        status, _, body = self.server.request("GET", "/index.html")
        self.assertEqual(status, 404, body)

    def test_wrong_method_405(self):
        for method, path in (("GET", LOGIN), ("GET", REGISTER), ("GET", LOGOUT),
                             ("PUT", UNREGISTER), ("DELETE", LOGIN),
                             ("POST", "/healthz"), ("POST", "/metrics")):
            with self.subTest(method=method, path=path):
                self.assertError(self.server.request(method, path), 405, "BAD_REQUEST")

    def test_query_string_ignored_for_routing(self):
        status, _, body = self.server.request("GET", "/healthz?x=1")
        self.assertEqual((status, body), (200, {"status": "ok"}))

    def test_metrics(self):
        status, headers, body = self.server.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("Content-Type", "").startswith("text/plain"),
                        headers.get("Content-Type"))
        self.assertIsInstance(body, bytes)
        text = body.decode("utf-8")
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        self.assertTrue(lines)
        self.assertTrue(any(ln.startswith("chatd_") for ln in lines), text[:500])
        before = parse_metrics(text)
        counters = [n for n in before if n.startswith("chatd_http") and "request" in n
                    and n.endswith("_total")]
        self.assertTrue(counters, "no chatd_http*request*_total counter in:\n" + text[:2000])
        name = "chatd_http_requests_total" if "chatd_http_requests_total" in before else counters[0]

        for _ in range(3):
            self.server.request("GET", "/healthz")
        status, _, body = self.server.request("GET", "/metrics")
        self.assertEqual(status, 200)
        after = parse_metrics(body.decode("utf-8"))
        self.assertGreaterEqual(after.get(name, 0), before[name] + 3,
                                "%s did not grow by 3 requests" % name)

    def test_keep_alive(self):
        conn = self.server.connection()
        try:
            status1, h1, body1 = self.server.request("GET", "/healthz", conn=conn)
            sock1 = conn.sock
            self.assertIsNotNone(sock1, "server closed a keep-alive connection")
            self.assertNotEqual((h1.get("Connection") or "").lower(), "close")
            status2, _, body2 = self.server.request("POST", LOGIN,
                                                    {"username": unique_name("ka"),
                                                     "password": "whatever1"}, conn=conn)
            self.assertIs(conn.sock, sock1, "second request needed a new connection")
            status3, _, body3 = self.server.request("GET", "/healthz", conn=conn)
            self.assertIs(conn.sock, sock1, "third request needed a new connection")
        finally:
            conn.close()
        self.assertEqual((status1, body1), (200, {"status": "ok"}))
        self.assertEqual((status2, error_code(body2)), (401, "UNAUTHORIZED"))
        self.assertEqual((status3, body3), (200, {"status": "ok"}))

    def test_pipelined_requests(self):
        req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        data, _ = raw_exchange(self.server.port, req + req + req.replace(
            b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"))
        self.assertEqual(data.count(b"HTTP/1.1 200"), 3, data)

    def test_half_closed_client_gets_its_answer(self):
        """A request, then the client's FIN at once: an answer made at once (healthz)
        is still being written when the FIN is read, and must not be dropped."""
        for _ in range(20):
            with open_socket(self.server.port, 5) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                socket.socket.shutdown(sock, socket.SHUT_WR)  # TCP's, under TLS too
                data, eof = recv_until_close(sock)
            self.assertTrue(eof)
            self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:100])


class MalformedHttpTests(ServerTestCase):
    server_sets = [RELAXED_ADDR_LIMIT]

    def assertRejected(self, payload, status=400, code=None):
        data, eof = raw_exchange(self.server.port, payload)
        resp = parse_http_response(data)
        self.assertIsNotNone(resp, "no HTTP response to %r; got %r" % (payload[:60], data[:200]))
        self.assertEqual(resp.status, status, resp)
        if code is not None:
            self.assertEqual(error_code(resp.json()), code, resp)
        self.assertTrue(eof, "connection left open after %s" % status)
        self.assertServerUp()
        return resp

    def test_garbage_request_line(self):
        self.assertRejected(b"GARBAGE\r\n\r\n")

    def test_header_without_colon(self):
        self.assertRejected(b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n")

    def test_header_name_with_space(self):
        self.assertRejected(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n")

    def test_bad_content_length(self):
        self.assertRejected(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: abc\r\n\r\n")

    def test_binary_junk(self):
        self.assertRejected(bytes(range(1, 32)) + b"\r\n\r\n")

    def test_client_closing_mid_request_does_not_hurt(self):
        raw_exchange(self.server.port, b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100\r\n\r\n{\"user", timeout=0.3)
        self.assertServerUp()

    def test_head_over_8k_is_431(self):
        filler = b"X-Fill: " + b"a" * 9000 + b"\r\n"
        payload = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n"
        resp = self.assertRejected(payload, 431, "LIMIT_EXCEEDED")
        self.assertTrue(resp.headers.get("content-type", "").startswith("application/json"))

    def test_many_headers_over_8k_is_431(self):
        filler = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(100))
        self.assertRejected(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n",
                            431, "LIMIT_EXCEEDED")

    def test_head_under_limit_is_fine(self):
        filler = "b" * 6000
        status, _, body = self.server.request("GET", "/healthz", headers={"X-Fill": filler})
        self.assertEqual((status, body), (200, {"status": "ok"}))

    def test_body_over_64k_is_413(self):
        body = b'{"username":"' + b"a" * 70000 + b'","password":"secretpass"}'
        resp = post_raw(self.server.port, REGISTER, body)
        self.assertEqual((resp.status, error_code(resp.json())), (413, "LIMIT_EXCEEDED"), resp)
        self.assertServerUp()

    def test_body_under_64k_is_parsed(self):
        # 60 000 bytes is within the limit, so the request reaches validation (400).
        resp = self.server.request("POST", REGISTER,
                                   {"username": unique_name("big"), "password": "p" * 60000})
        self.assertError(resp, 400, "BAD_REQUEST")


class SmallLimitsTests(ServerTestCase):
    server_sets = [RELAXED_ADDR_LIMIT, "http.max_body_size=1000", "http.max_head_size=4096"]

    def test_body_of_2000_bytes_is_413(self):
        body = ('{"username":"%s","password":"%s"}' % (unique_name("sb"), "p" * 1950)).encode()
        resp = post_raw(self.server.port, REGISTER, body)
        self.assertEqual((resp.status, error_code(resp.json())), (413, "LIMIT_EXCEEDED"), resp)
        self.assertServerUp()

    def test_body_of_500_bytes_is_parsed(self):
        resp = self.server.request("POST", REGISTER,
                                   {"username": unique_name("sb"), "password": "p" * 450})
        self.assertError(resp, 400, "BAD_REQUEST")
        name = unique_name("sb")
        status, _, body = self.server.request("POST", REGISTER,
                                              {"username": name, "password": DEFAULT_PASSWORD})
        self.assertEqual(status, 201, body)

    def test_head_of_5000_bytes_is_431(self):
        filler = b"X-Fill: " + b"a" * 5000 + b"\r\n"
        data, eof = raw_exchange(self.server.port,
                                 b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + filler + b"\r\n")
        resp = parse_http_response(data)
        self.assertIsNotNone(resp, data[:200])
        self.assertEqual((resp.status, error_code(resp.json())), (431, "LIMIT_EXCEEDED"), resp)
        self.assertServerUp()



class HeadTests(ServerTestCase):
    """HEAD is GET without the body (RFC 9110 9.3.2), errors included, so a
    keep-alive connection stays framed: load balancers probe HEAD /healthz."""
    server_sets = [RELAXED_ADDR_LIMIT]

    @classmethod
    def setUpClass(cls):
        cls.web_root = tempfile.mkdtemp(prefix="chatd-head-")
        with open(os.path.join(cls.web_root, "hello.txt"), "w") as f:
            f.write("hello, head\n")
        cls.server_sets = cls.server_sets + ['http.web_root="%s"' % cls.web_root]
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.web_root, ignore_errors=True)

    def exchange(self, *requests):
        """Send the requests on one keep-alive connection; parse every answer,
        reading a body only where the request was not HEAD."""
        conn = self.server.connection()
        out = []
        try:
            for method, path in requests:
                conn.request(method, path)
                resp = conn.getresponse()
                out.append((resp.status, resp.headers, resp.read()))
        finally:
            conn.close()
        return out

    def test_head_answers_as_get_without_a_body(self):
        for path in ("/healthz", "/metrics", "/hello.txt"):
            with self.subTest(path=path):
                (gs, gh, gbody), (hs, hh, hbody), (after, _, abody) = self.exchange(
                    ("GET", path), ("HEAD", path), ("GET", "/healthz"))
                self.assertEqual((gs, hs), (200, 200))
                self.assertEqual(hbody, b"")
                self.assertEqual(hh.get("Content-Type"), gh.get("Content-Type"))
                if path != "/metrics":  # the metrics text changes between the two requests
                    self.assertEqual(hh.get("Content-Length"), str(len(gbody)))
                # the next answer on the connection is framed right
                self.assertEqual((after, json.loads(abody)), (200, {"status": "ok"}))

    def test_head_errors_have_no_body(self):
        for path, status in (("/nope", 404), (LOGIN, 405), ("/no-such-file.txt", 404)):
            with self.subTest(path=path):
                data, _ = raw_exchange(self.server.port,
                                       b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n"
                                       b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: close\r\n\r\n" % path.encode())
                head, sep, rest = data.partition(b"\r\n\r\n")
                self.assertTrue(head.startswith(b"HTTP/1.1 %d" % status), data[:200])
                # the body of the HEAD answer would sit before the next status line
                self.assertTrue(rest.startswith(b"HTTP/1.1 200"), data[:400])

    def test_405_names_the_allowed_methods(self):
        status, headers, _ = self.server.request("GET", LOGIN)
        self.assertEqual(status, 405)
        self.assertEqual(headers.get("Allow"), "POST")
        status, headers, _ = self.server.request("POST", "/healthz")
        self.assertEqual(status, 405)
        self.assertEqual(headers.get("Allow"), "GET, HEAD")


class HeaderCountTests(ServerTestCase):
    server_sets = [RELAXED_ADDR_LIMIT, "http.max_headers=10"]

    def test_header_lines_past_max_headers_are_431(self):
        def request(n):
            filler = b"".join(b"X-H%d: v\r\n" % i for i in range(n))
            data, _ = raw_exchange(self.server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" +
                                   filler + b"Connection: close\r\n\r\n")
            return parse_http_response(data)
        ok = request(8)  # 8 + Host + Connection = 10
        self.assertEqual(ok.status, 200, ok)
        over = request(9)
        self.assertEqual((over.status, error_code(over.json())), (431, "LIMIT_EXCEEDED"), over)
        self.assertIn("http.max_headers", over.json()["message"])


class ManyHeadersTests(ServerTestCase):
    server_sets = [RELAXED_ADDR_LIMIT, "http.max_headers=200"]

    def test_more_than_64_headers_when_allowed(self):
        filler = b"".join(b"X-H%d: v\r\n" % i for i in range(100))
        data, _ = raw_exchange(self.server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" +
                               filler + b"Connection: close\r\n\r\n")
        resp = parse_http_response(data)
        self.assertEqual(resp.status, 200, resp)

if __name__ == "__main__":
    unittest.main(verbosity=2)
