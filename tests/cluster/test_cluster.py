#!/usr/bin/python3
"""Cross-node acceptance tests of a chatd cluster: two nodes on
etc/chatd-cluster.conf sharing MariaDB and Redis (tests/cluster/cluster.py).

Tests that need to know where a socket is connect to a node's own port ("A" is
node 1, "B" node 2); the rest go through nginx. One cluster serves every test;
the tests that take a node or a backend down bring it back. Measured figures
(logout propagation, presence expiry, recovery times, delivery latency) are
printed as they are taken and again at the end.

Exit status 77 (skipped) when mariadbd, redis-server or nginx is not installed.
"""

import asyncio
import json
import math
import os
import re
import socket
import statistics
import sys
import threading
import time
import unittest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from backends import MariaDB, Redis  # noqa: E402
from cluster import PRESENCE_GRACE, PRESENCE_TTL, Cluster, missing_programs, node_metric  # noqa: E402
from harness import Server, connection_closed_types, ws_connect  # noqa: E402
from load import ChannelLoad  # noqa: E402
from domain import (  # noqa: E402
    Client,
    DomainTestCase,
    async_test,
    chan,
    fetch_all_messages,
)

A, B = 0, 1
NODE_NAMES = ("A", "B")

ADMIN_TOKEN = "cluster-admin-" + os.urandom(16).hex()
_NODE_ID_RE = re.compile(r"node ([0-9a-f]+): cross-node delivery")

FIGURES = []  # (what, text), printed again at the end of the run


def figure(what, text):
    FIGURES.append((what, text))
    sys.stderr.write("  [figure] %s: %s\n" % (what, text))
    sys.stderr.flush()


def percentile(values, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    return s[min(len(s), max(1, math.ceil(p / 100.0 * len(s)))) - 1]


def endpoint(port, data_dir=None):
    """A harness Server object aimed at a running process (never started or
    stopped through it): HTTP helpers, new_user, ws_uri."""
    srv = Server()
    srv.port = port
    srv.data_dir = data_dir
    return srv


class ClusterTestCase(DomainTestCase):
    """One cluster for the class; ``self.server`` is nginx, ``self.nodes[i]`` node i."""

    cluster = None
    nodes = ()

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(nodes=2, extra_sets=['admin.token="%s"' % ADMIN_TOKEN]).start()
        cls.server = endpoint(cls.cluster.lb_port, cls.cluster.root)
        cls.nodes = [endpoint(p, cls.cluster.root) for p in cls.cluster.ports]
        cls.passed = True

    @classmethod
    def tearDownClass(cls):
        cluster = cls.cluster
        if cluster is None:
            return
        try:
            cluster.stop()
        finally:
            log = cluster.log_text()
            tokens = [t for srv in [cls.server] + list(cls.nodes) for t in srv.tokens]
            leaked = [t for t in tokens if t and t in log]
            if cls.passed and not leaked:
                cluster.cleanup()
            else:
                sys.stderr.write("cluster dir kept at %s\n" % cluster.root)
        if leaked:
            raise AssertionError("%d session token(s) appear in the node logs" % len(leaked))
        if ADMIN_TOKEN in log:
            raise AssertionError("the admin token appears in the node logs")

    def setUp(self):
        self.wait_healthy(20.0)

    def run(self, result=None):
        result = super().run(result)
        if result is not None and not result.wasSuccessful():
            type(self).passed = False
        return result

    # ---- helpers ---------------------------------------------------------------------

    def assertNoProblems(self, problems, what, logs=False):
        """Fail listing every problem found (one per line), with the nodes' log tails."""
        if problems:
            text = "%s:\n  - %s" % (what, "\n  - ".join(problems))
            if logs:
                text += "\nlogs:\n" + self.cluster.log_tail(20)
            self.fail(text)

    def wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            states = [self.health(i) for i in range(len(self.nodes))]
            if all(s == 200 for s in states):
                return
            if time.monotonic() > deadline:
                self.fail("cluster not healthy (healthz %r); logs:\n%s"
                          % (states, self.cluster.log_tail()))
            time.sleep(0.1)

    def health(self, i):
        try:
            return self.nodes[i].request("GET", "/healthz")[0]
        except OSError:
            return None

    def user_on(self, i, prefix):
        """A new user, registered and logged in through node i."""
        return self.nodes[i].new_user(prefix)

    async def connect_to(self, i, user, token=None, label=None):
        """A Client for ``user`` on node i's own port."""
        ws = await ws_connect(self.nodes[i], token or user.token, "query")
        n = sum(1 for c in self._clients if c.user is user) + 1
        client = Client(ws, user, label or "%s#%d@%s" % (user.username, n, NODE_NAMES[i]))
        self._clients.append(client)
        return client

    def push_count(self, user, cid, seqs=None):
        lines = self.push_lines(user, "NOTIFY_MESSAGE",
                                lambda o: o["event"].get("channelId") == chan(cid))
        if seqs is None:
            return len(lines)
        return len([o for o in lines if o["event"].get("messageSequence") in seqs])

    async def wait_health_state(self, i, status, timeout):
        """Seconds until node i's /healthz answers ``status``, or None."""
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        while time.monotonic() - t0 < timeout:
            if await loop.run_in_executor(None, self.health, i) == status:
                return time.monotonic() - t0
            await asyncio.sleep(0.05)
        return None

    async def steady_health(self, i, status, checks=5, gap=0.1):
        """Node i's /healthz over ``checks`` more probes: the list of answers."""
        loop = asyncio.get_running_loop()
        got = []
        for _ in range(checks):
            got.append(await loop.run_in_executor(None, self.health, i))
            await asyncio.sleep(gap)
        return got


class CrossNodeTests(ClusterTestCase):

    # a. ------------------------------------------------------------------------------

    @async_test
    async def test_a_journey_with_users_on_both_nodes(self):
        a = self.user_on(A, "ja")
        b = self.user_on(B, "jb")
        offline, idle, entered = self.user("joff"), self.user("jidl"), self.user("jent")
        ca = await self.connect_to(A, a)
        cb = await self.connect_to(B, b)

        # friends across nodes: the invite and the accept notifications cross over
        await self.invite(ca, b)
        ask = await cb.expect("ASK_INVITE")
        self.assertEqual(ask.get("username"), a.username, ask)
        await self.accept(cb, a)
        acc = await ca.expect("NOTIFY_ACCEPT")
        self.assertEqual(acc.get("username"), b.username, acc)
        self.assertEqual((await self.connections(ca))[b.username], ("ACCEPTED", a.username))
        self.assertEqual((await self.connections(cb))[a.username], ("ACCEPTED", a.username))
        await self.befriend(a, offline, idle, entered)

        cidle = await self.connect_to(B, idle)
        cent = await self.connect_to(B, entered)
        cid = await self.create_group(ca, [b, offline, idle, entered], title="journey")
        for c in (cb, cidle, cent):
            join = await c.expect("NOTIFY_JOIN")
            self.assertEqual(join.get("channelId"), chan(cid), join)
        for c in (ca, cb, cent):
            await self.enter(c, cid)

        ack_a = await self.write(ca, cid, "written on A")
        for c in (cb, cent):
            got = await c.expect("NOTIFY_MESSAGE")
            self.assertEqual((got["content"], got["username"], got["messageSequence"]),
                             ("written on A", a.username, ack_a["messageSequence"]), got)
        ack_b = await self.write(cb, cid, "written on B")
        for c in (ca, cent):
            got = await c.expect("NOTIFY_MESSAGE")
            self.assertEqual((got["content"], got["username"], got["messageSequence"]),
                             ("written on B", b.username, ack_b["messageSequence"]), got)
        await cidle.expect_none("NOTIFY_MESSAGE", 0.3)
        await ca.expect_none("NOTIFY_MESSAGE", 0.1)  # not its own
        await cb.expect_none("NOTIFY_MESSAGE", 0.1)

        seqs = {ack_a["messageSequence"], ack_b["messageSequence"]}
        pred = (lambda o: o["event"].get("channelId") == chan(cid)
                and o["event"].get("messageSequence") in seqs)
        # offline everywhere, and online on B but not entered: one push per message
        for u in (offline, idle):
            lines = await self.assertPushCount(u, "NOTIFY_MESSAGE", 2, pred)
            self.assertEqual(sorted(o["event"]["content"] for o in lines),
                             ["written on A", "written on B"], lines)
        # entered on B (and the writers, entered on their nodes): none
        for u in (entered, a, b):
            await self.assertPushCount(u, "NOTIFY_MESSAGE", 0, pred)

        messages = await self.fetch(cb, cid)
        self.assertEqual([m["content"] for m in messages], ["written on A", "written on B"])

    # b. ------------------------------------------------------------------------------

    async def four_writers(self, total=2000, window=32):
        """4 writers, 2 on A and 2 on B, each entered in one channel, writing
        ``total`` messages pipelined (``window`` in flight per socket)."""
        per_writer = total // 4
        writers = [self.user("wr") for _ in range(4)]
        cid = await self.channel_with(writers[0], *writers[1:])
        placement = [A, A, B, B]
        clients = [await self.connect_to(placement[k], w) for k, w in enumerate(writers)]
        for c in clients:  # entered, so the other writers' messages are delivered, not pushed
            await self.enter(c, cid)
        run = {
            "cid": cid, "writers": writers, "placement": placement, "clients": clients,
            "sent": {},                       # content -> writer index
            "acks": [[] for _ in writers],    # per socket: (sequence, content), arrival order
            "notes": [[] for _ in writers],   # per socket: NOTIFY_MESSAGE sequences, arrival order
            "errors": [],
        }
        acks, notes, sent, errors = run["acks"], run["notes"], run["sent"], run["errors"]
        closed = connection_closed_types()

        async def writer(k, c):
            ws = c.ws
            slots = asyncio.Semaphore(window)
            pending = {}
            done = asyncio.Event()

            async def reader():
                try:
                    while not (len(acks[k]) == per_writer
                               and len(notes[k]) >= total - per_writer):
                        msg = json.loads(await ws.recv())
                        t = msg.get("type")
                        if t == "WRITE_MESSAGE_ACK":
                            acks[k].append((msg["messageSequence"], pending.pop(msg["requestId"])))
                            slots.release()
                        elif t == "NOTIFY_MESSAGE":
                            notes[k].append(msg["messageSequence"])
                        else:
                            errors.append((k, msg))
                            if msg.get("requestId") in pending:
                                pending.pop(msg["requestId"])
                                slots.release()
                finally:
                    done.set()

            rtask = asyncio.ensure_future(reader())
            try:
                for i in range(per_writer):
                    await slots.acquire()
                    rid = "w%d-%d" % (k, i)
                    content = "writer %d message %d" % (k, i)
                    pending[rid] = content
                    sent[content] = k
                    await ws.send(json.dumps({"type": "WRITE_MESSAGE", "requestId": rid,
                                              "channelId": chan(cid), "content": content}))
                await asyncio.wait_for(done.wait(), 30)
            except closed as e:
                errors.append((k, "connection closed: %s" % e))
            except asyncio.TimeoutError:
                errors.append((k, "timed out: %d ACKs, %d NOTIFY_MESSAGE"
                               % (len(acks[k]), len(notes[k]))))
            finally:
                rtask.cancel()
                try:
                    await rtask
                except (asyncio.CancelledError,) + closed:
                    pass

        t0 = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(writer(k, c) for k, c in enumerate(clients))), 60)
        run["took"] = time.monotonic() - t0
        return run

    @async_test
    async def test_b_four_writers_on_two_nodes_2000_messages(self):
        total = 2000
        run = await self.four_writers(total)
        acks, sent, writers = run["acks"], run["sent"], run["writers"]
        n_acks = sum(len(x) for x in acks)
        figure("4 writers on 2 nodes", "%d acks in %.2f s (%.0f messages/s)"
               % (n_acks, run["took"], n_acks / run["took"]))
        self.assertEqual(run["errors"], [], "errors while writing")
        all_seqs = sorted(s for per in acks for s, _ in per)
        self.assertEqual(all_seqs, list(range(1, total + 1)),
                         "acknowledged sequences are not exactly 1..%d" % total)
        acked = {s: content for per in acks for s, content in per}

        messages = await fetch_all_messages(run["clients"][0], run["cid"], page=200)
        self.assertEqual([m["messageSequence"] for m in messages], list(range(1, total + 1)))
        contents = [m["content"] for m in messages]
        self.assertEqual(len(set(contents)), total, "a message is stored twice")
        self.assertEqual(set(contents), set(sent), "stored contents differ from those sent")
        wrong = {m["messageSequence"]: m["content"] for m in messages
                 if acked[m["messageSequence"]] != m["content"]}
        self.assertEqual(wrong, {}, "a sequence holds another content than its ACK said")
        by_user = {m["content"]: m["username"] for m in messages}
        self.assertTrue(all(by_user[c] == writers[k].username for c, k in sent.items()),
                        "a message is attributed to the wrong writer")

    @async_test
    async def test_b2_every_socket_gets_every_message_once(self):
        # PROTOCOL.md section 2 ("Order"): with several nodes, ACKs and
        # NOTIFY_MESSAGE may arrive out of sequence order, but every socket
        # entered gets every other writer's message exactly once. The order is
        # printed, not asserted.
        total = 2000
        run = await self.four_writers(total)
        self.assertEqual(run["errors"], [], "errors while writing")
        problems = []
        for k in range(len(run["writers"])):
            where = "writer %d (node %s)" % (k, NODE_NAMES[run["placement"][k]])
            seqs = [s for s, _ in run["acks"][k]]
            print("%s: %d ACKs and %d NOTIFY_MESSAGE arrived after a later sequence"
                  % (where, _inversions(seqs), _inversions(run["notes"][k])))
            got = run["notes"][k]
            missing = sorted(set(range(1, total + 1)) - set(seqs) - set(got))
            if missing or len(got) != len(set(got)):
                problems.append("%s: NOTIFY_MESSAGE missing %d (%r...), repeated %d"
                                % (where, len(missing), missing[:5], len(got) - len(set(got))))
        self.assertNoProblems(problems, "completeness of delivery across 2 nodes")

    # c. ------------------------------------------------------------------------------

    @async_test
    async def test_c_logout_on_a_closes_socket_on_b_within_1s(self):
        loop = asyncio.get_running_loop()
        times = []
        for round_ in range(5):
            u = self.user_on(A, "lo")
            other = self.nodes[A].login(u.username, u.password)
            cb = await self.connect_to(B, u)
            keep = await self.connect_to(B, u, token=other)
            resp = await cb.request("FETCH_USER_INVITECODE_REQUEST", {})
            self.assertEqual(resp.get("inviteCode"), u.invite_code, resp)
            closed_at = {}

            async def watch():
                await cb.ws.wait_closed()
                closed_at["t"] = time.monotonic()

            watcher = asyncio.ensure_future(watch())
            t0 = time.monotonic()
            status, _, body = await loop.run_in_executor(None, self.nodes[A].logout, u.token)
            self.assertEqual(status, 204, body)
            try:
                await asyncio.wait_for(watcher, 3.0)
            except asyncio.TimeoutError:
                self.fail("round %d: the socket on B is still open 3 s after logout on A"
                          % round_)
            self.assertEqual(cb.ws.close_code, 4001, "close code on B")
            times.append(closed_at["t"] - t0)
            # the other session of the user, also on B, is untouched
            resp = await keep.request("FETCH_USER_INVITECODE_REQUEST", {})
            self.assertEqual(resp.get("inviteCode"), u.invite_code, resp)
            status, _, _ = self.nodes[B].logout(u.token)
            self.assertEqual(status, 401, "the token still works on B")
        figure("logout on A -> 4001 on B", "median %.1f ms, max %.1f ms over %d rounds (%s)"
               % (statistics.median(times) * 1000, max(times) * 1000, len(times),
                  ", ".join("%.1f" % (t * 1000) for t in times)))
        self.assertLess(max(times), 1.0, "logout took more than 1 s to close the socket on B")

    @async_test
    async def test_c2_a_logout_is_honoured_everywhere_before_it_is_answered(self):
        """1,000 rounds: the token is known (cached) on B, logged out on A, and
        used on B right after A's answer: refused every time."""
        loop = asyncio.get_running_loop()
        u = self.user_on(A, "everywhere")
        conn_a, conn_b = self.nodes[A].connection(), self.nodes[B].connection()
        refused_late = []

        def rounds(n):
            for i in range(n):
                token = self.nodes[A].login(u.username, u.password)
                bearer = {"Authorization": "Bearer " + token}
                status, _, body = self.nodes[B].request("GET", "/api/v1/auth/session",
                                                        headers=bearer, conn=conn_b)
                if status != 200:
                    raise AssertionError("round %d: B did not take the new token: %d %r"
                                         % (i, status, body))
                status, _, _ = self.nodes[A].request("POST", "/api/v1/auth/logout",
                                                     headers=bearer, conn=conn_a)
                if status != 204:
                    raise AssertionError("round %d: logout on A answered %d" % (i, status))
                status, _, _ = self.nodes[B].request("GET", "/api/v1/auth/session",
                                                     headers=bearer, conn=conn_b)
                if status != 401:
                    refused_late.append((i, status))
        t0 = time.monotonic()
        try:
            await loop.run_in_executor(None, rounds, 1000)
        finally:
            conn_a.close()
            conn_b.close()
        took = time.monotonic() - t0
        figure("logout everywhere before its answer",
               "1000 rounds in %.1f s (%.2f ms a round: login, check on B, logout on A, "
               "check on B); accepted after the logout: %d" % (took, took, len(refused_late)))
        self.assertEqual(refused_late, [], "B accepted a token after its logout was answered")

    # d. ------------------------------------------------------------------------------

    @async_test
    async def test_d_kill9_node_b_presence_expires_and_a_keeps_serving(self):
        w, v = self.user("kw"), self.user("kv")
        cid = await self.channel_with(w, v)
        cw = await self.connect_to(A, w)
        cv = await self.connect_to(B, v)
        await self.enter(cv, cid)
        ack = await self.write(cw, cid, "before the crash")
        got = await cv.expect("NOTIFY_MESSAGE")
        self.assertEqual(got["content"], "before the crash")
        await asyncio.sleep(0.3)
        self.assertEqual(self.push_count(v, cid), 0, "push for a user entered on B")

        # w's friend v is online (on B), as a socket of w's on A is told
        watcher = await self.connect_to(A, w, label="presence-watcher")
        resp = await watcher.request("FETCH_PRESENCE_REQUEST", {})
        self.assertEqual([(f["username"], f["online"]) for f in resp["friends"]],
                         [(v.username, True)])
        await watcher.collect("NOTIFY_PRESENCE", 0.2)

        async def offline_after():
            await watcher.expect("NOTIFY_PRESENCE", PRESENCE_TTL + PRESENCE_GRACE + 8,
                                 lambda o: o["username"] == v.username and not o["online"])
            return time.monotonic() - killed_at

        killed_at = time.monotonic()
        self.cluster.kill9(B)
        offline = asyncio.ensure_future(offline_after())
        try:
            probes = []  # (sequence, seconds after the kill)
            first_push = None
            deadline = killed_at + PRESENCE_TTL + 8
            while time.monotonic() < deadline:
                t = time.monotonic() - killed_at
                ack = await self.write(cw, cid, "probe at %.2f s" % t)
                probes.append((ack["messageSequence"], t))
                await asyncio.sleep(0.15)
                if self.push_count(v, cid, {s for s, _ in probes}):
                    pushed = {o["event"]["messageSequence"]
                              for o in self.push_lines(v, "NOTIFY_MESSAGE")}
                    first_push = min(t for s, t in probes if s in pushed)
                    break
            self.assertIsNotNone(first_push, "no push for the user of the dead node B within "
                                 "%d s of the kill" % (PRESENCE_TTL + 8))
            lost = [s for s, t in probes if t < first_push]
            figure("presence of killed node B expired",
                   "first pushed message written %.2f s after kill -9 (presence_ttl %d s); "
                   "%d message(s) before it got neither delivery nor push"
                   % (first_push, PRESENCE_TTL, len(lost)))
            self.assertLessEqual(first_push, PRESENCE_TTL + 3.0,  # slack for a loaded sanitizer build
                                 "presence of the dead node outlived presence_ttl + 3 s")
            # from then on every message is pushed, once
            ack = await self.write(cw, cid, "after expiry")
            lines = await self.wait_push(v, "NOTIFY_MESSAGE", 1, lambda o: (
                o["event"].get("messageSequence") == ack["messageSequence"]))
            self.assertEqual(len(lines), 1, lines)

            # node A keeps serving: a new user joins, enters and gets a message
            x = self.user_on(A, "kx")
            cwa = await self.connect_to(A, w)
            cx = await self.connect_to(A, x)
            await self.invite(cwa, x)
            await self.accept(cx, w)
            code = (await cw.request("FETCH_CHANNEL_INVITECODE_REQUEST",
                                     {"channelId": chan(cid)}))["inviteCode"]
            self.assertOk(await cx.request("JOIN_REQUEST", {"inviteCode": code}), "JOIN_RESPONSE")
            await self.enter(cx, cid)
            ack = await self.write(cw, cid, "node A still serves")
            got = await cx.expect("NOTIFY_MESSAGE")
            self.assertEqual(got["messageSequence"], ack["messageSequence"])
            msgs = await self.fetch(cx, cid, limit=200)
            self.assertEqual([m["messageSequence"] for m in msgs],
                             list(range(1, ack["messageSequence"] + 1)))
            self.assertEqual(self.health(A), 200)

            # the friend on A hears once that v went offline: after the dead
            # node's entries expired and the grace ran out, not before
            took_offline = await offline
            figure("friend of a user of killed node B told offline",
                   "%.2f s after kill -9 (presence_ttl %d s, presence_grace %d s)"
                   % (took_offline, PRESENCE_TTL, PRESENCE_GRACE))
            self.assertGreaterEqual(took_offline, PRESENCE_GRACE - 0.2)
            self.assertLessEqual(took_offline, PRESENCE_TTL + PRESENCE_GRACE + 5.0)
            resp = await watcher.request("FETCH_PRESENCE_REQUEST", {})
            (entry,) = [f for f in resp["friends"] if f["username"] == v.username]
            self.assertEqual(entry["online"], False)
            self.assertIsNotNone(entry["lastSeen"])
            await watcher.expect_none("NOTIFY_PRESENCE", 0.5)
        finally:
            offline.cancel()
            took = self.cluster.restart(B)
            figure("node B restart after kill -9", "ready in %.2f s" % took)
        # the restarted node serves the victim again
        cv2 = await self.connect_to(B, v)
        await self.enter(cv2, cid)
        ack = await self.write(cw, cid, "B is back")
        got = await cv2.expect("NOTIFY_MESSAGE")
        self.assertEqual(got["messageSequence"], ack["messageSequence"])
        # and v is online again for the friend on A
        note = await watcher.expect("NOTIFY_PRESENCE", 5,
                                    lambda o: o["username"] == v.username)
        self.assertEqual(note["online"], True)

    # e. ------------------------------------------------------------------------------

    @async_test
    async def test_e_redis_restart_under_load(self):
        wa, wb, r = self.user("ra"), self.user("rb"), self.user("rr")
        cid = await self.channel_with(wa, wb, r)
        ca = await self.connect_to(A, wa)
        cb = await self.connect_to(B, wb)
        cr = await self.connect_to(B, r)
        for c in (ca, cb, cr):
            await self.enter(c, cid)
        load = ChannelLoad(cid, {"A": ca, "B": cb}, cr).start()
        problems = load.problems
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(1.0)
            before = len(load.acked)
            t_stop = time.monotonic()
            await loop.run_in_executor(None, self.cluster.redis.stop)
            for i in (A, B):
                t = await self.wait_health_state(i, 503, 3.0)
                if t is None:
                    problems.append("node %s: /healthz not 503 within 3 s of Redis stopping"
                                    % NODE_NAMES[i])
            await asyncio.sleep(max(0.0, 2.0 - (time.monotonic() - t_stop)))
            for i in (A, B):
                got = await self.steady_health(i, 503, checks=3)
                if any(s != 503 for s in got):
                    problems.append("node %s: /healthz while Redis is down: %r"
                                    % (NODE_NAMES[i], got))
            # a node that cannot hear of session ends fails closed for new
            # requests, even with a token it knows (its socket ca goes on)
            status, _, body = await loop.run_in_executor(None, lambda: self.nodes[A].request(
                "GET", "/api/v1/auth/session", headers={"Authorization": "Bearer " + wa.token}))
            if status != 503:
                problems.append("node A took a known token while Redis was down: %d %r"
                                % (status, body))
            during = len(load.acked) - before
            t_start = time.monotonic()
            self.cluster.redis.start(self.cluster.redis.port)
            healthy = {}
            for i in (A, B):
                t = await self.wait_health_state(i, 200, 15.0)
                healthy[NODE_NAMES[i]] = None if t is None else time.monotonic() - t_start
                if t is None:
                    problems.append("node %s: /healthz not 200 within 15 s of Redis restarting"
                                    % NODE_NAMES[i])
            # cross-node delivery again: a message written on A after the restart
            # reaches the socket entered on B
            cross = await load.wait_delivery("A", t_start, 10)
            await asyncio.sleep(1.0)
        finally:
            await load.stop()
            if not self.cluster.redis.alive():
                self.cluster.redis.start(self.cluster.redis.port)

        figure("Redis restart", "down %.1f s; %d writes acknowledged while down; healthz 200 "
               "again %s s after restart; first cross-node delivery A->B %s s after restart; "
               "errors %s"
               % (t_start - t_stop, during,
                  "/".join("%s %.2f" % (k, v) if v is not None else "%s never" % k
                           for k, v in healthy.items()),
                  "%.2f" % cross if cross is not None else "never",
                  _count_codes(load.errors) or "none"))
        if cross is None:
            problems.append("no cross-node delivery (A -> entered socket on B) within 10 s "
                            "of Redis restarting")
        elif cross > 5.0:
            problems.append("cross-node delivery resumed only %.1f s after Redis restarted"
                            % cross)
        bad = [e for e in load.errors if e[2] != "UNAVAILABLE"]
        if bad:
            problems.append("write errors other than UNAVAILABLE: %r" % bad[:5])
        late = [e for e in load.errors if e[0] > (t_start - load.t_base) + 3.0]
        if late:
            problems.append("write errors more than 3 s after Redis restarted: %r" % late[:5])
        messages = await fetch_all_messages(await self.connect_to(A, wa), cid, page=200)
        problems += ["after the Redis restart: " + p for p in load.stored_problems(messages)]

        # presence is back too (Redis restarted empty; the heartbeat writes the
        # entries again): the users entered on B get deliveries, not pushes
        await asyncio.sleep(PRESENCE_TTL / 3.0 + 0.5)
        ack = await self.write(ca, cid, "after recovery")
        await asyncio.sleep(1.0)
        seq = ack["messageSequence"]
        for u in (wb, r):
            n = self.push_count(u, cid, {seq})
            if n:
                problems.append("%s, entered on B, got %d push line(s) for a message written "
                                "after Redis recovered" % (u.username, n))

        # and a fresh login and handshake work on both nodes
        for i in (A, B):
            token = self.nodes[i].login(r.username, r.password)
            c = await self.connect_to(i, r, token=token)
            resp = await c.request("FETCH_USER_INVITECODE_REQUEST", {})
            if resp.get("inviteCode") != r.invite_code:
                problems.append("node %s after Redis restart: %r" % (NODE_NAMES[i], resp))
        self.assertNoProblems(problems, "Redis restart under load", logs=True)

    # f. ------------------------------------------------------------------------------

    @async_test
    async def test_f_mariadb_down_unavailable_then_recovers(self):
        p, q = self.user("mp"), self.user("mq")
        cid = await self.channel_with(p, q)
        cp = await self.connect_to(A, p)
        cq = await self.connect_to(B, q)
        await self.enter(cq, cid)
        for i in range(3):
            ack = await self.write(cp, cid, "before %d" % i)
            self.assertEqual(ack["messageSequence"], i + 1)
            await cq.expect("NOTIFY_MESSAGE")
        # more channels, so that the writes after the restart reach every
        # writer thread (one channel's writes go to one writer)
        others = [await self.create_group(cp, [q]) for _ in range(8)]
        for c in (cp, cq):  # each writer opens its connection at its first job
            for other in others:
                await self.write(c, other, "warm")
        problems = []
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        await loop.run_in_executor(None, self.cluster.mariadb.stop)
        stop_took = time.monotonic() - t0
        try:
            # every write fails whole, with UNAVAILABLE, on both nodes
            for node, c in (("A", cp), ("B", cq)):
                for k in range(3):
                    rid = "down-%s-%d" % (node, k)
                    resp = await c.request("WRITE_MESSAGE", {"channelId": chan(cid),
                                                             "content": "outage %s %d" % (node, k)},
                                           rid=rid, timeout=15)
                    if (resp.get("type"), resp.get("code"), resp.get("messageType"),
                            resp.get("requestId")) != ("ERROR", "UNAVAILABLE", "WRITE_MESSAGE",
                                                       rid):
                        problems.append("WRITE_MESSAGE on %s while MariaDB is down: %r"
                                        % (node, resp))
                # a read needs MariaDB too
                resp = await c.request("FETCH_MESSAGES_REQUEST", {"channelId": chan(cid)},
                                       timeout=15)
                if (resp.get("type"), resp.get("code")) != ("ERROR", "UNAVAILABLE"):
                    problems.append("FETCH_MESSAGES on %s while MariaDB is down: %s"
                                    % (node, _short(resp)))
            for i in (A, B):
                t = await self.wait_health_state(i, 503, 3.0)
                got = await self.steady_health(i, 503, checks=5)
                if t is None or any(s != 503 for s in got):
                    problems.append("node %s: /healthz while MariaDB is down: %s then %r"
                                    % (NODE_NAMES[i], "503 after %.2f s" % t if t is not None
                                       else "never 503 within 3 s", got))
        finally:
            t1 = time.monotonic()
            # on this (the main) thread: processes started here die with the test run
            self.cluster.mariadb.start()
            start_took = time.monotonic() - t1
        healthy = {}
        for i in (A, B):  # seconds after the restart began
            t = await self.wait_health_state(i, 200, 20.0)
            healthy[NODE_NAMES[i]] = None if t is None else time.monotonic() - t1
        # writes succeed again without restarting chatd
        first_ok = {}
        for node, c in (("A", cp), ("B", cq)):
            deadline = time.monotonic() + 20
            while True:
                resp = await c.request("WRITE_MESSAGE", {"channelId": chan(cid),
                                                         "content": "after %s" % node},
                                       timeout=15)
                if resp.get("type") == "WRITE_MESSAGE_ACK":
                    first_ok[node] = (time.monotonic() - t1, resp["messageSequence"])
                    break
                if time.monotonic() > deadline:
                    problems.append("no successful write on %s within 20 s of MariaDB restart: "
                                    "%r" % (node, resp))
                    break
                await asyncio.sleep(0.2)
        figure("MariaDB stop/restart",
               "clean stop took %.2f s, start %.2f s; healthz 200 again %s; first write acked "
               "%s after the restart began"
               % (stop_took, start_took,
                  "/".join("%s %.2f s" % (k, v) if v is not None else "%s never" % k
                           for k, v in healthy.items()),
                  "/".join("%s %.2f s (seq %d)" % (k, v[0], v[1])
                           for k, v in first_ok.items()) or "never"))

        # every writer's connection sat idle through the restart: each finds
        # the server gone at its next transaction, connects again, and the
        # write it was given goes through, the first time
        for node, c in (("A", cp), ("B", cq)):
            for other in others:
                resp = await c.request("WRITE_MESSAGE", {"channelId": chan(other),
                                                         "content": "idle writer %s" % node},
                                       timeout=15)
                if resp.get("type") != "WRITE_MESSAGE_ACK":
                    problems.append("first write on %s to channel %d after the restart: %s"
                                    % (node, other, _short(resp)))

        messages = await fetch_all_messages(cp, cid)
        seqs = [m["messageSequence"] for m in messages]
        contents = [m["content"] for m in messages]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append("sequences not gapless after the outage: %r" % seqs)
        expected = ["before 0", "before 1", "before 2"] + ["after %s" % n for n in first_ok]
        if contents != expected:
            problems.append("stored messages %r, expected %r" % (contents, expected))
        if any(c.startswith("outage") for c in contents):
            problems.append("a write answered UNAVAILABLE was stored")
        self.assertNoProblems(problems, "MariaDB outage", logs=True)

    # g. ------------------------------------------------------------------------------

    @async_test
    async def test_g_delivery_latency_same_node_vs_cross_node(self):
        n, rate = 500, 200.0
        w, ra, rb = self.user("lw"), self.user("la"), self.user("lb")
        cid = await self.channel_with(w, ra, rb)
        cw = await self.connect_to(A, w)
        cra = await self.connect_to(A, ra)
        crb = await self.connect_to(B, rb)
        for c in (cra, crb):
            await self.enter(c, cid)
        sent_at = [None] * n
        got_at = {"A": [None] * n, "B": [None] * n}
        closed = connection_closed_types()
        others = []  # what the writer got besides its acks

        async def reader(node, c):
            seen = 0
            try:
                while seen < n:
                    raw = await c.ws.recv()
                    t = time.monotonic()
                    msg = json.loads(raw)
                    if msg.get("type") == "NOTIFY_MESSAGE":
                        i = int(msg["content"].split()[1])
                        if got_at[node][i] is None:
                            seen += 1
                        got_at[node][i] = t
            except closed:
                pass

        async def acks():
            got = 0
            try:
                while got < n:
                    msg = json.loads(await cw.ws.recv())
                    if msg.get("type") == "WRITE_MESSAGE_ACK":
                        got += 1
                    else:
                        others.append(msg)
            except closed:
                pass

        readers = [asyncio.ensure_future(reader("A", cra)), asyncio.ensure_future(reader("B", crb)),
                   asyncio.ensure_future(acks())]
        t0 = time.monotonic()
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[i] = time.monotonic()
            await cw.ws.send(json.dumps({"type": "WRITE_MESSAGE", "channelId": chan(cid),
                                         "content": "lat %d" % i}))
        try:
            await asyncio.wait_for(asyncio.gather(*readers), 30)
        except asyncio.TimeoutError:
            for t in readers:
                t.cancel()
        results = {}
        for node in ("A", "B"):
            lat = [(g - s) * 1000 for s, g in zip(sent_at, got_at[node]) if g is not None]
            results[node] = lat
            if lat:
                figure("delivery latency %s" % ("same node (A->A)" if node == "A"
                                                 else "cross node (A->B)"),
                       "p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d messages at %d/s"
                       % (percentile(lat, 50), percentile(lat, 99), max(lat), len(lat), rate))
        for node in ("A", "B"):
            self.assertEqual(len(results[node]), n, "reader on %s got %d of %d messages "
                             "(missing %r; the writer got %r)"
                             % (node, len(results[node]), n,
                                [i for i, g in enumerate(got_at[node]) if g is None][:5],
                                others[:5]))
            self.assertLess(max(results[node]), 5000, "a delivery took over 5 s")

    # extra: QUIT and the login limiter, across nodes ---------------------------------

    @async_test
    async def test_h_quit_on_a_leaves_channel_on_b(self):
        creator, member = self.user("qc"), self.user("qm")
        cid = await self.channel_with(creator, member)
        cc = await self.connect_to(A, creator)
        d1 = await self.connect_to(A, member)
        d2 = await self.connect_to(B, member)
        await self.enter(d1, cid)
        await self.enter(d2, cid)
        await self.write(cc, cid, "before quit")
        for d in (d1, d2):
            self.assertEqual((await d.expect("NOTIFY_MESSAGE"))["content"], "before quit")
        resp = await d1.request("QUIT_REQUEST", {"channelId": chan(cid)})
        self.assertOk(resp, "QUIT_RESPONSE")
        await self.write(cc, cid, "after quit")
        await d1.expect_none("NOTIFY_MESSAGE", 0.5)
        await d2.expect_none("NOTIFY_MESSAGE", 0.5)  # the socket on the other node too

    # k. Push intents: a member that Redis found entered on the other node costs
    # the next writes none (redis.entered_cache_ms), and still gets the push, from
    # memory, once they have left.
    @async_test
    async def test_k_no_push_intent_for_a_member_entered_on_the_other_node(self):
        wa, rb = self.user("ka"), self.user("kb")
        cid = await self.channel_with(wa, rb)
        w = await self.connect_to(A, wa)
        r = await self.connect_to(B, rb)
        await self.enter(w, cid)
        await self.enter(r, cid)

        def intents():
            return self.metric(A, "messages_push_intents_total") or 0

        start = intents()
        await self.write(w, cid, "k0")  # nobody known entered yet: an intent
        self.assertEqual((await r.expect("NOTIFY_MESSAGE"))["content"], "k0")
        self.assertEqual(intents(), start + 1)
        for k in range(1, 6):
            await self.write(w, cid, "k%d" % k)
            self.assertEqual((await r.expect("NOTIFY_MESSAGE"))["content"], "k%d" % k)
        self.assertEqual(intents(), start + 1, "intents for a member entered on B")
        self.assertEqual(self.push_count(rb, cid), 0)

        self.assertOk(await r.request("LEAVE_REQUEST", {}), "LEAVE_RESPONSE")
        ack = await self.write(w, cid, "after leave")  # still counted entered: no intent
        seq = ack["messageSequence"]
        self.assertEqual(intents(), start + 1)
        # the check after the commit finds rb away: the push, from memory
        pushed = await self.wait_push(rb, "NOTIFY_MESSAGE", 1,
                                      lambda o: o["event"].get("messageSequence") == seq)
        self.assertEqual(len(pushed), 1, "no push for the write after rb left")
        await self.write(w, cid, "later")  # rb no longer counted entered: an intent
        self.assertEqual(intents(), start + 2)

    def metric(self, i, name):
        """Node i's value of chatd_<name>, or None when it has no such series."""
        return node_metric(self.nodes[i], name)

    # Failed logins are counted in Redis, so they add up over the nodes.
    def test_i_login_failures_count_across_nodes(self):
        u = self.user("lf")
        for k in range(5):  # 3 on A, 2 on B: 5 failures for one username in the window
            status, _, body = self.nodes[k % 2].login_response(u.username, "wrong password")
            self.assertEqual(status, 401, body)
        for i in (A, B):
            status, _, body = self.nodes[i].login_response(u.username, u.password)
            self.assertEqual((status, body.get("error") if isinstance(body, dict) else body),
                             (429, "RATE_LIMITED"),
                             "login on %s after 5 failures spread over both nodes"
                             % NODE_NAMES[i])

    # j. the admin API across nodes ---------------------------------------------------

    def admin(self, i, method, path):
        return self.nodes[i].request(method, path,
                                     headers={"Authorization": "Bearer " + ADMIN_TOKEN})

    def node_id(self, i):
        """The node's id, as its log names it at start (the current start's log)."""
        m = _NODE_ID_RE.search(self.cluster.nodes[i].current_log())
        self.assertIsNotNone(m, "no node id in the log of %s" % NODE_NAMES[i])
        return m.group(1)

    async def wait_stats(self, i, want, timeout=5.0):
        """Stats through node i until its nodes are exactly ``want`` ({id: connections})."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = await loop.run_in_executor(None, self.admin, i, "GET",
                                                         "/api/v1/admin/stats")
            self.assertEqual(status, 200, body)
            got = {n["node"]: n["connections"] for n in body["nodes"]}
            if got == want:
                self.assertEqual(body["connections"], sum(want.values()), body)
                return body
            if time.monotonic() > deadline:
                self.fail("stats through %s: nodes %r, want %r" % (NODE_NAMES[i], got, want))
            await asyncio.sleep(0.1)

    @async_test
    async def test_j_admin_ban_on_a_closes_sockets_on_both_nodes_within_1s(self):
        loop = asyncio.get_running_loop()
        ida, idb = self.node_id(A), self.node_id(B)
        victim, other = self.user_on(A, "ban"), self.user_on(B, "bys")
        ca = await self.connect_to(A, victim)
        cb = await self.connect_to(B, victim, token=self.nodes[B].login(victim.username))
        co = await self.connect_to(B, other)
        for i in (A, B):  # either node lists both, with the sockets each holds
            await self.wait_stats(i, {ida: 1, idb: 2})
        closed_at = {}

        async def watch(c):
            await c.ws.wait_closed()
            closed_at[c.label] = time.monotonic()

        watchers = [asyncio.ensure_future(watch(c)) for c in (ca, cb)]
        t0 = time.monotonic()
        status, _, body = await loop.run_in_executor(
            None, self.admin, A, "POST", "/api/v1/admin/users/%s/ban" % victim.username)
        self.assertEqual((status, body), (200, {"username": victim.username, "banned": True}))
        try:
            await asyncio.wait_for(asyncio.gather(*watchers), 3.0)
        except asyncio.TimeoutError:
            self.fail("a socket of the banned user is still open 3 s after the ban on A")
        for c in (ca, cb):
            self.assertEqual(c.ws.close_code, 4001, c.label)
        took = {c.label: closed_at[c.label] - t0 for c in (ca, cb)}
        figure("admin ban on A -> 4001 on A and B", ", ".join(
            "%s %.1f ms" % (label[-1], t * 1000) for label, t in sorted(took.items())))
        self.assertLess(max(took.values()), 1.0, "the ban took more than 1 s to close %r" % took)
        resp = await co.request("FETCH_USER_INVITECODE_REQUEST", {})
        self.assertEqual(resp.get("inviteCode"), other.invite_code, resp)
        for i in (A, B):
            status, _, body = self.nodes[i].login_response(victim.username)
            self.assertEqual((status, body.get("error")), (403, "FORBIDDEN"), body)
            await self.wait_stats(i, {ida: 0, idb: 1})
        status, _, body = self.admin(B, "POST", "/api/v1/admin/users/%s/unban" % victim.username)
        self.assertEqual((status, body), (200, {"username": victim.username, "banned": False}))
        self.nodes[A].login(victim.username)


class SlowRedisProxy:
    """A TCP proxy to Redis that holds what Redis sends for ``delay`` seconds
    (what the client sends goes at once): a node behind it hears every
    published message late, as a node on a slow link does."""

    def __init__(self, port, delay):
        self.target, self.delay = port, delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, 0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.delay),
                             daemon=True).start()

    def _pipe(self, src, dst, delay):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closing = True
        self.sock.close()


class SlowNodeLogoutTests(ClusterTestCase):
    """Node B hears Redis 30 ms late. A logout on A is answered only once B has
    forgotten the session: B refuses the token at once after the answer."""
    proxy = None

    @classmethod
    def setUpClass(cls):
        def slow_b(cluster):
            cls.proxy = SlowRedisProxy(cluster.redis.port, 0.03)
            return {B: ["redis.port=%d" % cls.proxy.port]}
        cls.cluster = Cluster(nodes=2, node_sets=slow_b).start()
        cls.server = endpoint(cls.cluster.lb_port, cls.cluster.root)
        cls.nodes = [endpoint(p, cls.cluster.root) for p in cls.cluster.ports]
        cls.passed = True

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            if cls.proxy:
                cls.proxy.close()

    def test_logout_waits_for_the_slow_node(self):
        u = self.user_on(A, "slow")
        conn_a, conn_b = self.nodes[A].connection(), self.nodes[B].connection()
        accepted, waits = [], []
        try:
            for i in range(30):
                token = self.nodes[A].login(u.username, u.password)
                bearer = {"Authorization": "Bearer " + token}
                status, _, _ = self.nodes[B].request("GET", "/api/v1/auth/session",
                                                     headers=bearer, conn=conn_b)
                self.assertEqual(status, 200, "round %d: B did not take the token" % i)
                t0 = time.monotonic()
                status, _, _ = self.nodes[A].request("POST", "/api/v1/auth/logout",
                                                     headers=bearer, conn=conn_a)
                waits.append(time.monotonic() - t0)
                self.assertEqual(status, 204)
                status, _, _ = self.nodes[B].request("GET", "/api/v1/auth/session",
                                                     headers=bearer, conn=conn_b)
                if status != 401:
                    accepted.append(i)
        finally:
            conn_a.close()
            conn_b.close()
        figure("logout with a node 30 ms behind",
               "answered after a median %.1f ms (the slow node's confirmation); accepted on "
               "the slow node afterwards: %d of 30" % (statistics.median(waits) * 1000,
                                                      len(accepted)))
        self.assertEqual(accepted, [], "the slow node accepted a token after its logout")
        self.assertGreater(statistics.median(waits), 0.02, "the logout did not wait for B")


class StartTogetherTests(unittest.TestCase):
    """Nodes started at once on a fresh MariaDB all come up: the migrations run
    under a lock, each step once."""

    def test_three_nodes_at_once_on_a_fresh_database(self):
        db, redis = MariaDB().start(), None
        try:
            redis = Redis().start()
            for attempt in range(3):
                with self.subTest(attempt=attempt):
                    self.start_three(db, redis)
        finally:
            if redis is not None:
                redis.cleanup()
            db.cleanup()

    def start_three(self, db, redis):
        c = Cluster(nodes=3, balancer=False, mariadb=db, redis=redis)  # a fresh database
        try:
            c.start()
            self.assertTrue(c.alive())
            out = c.mariadb.sql("SELECT version, COUNT(*) FROM %s.schema_migrations "
                                "GROUP BY version ORDER BY version" % c.database, capture=True)
            rows = [line.split() for line in out.strip().splitlines()]
            files = sorted(int(f.split("_")[0]) for f in os.listdir(
                os.path.join(REPO_ROOT, "sql", "mariadb")) if f.endswith(".sql"))
            self.assertEqual([int(v) for v, _ in rows], files, out)
            self.assertTrue(all(n == "1" for _, n in rows), out)
            self.assertNotIn("already exists", c.log_text())
            c.stop()
            c.cleanup()
        except BaseException:
            sys.stderr.write("cluster dir kept at %s\n" % c.root)
            c.kill_all()
            raise


def _inversions(seqs):
    """How many items arrive after a larger one."""
    top, n = 0, 0
    for s in seqs:
        if s < top:
            n += 1
        top = max(top, s)
    return n


def _first_inversion(seqs):
    top = 0
    for i, s in enumerate(seqs):
        if s < top:
            return "%d after %d" % (s, top)
        top = max(top, s)
    return None


def _count_codes(errors):
    counts = {}
    for _, node, code in errors:
        counts["%s %s" % (node, code)] = counts.get("%s %s" % (node, code), 0) + 1
    return ", ".join("%s x%d" % kv for kv in sorted(counts.items()))


def _short(obj, n=160):
    text = json.dumps(obj)
    return text if len(text) <= n else text[:n] + "..."


def main():
    missing = missing_programs()
    if missing:
        print("not installed: %s: skipped" % ", ".join(missing))
        sys.exit(77)  # meson's "skipped"
    prog = unittest.main(verbosity=2, exit=False)
    if FIGURES:
        sys.stderr.write("\n== figures\n")
        for what, text in FIGURES:
            sys.stderr.write("%-36s %s\n" % (what, text))
    sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
