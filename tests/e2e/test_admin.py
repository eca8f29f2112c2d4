#!/usr/bin/python3
"""End-to-end tests of the admin API (docs/PROTOCOL.md section 7.1): the
token, the users (list, ban, unban, logout), channel deletion and the stats,
and the API on an address of its own (admin.listen)."""

import asyncio
import calendar
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (  # noqa: E402
    HOST,
    RawWebSocket,
    auth_headers,
    cluster_size,
    error_code,
    unique_name,
    ws_handshake_status,
)
from domain import (  # noqa: E402
    ADDR_LIMIT_SET,
    CREATED_AT_RE,
    UNKNOWN_CHANNEL,
    DomainTestCase,
    async_test,
    chan,
)

ADMIN_TOKEN = "e2e-admin-" + os.urandom(16).hex()
WRONG_TOKEN = "e2e-wrong-" + os.urandom(16).hex()
ADMIN_SETS = [ADDR_LIMIT_SET, 'admin.token="%s"' % ADMIN_TOKEN,
              # a user's last WebSocket gone: offline after 1 s (not 5)
              "plugins.connection.presence_grace=1"]

USERS = "/api/v1/admin/users"
STATS = "/api/v1/admin/stats"
CLOSE_SESSION_ENDED = 4001
CLOSE_WITHIN = 1.5  # seconds a ban or a logout may take to close a WebSocket
USER_KEYS = {"username", "userId", "createdAt", "online", "banned"}


def every_route(cid=UNKNOWN_CHANNEL, name="nobody_here"):
    return [("GET", USERS), ("GET", USERS + "?prefix=a&limit=5"),
            ("POST", "%s/%s/ban" % (USERS, name)), ("POST", "%s/%s/unban" % (USERS, name)),
            ("POST", "%s/%s/logout" % (USERS, name)),
            ("DELETE", "/api/v1/admin/channels/%d" % cid), ("GET", STATS)]


class AdminCase(DomainTestCase):
    """One chatd with admin.token set; ``admin()`` asks its API."""

    server_sets = ADMIN_SETS

    @classmethod
    def tearDownClass(cls):
        srv = cls.server
        super().tearDownClass()
        if srv is not None:
            log = srv.log_text()
            for what, token in (("admin", ADMIN_TOKEN), ("wrong admin", WRONG_TOKEN)):
                if token in log:
                    raise AssertionError("the %s token appears in the server log" % what)

    def admin(self, method, path, token=ADMIN_TOKEN):
        headers = {} if token is None else {"Authorization": "Bearer " + token}
        return self.server.request(method, path, headers=headers)

    def admin_ok(self, method, path, status=200):
        got, _, body = self.admin(method, path)
        self.assertEqual(got, status, "%s %s: %r" % (method, path, body))
        return body

    def listing(self, prefix=None, limit=None):
        query = []
        if prefix is not None:
            query.append("prefix=" + prefix)
        if limit is not None:
            query.append("limit=%s" % limit)
        body = self.admin_ok("GET", USERS + ("?" + "&".join(query) if query else ""))
        self.assertEqual(set(body), {"users"}, body)
        for u in body["users"]:
            self.assertEqual(set(u), USER_KEYS, u)
        return body["users"]

    def entry(self, user):
        found = [u for u in self.listing(user.username) if u["userId"] == user.user_id]
        self.assertEqual(len(found), 1, "%s not listed once" % user.username)
        return found[0]

    def stats(self):
        body = self.admin_ok("GET", STATS)
        self.assertEqual(set(body), {"users", "channels", "messages", "connections", "nodes"},
                         body)
        for n in body["nodes"]:
            self.assertEqual(set(n), {"node", "connections", "users"}, n)
            self.assertIsInstance(n["node"], str)
            self.assertTrue(n["node"], n)
        self.assertEqual(body["connections"], sum(n["connections"] for n in body["nodes"]),
                         body)
        return body

    async def wait_for(self, what, pred, timeout=5.0):
        """Poll pred() (a blocking call, run off the loop) until it is true."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            value = await loop.run_in_executor(None, pred)
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail("%s: not within %.1f s" % (what, timeout))
            await asyncio.sleep(0.1)

    async def assertClosedWith(self, client, code, within=CLOSE_WITHIN):
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(client.ws.wait_closed(), within)
        except asyncio.TimeoutError:
            self.fail("%s: still open %.1f s later" % (client.label, within))
        self.assertEqual(client.ws.close_code, code, client.label)
        return time.monotonic() - t0

    async def assertAlive(self, client):
        resp = await client.request("FETCH_CHANNELS_LIST_REQUEST", {})
        self.assertOk(resp, "FETCH_CHANNELS_LIST_RESPONSE")


class AdminOffTests(DomainTestCase):
    """Without admin.token the API is not there."""

    def test_every_route_is_404_without_a_token_set(self):
        for method, path in every_route():
            for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
                with self.subTest(method=method, path=path, headers=headers):
                    status, _, body = self.server.request(method, path, headers=headers)
                    self.assertEqual((status, error_code(body)), (404, "NOT_FOUND"), body)

    def test_login_works_as_before(self):
        u = self.user("off")
        status, _, body = self.server.login_response(u.username)
        self.assertEqual(status, 200, body)


class AdminTokenTests(AdminCase):

    def test_missing_or_wrong_token_is_401_on_every_route(self):
        for method, path in every_route():
            for headers in ({}, {"Authorization": "Bearer " + WRONG_TOKEN},
                            {"Authorization": "Bearer " + ADMIN_TOKEN[:-1]},
                            {"Authorization": "Bearer " + ADMIN_TOKEN + "x"},
                            {"Authorization": "Basic " + ADMIN_TOKEN},
                            {"Authorization": ADMIN_TOKEN}):
                with self.subTest(method=method, path=path, headers=headers):
                    status, _, body = self.server.request(method, path, headers=headers)
                    self.assertEqual((status, error_code(body)), (401, "UNAUTHORIZED"), body)
                    self.assertIsInstance(body.get("message"), str)

    def test_a_session_token_is_no_admin_token(self):
        u = self.user("tok")
        for method, path in every_route():
            with self.subTest(method=method, path=path):
                status, _, body = self.server.request(method, path,
                                                      headers=auth_headers(u.token, "bearer"))
                self.assertEqual((status, error_code(body)), (401, "UNAUTHORIZED"), body)

    def test_right_token_is_let_in(self):
        for path in (USERS, STATS):
            status, hdrs, body = self.admin("GET", path)
            self.assertEqual(status, 200, body)
            self.assertIn("application/json", hdrs.get("Content-Type", ""))
        # the routes that name a user or a channel answer for them, not for the token
        for method, path in every_route()[2:-1]:
            with self.subTest(method=method, path=path):
                status, _, body = self.admin(method, path)
                self.assertEqual((status, error_code(body)), (404, "NOT_FOUND"), body)


class UsersListTests(AdminCase):

    def register_named(self, *names):
        out = []
        for name in names:
            reg = self.server.register(name)
            out.append((name, reg["userId"]))
        return out

    def test_prefix_lists_matching_users_sorted_with_their_fields(self):
        base = unique_name("ls")[:20]
        made = self.register_named(base + "c", base + "a", base + "b2", base + "b1")
        before = time.time()
        users = self.listing(base)
        self.assertEqual([u["username"] for u in users],
                         [base + "a", base + "b1", base + "b2", base + "c"])
        ids = dict(made)
        for u in users:
            self.assertEqual(u["userId"], ids[u["username"]])
            self.assertRegex(u["createdAt"], CREATED_AT_RE)
            self.assertIs(u["banned"], False)
            self.assertIs(u["online"], False)
            created = calendar.timegm(time.strptime(u["createdAt"][:19], "%Y-%m-%dT%H:%M:%S"))
            self.assertLess(abs(created - before), 120, u)
        self.assertEqual([u["username"] for u in self.listing(base + "b")],
                         [base + "b1", base + "b2"])
        self.assertEqual(self.listing(base + "zz"), [])

    def test_prefix_is_caseless_and_names_keep_their_spelling(self):
        base = unique_name("cs")[:20]
        self.register_named(base + "MiXed")
        for prefix in (base.upper(), base + "mix", base + "MIXED"):
            with self.subTest(prefix=prefix):
                self.assertEqual([u["username"] for u in self.listing(prefix)],
                                 [base + "MiXed"])

    def test_like_wildcards_in_the_prefix_match_only_themselves(self):
        base = unique_name("wc")[:20]
        self.register_named(base + "_one", base + "x_two", base + "y.four")
        self.assertEqual([u["username"] for u in self.listing(base + "_")], [base + "_one"])
        self.assertEqual(self.listing(base + "%25"), [])   # "%" itself: nobody has it
        self.assertEqual(self.listing(base + "!"), [])
        self.assertEqual(self.listing("%25"), [])
        self.assertEqual(self.listing("_"), [])            # every name starts with a letter
        self.assertEqual([u["username"] for u in self.listing(base + "y.")], [base + "y.four"])

    def test_limit_and_its_default(self):
        base = unique_name("lm")[:20]
        names = sorted(n for n, _ in self.register_named(
            *["%s%02d" % (base, i) for i in range(6)]))
        self.assertEqual([u["username"] for u in self.listing(base, 2)], names[:2])
        self.assertEqual([u["username"] for u in self.listing(base, 1)], names[:1])
        self.assertEqual([u["username"] for u in self.listing(base, 1000)], names)
        for i in range(50):  # more users than the default limit
            self.server.register("%s_d%02d" % (base, i))
        self.assertEqual(len(self.listing(base)), 50)
        self.assertEqual(len(self.listing(base, 1000)), 56)
        everyone = self.listing(None, 1000)
        self.assertEqual(len(self.listing()), 50)
        got = [u["username"].lower() for u in everyone]
        self.assertEqual(got, sorted(got))  # by the lower-cased name, bytewise (both dialects)

    def test_bad_parameters_are_400(self):
        for query in ("limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=1.5", "limit=",
                      "limit=%20", "limit=99999999999999999999", "limit=1e2",
                      "prefix=" + "a" * 100, "prefix=a&limit=0"):
            with self.subTest(query=query):
                status, _, body = self.admin("GET", USERS + "?" + query)
                self.assertEqual((status, error_code(body)), (400, "BAD_REQUEST"), body)
                self.assertIsInstance(body.get("message"), str)

    @async_test
    async def test_online_is_cluster_wide_presence(self):
        a, b = self.user("ona"), self.user("onb")
        client = await self.connect(a)

        def online_of():
            return (self.entry(a)["online"], self.entry(b)["online"])

        await self.wait_for("a online", lambda: online_of() == (True, False))
        await self.disconnect(client)
        # offline once presence_grace (1 s) has passed with no WebSocket
        await self.wait_for("a offline", lambda: online_of() == (False, False))

    def test_banned_is_listed(self):
        u = self.user("lb")
        self.assertIs(self.entry(u)["banned"], False)
        self.admin_ok("POST", "%s/%s/ban" % (USERS, u.username))
        self.assertIs(self.entry(u)["banned"], True)
        self.admin_ok("POST", "%s/%s/unban" % (USERS, u.username))
        self.assertIs(self.entry(u)["banned"], False)


class BanTests(AdminCase):

    @async_test
    async def test_ban_closes_every_socket_refuses_login_and_unban_lets_in(self):
        victim, other = self.user("vic"), self.user("oth")
        second = self.server.login(victim.username)
        socks = [await self.connect(victim), await self.connect(victim, token=second)]
        bystander = await self.connect(other)
        body = self.admin_ok("POST", "%s/%s/ban" % (USERS, victim.username))
        self.assertEqual(body, {"username": victim.username, "banned": True})
        for c in socks:
            await self.assertClosedWith(c, CLOSE_SESSION_ENDED)
        await self.assertAlive(bystander)
        # the right password: 403; a wrong one: 401 as for anyone
        status, _, body = self.server.login_response(victim.username)
        self.assertEqual((status, error_code(body)), (403, "FORBIDDEN"), body)
        self.assertIn("banned", body["message"])
        self.assertNotIn("token", body)
        status, _, body = self.server.login_response(victim.username, "wrong password!")
        self.assertEqual((status, error_code(body)), (401, "UNAUTHORIZED"), body)
        # the old tokens are dead
        for token in (victim.token, second):
            self.assertEqual(await ws_handshake_status(self.server, token), 401)
            status, _, _ = self.server.logout(token)
            self.assertEqual(status, 401)
        status, _, body = self.server.login_response(other.username)
        self.assertEqual(status, 200, body)
        # again: the same answer
        body = self.admin_ok("POST", "%s/%s/ban" % (USERS, victim.username.upper()))
        self.assertEqual(body, {"username": victim.username, "banned": True})
        body = self.admin_ok("POST", "%s/%s/unban" % (USERS, victim.username))
        self.assertEqual(body, {"username": victim.username, "banned": False})
        token = self.server.login(victim.username)
        await self.assertAlive(await self.connect(victim, token=token))
        body = self.admin_ok("POST", "%s/%s/unban" % (USERS, victim.username))
        self.assertEqual(body, {"username": victim.username, "banned": False})

    @async_test
    async def test_sockets_close_promptly(self):
        victim = self.user("prm")
        c = await self.connect(victim)
        t0 = time.monotonic()
        self.admin_ok("POST", "%s/%s/ban" % (USERS, victim.username))
        await self.assertClosedWith(c, CLOSE_SESSION_ENDED, 1.0)
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_unknown_user_or_action(self):
        u = self.user("unk")
        # the user's own name is found, by each action
        for action, body in (("logout", {"username": u.username}),
                             ("unban", {"username": u.username, "banned": False})):
            self.assertEqual(self.admin_ok("POST", "%s/%s/%s" % (USERS, u.username, action)),
                             body)
        for action in ("ban", "unban", "logout"):
            for name in ("no_such_user_x", "bad%20name", "a" * 80, "%2E%2E"):
                with self.subTest(action=action, name=name):
                    status, _, body = self.admin("POST", "%s/%s/%s" % (USERS, name, action))
                    self.assertEqual((status, error_code(body)), (404, "NOT_FOUND"), body)
        for path in ("%s/%s/kick" % (USERS, u.username), "%s/%s" % (USERS, u.username),
                     "%s/%s/ban/x" % (USERS, u.username), "%s//ban" % USERS):
            with self.subTest(path=path):
                status, _, body = self.admin("POST", path)
                self.assertEqual((status, error_code(body)), (404, "NOT_FOUND"), body)
        status, _, body = self.server.login_response(u.username)
        self.assertEqual(status, 200, body)


class LogoutTests(AdminCase):

    @async_test
    async def test_logout_ends_every_session_and_login_works_again(self):
        u, other = self.user("lo"), self.user("lo2")
        second = self.server.login(u.username)
        socks = [await self.connect(u), await self.connect(u, token=second)]
        bystander = await self.connect(other)
        body = self.admin_ok("POST", "%s/%s/logout" % (USERS, u.username.upper()))
        self.assertEqual(body, {"username": u.username})
        for c in socks:
            await self.assertClosedWith(c, CLOSE_SESSION_ENDED)
        await self.assertAlive(bystander)
        for token in (u.token, second):
            self.assertEqual(await ws_handshake_status(self.server, token), 401)
        self.assertIs(self.entry(u)["banned"], False)
        token = self.server.login(u.username)
        await self.assertAlive(await self.connect(u, token=token))
        # a user without sessions: still 200
        self.assertEqual(self.admin_ok("POST", "%s/%s/logout" % (USERS, other.username)),
                         {"username": other.username})


class ChannelDeleteTests(AdminCase):

    @async_test
    async def test_delete_tells_every_member_once_and_leaves_nothing(self):
        owner, m1, m2, outsider = self.user("ow"), self.user("ma"), self.user("mb"), \
            self.user("ou")
        cid = await self.channel_with(owner, m1, m2)
        co = await self.connect(owner)
        kept = await self.create_group(co, [m1])
        m1_token = self.server.login(m1.username)
        c1a, c1b = await self.connect(m1), await self.connect(m1, token=m1_token)
        c2, cx = await self.connect(m2), await self.connect(outsider)
        for c in (co, c1a):
            await self.enter(c, cid)
        for i in range(3):
            await self.write(co, cid, "doomed %d" % i)
        resp = await c1a.request("REACT_REQUEST", {"channelId": chan(cid), "messageSequence": 1,
                                                   "emoji": "x", "on": True})
        self.assertOk(resp, "REACT_RESPONSE")
        await self.write(co, kept, "kept")
        before = self.stats()

        body = self.admin_ok("DELETE", "/api/v1/admin/channels/%d" % cid)
        self.assertEqual(body, {"channelId": chan(cid)})
        for c in (co, c1a, c1b, c2):
            note = await c.expect("NOTIFY_CHANNEL_DELETED")
            self.assertEqual(note, {"type": "NOTIFY_CHANNEL_DELETED", "channelId": chan(cid)})
        for c in (co, c1a, c1b, c2, cx):
            await c.expect_none("NOTIFY_CHANNEL_DELETED", 0.3)

        for c in (co, c1a):
            await self.assertRequestFails(c, "WRITE_MESSAGE",
                                          {"channelId": chan(cid), "content": "x"}, "NOT_FOUND")
            await self.assertRequestFails(c, "FETCH_MESSAGES_REQUEST", {"channelId": chan(cid)},
                                          "NOT_FOUND")
            await self.assertRequestFails(c, "ENTER_REQUEST", {"channelId": chan(cid)},
                                          "NOT_FOUND")
            # no longer entered: a WRITE that names no channel has none
            await self.assertRequestFails(c, "WRITE_MESSAGE", {"content": "x"}, "BAD_REQUEST")
        for c in (co, c1b, c2):
            self.assertNotIn(cid, await self.channels(c))
        self.assertIn(kept, await self.channels(c1b))
        self.assertEqual([m["content"] for m in await self.fetch(c1b, kept)], ["kept"])

        after = self.stats()
        self.assertEqual(after["channels"], before["channels"] - 1, (before, after))
        self.assertEqual(after["messages"], before["messages"] - 3, (before, after))
        self.assertEqual(after["users"], before["users"])

        db = os.path.join(self.server.data_dir, "chatd.db")
        if os.path.exists(db):  # the embedded store: nothing of the channel is left
            with sqlite3.connect(db) as conn:
                for table in ("channel_user", "message", "message_reaction"):
                    (n,) = conn.execute("SELECT COUNT(*) FROM %s WHERE channel_id = ?" % table,
                                        (cid,)).fetchone()
                    self.assertEqual(n, 0, table)

        status, _, body = self.admin("DELETE", "/api/v1/admin/channels/%d" % cid)
        self.assertEqual((status, error_code(body)), (404, "NOT_FOUND"), body)

    def test_bad_or_unknown_channel_ids(self):
        status, _, body = self.admin("DELETE", "/api/v1/admin/channels/%d" % UNKNOWN_CHANNEL)
        self.assertEqual((status, error_code(body)), (404, "NOT_FOUND"), body)
        for bad in ("x", "0", "-1", "1.5", "", "%201", "1e3", "9" * 30):
            with self.subTest(id=bad):
                status, _, body = self.admin("DELETE", "/api/v1/admin/channels/" + bad)
                self.assertEqual((status, error_code(body)), (400, "BAD_REQUEST"), body)
        status, _, body = self.admin("DELETE", "/api/v1/admin/channels/1/messages")
        self.assertEqual((status, error_code(body)), (404, "NOT_FOUND"), body)


class StatsTests(AdminCase):

    @async_test
    async def test_counts_follow_users_channels_messages_and_connections(self):
        s0 = self.stats()
        self.assertGreaterEqual(len(s0["nodes"]), 1)
        a, b = self.user("sa"), self.user("sb")
        s1 = self.stats()
        self.assertEqual(s1["users"], s0["users"] + 2)
        cid = await self.channel_with(a, b)
        s2 = self.stats()
        self.assertEqual((s2["channels"], s2["messages"]), (s1["channels"] + 1, s1["messages"]))

        ca = await self.connect(a)
        await self.write(ca, cid, "one")
        await self.write(ca, cid, "two")
        self.assertEqual(self.stats()["messages"], s2["messages"] + 2)
        resp = await ca.request("DELETE_MESSAGE", {"channelId": chan(cid), "messageSequence": 2})
        self.assertOk(resp, "DELETE_MESSAGE_ACK")
        self.assertEqual(self.stats()["messages"], s2["messages"] + 1)  # deleted ones don't count

    def settled_connections(self):
        """The connections stats tells, once two answers a node refresh apart agree
        (each node writes its figures every second in the test clusters)."""
        gap = 1.2 if self.server.cluster is not None else 0.1
        last = self.stats()["connections"]
        for _ in range(10):
            time.sleep(gap)
            now = self.stats()["connections"]
            if now == last:
                return now
            last = now
        self.fail("the connections of stats never settled")

    @async_test
    async def test_connections_follow_websockets(self):
        loop = asyncio.get_running_loop()
        a, b = self.user("ca"), self.user("cb")
        base = await loop.run_in_executor(None, self.settled_connections)
        socks = [await self.connect(a), await self.connect(b), await self.connect(b)]
        # the answering node's figures at once, another node's within its refresh
        await self.wait_for("three more connections",
                            lambda: self.stats()["connections"] == base + 3)
        await self.disconnect(*socks)
        await self.wait_for("three fewer connections",
                            lambda: self.stats()["connections"] == base)

    def test_nodes(self):
        s = self.stats()
        names = [n["node"] for n in s["nodes"]]
        self.assertEqual(names, sorted(names))
        self.assertEqual(len(set(names)), len(names))
        cluster = self.server.cluster
        if cluster is not None:
            self.assertEqual(len(names), len(cluster.nodes), s)
        else:
            self.assertEqual(names, ["local"], s)

    def test_admin_actions_are_logged_with_the_client_address(self):
        u = self.user("lg")
        self.admin_ok("POST", "%s/%s/ban" % (USERS, u.username))
        self.admin_ok("GET", STATS)
        deadline = time.monotonic() + 2
        pattern = re.compile(r"info admin: ban of '%s' by 127\.0\.0\.1" % re.escape(u.username))
        while not pattern.search(self.server.log_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertRegex(self.server.log_text(), pattern)
        self.assertRegex(self.server.log_text(), r"info admin: stats by 127\.0\.0\.1")


# static files too (docs/ as the web root), to see they stay on the main port
ADMIN_LISTEN_SETS = ADMIN_SETS + ['admin.listen="%s:0"' % HOST,
                                  'http.web_root="%s"' % os.path.join(harness.REPO_ROOT, "docs")]
NOT_FOUND = {"error": "NOT_FOUND", "message": "not found"}


@unittest.skipIf(cluster_size(), "admin.listen is each node's own address, not the balancer's")
class AdminListenTests(AdminCase):
    """admin.listen set: the admin API on its port only, and only it (and /healthz) there."""

    server_sets = ADMIN_LISTEN_SETS

    def on_admin_port(self, method, path, token=ADMIN_TOKEN, headers=None, body=None):
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        return self.server.request(method, path, body=body, headers=hdrs,
                                   port=self.server.admin_port)

    def test_both_listeners_are_logged_each_with_its_port(self):
        srv = self.server
        self.assertIsNotNone(srv.admin_port, "no admin listening line:\n" + srv.log_tail())
        self.assertNotEqual(srv.admin_port, srv.port)
        log = srv.log_text()
        self.assertRegex(log, r"listening on 127\.0\.0\.1:%d \(admin" % srv.admin_port)
        self.assertRegex(log, r"listening on 127\.0\.0\.1:%d(\n| \(TLS)" % srv.port)

    def test_admin_routes_answer_on_the_admin_port_with_the_token(self):
        for path in (USERS, STATS):
            status, hdrs, body = self.on_admin_port("GET", path)
            self.assertEqual(status, 200, body)
            self.assertIn("application/json", hdrs.get("Content-Type", ""))
        self.assertEqual(set(self.on_admin_port("GET", STATS)[2]),
                         {"users", "channels", "messages", "connections", "nodes"})
        u = self.user("al")
        status, _, body = self.on_admin_port("GET", USERS + "?prefix=" + u.username)
        self.assertEqual([x["username"] for x in body["users"]], [u.username], body)
        status, _, body = self.on_admin_port("POST", "%s/%s/logout" % (USERS, u.username))
        self.assertEqual((status, body), (200, {"username": u.username}))
        for method, path in every_route()[2:-1]:  # they answer for the unknown user or channel
            with self.subTest(method=method, path=path):
                status, _, body = self.on_admin_port(method, path)
                self.assertEqual((status, error_code(body)), (404, "NOT_FOUND"), body)
        # another method on an admin path: 405 there, as on a shared listener
        status, hdrs, body = self.on_admin_port("PUT", STATS)
        self.assertEqual(status, 405, body)
        self.assertIn("GET", hdrs.get("Allow", ""))

    def test_the_token_is_still_required_on_the_admin_port(self):
        for method, path in every_route():
            for token in (None, WRONG_TOKEN, ADMIN_TOKEN[:-1]):
                with self.subTest(method=method, path=path, token=token):
                    status, _, body = self.on_admin_port(method, path, token=token)
                    self.assertEqual((status, error_code(body)), (401, "UNAUTHORIZED"), body)
        u = self.user("st")
        status, _, body = self.on_admin_port("GET", STATS, token=None,
                                             headers=auth_headers(u.token, "bearer"))
        self.assertEqual((status, error_code(body)), (401, "UNAUTHORIZED"), body)

    def test_admin_routes_are_absent_on_the_main_port(self):
        _, _, unknown = self.server.request("GET", "/api/v1/admin/no-such-route")
        self.assertEqual(unknown, NOT_FOUND)
        for method, path in every_route() + [("PUT", STATS), ("HEAD", STATS)]:
            for token in (ADMIN_TOKEN, None, WRONG_TOKEN):
                with self.subTest(method=method, path=path, token=token):
                    headers = {} if token is None else {"Authorization": "Bearer " + token}
                    status, hdrs, body = self.server.request(method, path, headers=headers)
                    self.assertEqual(status, 404, body)
                    self.assertIsNone(hdrs.get("Allow"))
                    if method != "HEAD":
                        self.assertEqual(body, NOT_FOUND)  # as any unknown path

    def test_only_healthz_besides_them_on_the_admin_port(self):
        status, hdrs, body = self.on_admin_port("GET", "/healthz", token=None)
        self.assertEqual((status, body), (200, {"status": "ok"}))
        status, hdrs, body = self.on_admin_port("HEAD", "/healthz", token=None)
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(hdrs.get("Content-Length"), str(len(b'{"status":"ok"}')))
        status, hdrs, _ = self.on_admin_port("PUT", "/healthz", token=None)
        self.assertEqual(status, 405)  # as on the main port
        self.assertEqual(hdrs.get("Allow"), "GET, HEAD")
        u = self.user("ap")
        login = {"username": u.username, "password": harness.DEFAULT_PASSWORD}
        for method, path, body in (("POST", "/api/v1/auth/login", login),
                                   ("POST", "/api/v1/auth/register",
                                    {"username": unique_name("ap"), "password": "x" * 12}),
                                   ("POST", "/api/v1/auth/logout", None),
                                   ("GET", "/metrics", None), ("GET", "/CONFIG.md", None),
                                   ("GET", "/no/such/path", None)):
            for token in (None, ADMIN_TOKEN):
                with self.subTest(method=method, path=path, token=token):
                    status, hdrs, got = self.on_admin_port(method, path, token=token, body=body)
                    self.assertEqual((status, got), (404, NOT_FOUND))
                    self.assertIsNone(hdrs.get("Allow"))
        # nothing was done: the user's name is free of a second account, the login still works
        status, _, body = self.server.login_response(u.username)
        self.assertEqual(status, 200, body)

    def test_websocket_upgrades_are_refused_on_the_admin_port(self):
        u = self.user("wsa")
        for path, token in ((harness.WS_PATH, u.token), (harness.WS_PATH, None),
                            ("/ws/", u.token), (STATS, None)):
            with self.subTest(path=path, token=token):
                with RawWebSocket(self.server.admin_port) as ws:
                    status = ws.handshake(token=token, path=path)
                    self.assertIn(status, (400, 404), ws.headers)
                    self.assertNotIn("sec-websocket-accept", ws.headers)
        with RawWebSocket(self.server.admin_port) as ws:
            self.assertEqual(ws.handshake(token=u.token), 404)
            body = ws.sock.recv(4096) if not ws.buf else ws.buf
            self.assertIn(b"no WebSocket on the admin listener", body)

    @async_test
    async def test_the_main_port_serves_everything_else_as_before(self):
        u = self.user("mp")
        self.assertServerUp()
        self.assertEqual(self.server.login_response(u.username)[0], 200)
        status, _, _ = self.server.request("GET", "/metrics")
        self.assertEqual(status, 200)
        status, _, body = self.server.request("GET", "/CONFIG.md")
        self.assertEqual(status, 200)
        self.assertTrue(body.startswith(b"# chatd configuration"), body[:80])
        await self.assertAlive(await self.connect(u))


class AdminListenCheckTests(unittest.TestCase):
    """admin.listen that cannot work stops --check-config and start-up, naming it."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-admin-listen-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_chatd(self, listen, admin_listen, serve=False):
        argv = [harness.chatd_bin(), "-c", harness.chatd_conf(), "--data-dir",
                os.path.join(self.tmp, "data"), "--listen", listen,
                "--set", 'admin.listen="%s"' % admin_listen]
        if not serve:
            argv.append("--check-config")
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        return p.returncode, p.stdout.decode(errors="replace")

    def test_a_valid_address_passes(self):
        code, out = self.run_chatd("127.0.0.1:8080", "127.0.0.1:9090")
        self.assertEqual(code, 0, out)
        self.assertIn("configuration is valid", out)

    def test_a_malformed_address_is_refused(self):
        for bad in ("9090", "localhost:9090", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000",
                    "[::1:9090"):
            with self.subTest(address=bad):
                code, out = self.run_chatd("127.0.0.1:8080", bad)
                self.assertEqual(code, 1, out)
                self.assertIn("setting 'admin.listen': \"%s\" is not HOST:PORT" % bad, out)

    def test_the_address_of_server_listen_is_refused(self):
        for main, admin in (("127.0.0.1:8080", "127.0.0.1:8080"),
                            ("127.0.0.1:8080", "0.0.0.0:8080"),
                            ("[::1]:8080", "[::1]:8080")):
            with self.subTest(main=main, admin=admin):
                code, out = self.run_chatd(main, admin)
                self.assertEqual(code, 1, out)
                self.assertIn("setting 'admin.listen'", out)
                self.assertIn("server.listen", out)

    def test_an_address_in_use_stops_start_up(self):
        with socket.socket() as busy:
            busy.bind((HOST, 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            code, out = self.run_chatd("%s:0" % HOST, "%s:%d" % (HOST, port), serve=True)
        self.assertEqual(code, 1, out)
        self.assertIn("cannot listen on %s:%d (admin.listen): Address already in use"
                      % (HOST, port), out)
        self.assertNotIn("core: ready", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
