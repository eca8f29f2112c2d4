#!/usr/bin/python3
"""Redis Sentinel (redis.sentinels, redis.master_name): a Redis master, one
replica and three Sentinels (Debian's redis-server and redis-sentinel, quorum
2, down-after 500 ms, failover timeout 2 s) on loopback, and two chatd nodes
on MariaDB that find the master through the Sentinels
(tests/cluster/cluster.py).

  a. kill -9 of the master under a steady load of writes on both nodes: no
     node exits; every acknowledged message is fetchable afterwards, the
     channel's sequence gapless; a message written on A after the kill
     reaches a socket entered on B within the Sentinels' failover (kill to
     the new master named) plus 2 s; the presence entries the replica lacked
     (deleted there before the kill, as an asynchronous replica may lack the
     master's last writes) are on the new master at once, not a heartbeat
     later; a logout answered just before the kill, whose removal the
     replica lacked (put back there), stays a logout on both nodes; the
     users entered on B get deliveries, not pushes; logins work on both
     nodes; each node counts the failover it followed.
  b. one Sentinel down: nothing changes for the nodes (deliveries across
     nodes, logins).
  c. chatd-push with redis.sentinels (and no redis.host): entries added on
     the master are delivered; the master killed -9, the worker follows the
     failover without exiting, and entries added on the new master are
     delivered; SIGTERM then exits 0.

The window of a), kill to the first cross-node delivery, is printed as a
figure line.

Exit status 77 (skipped) when mariadbd, redis-server, redis-sentinel or nginx
is not installed.
"""

import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from backends import Redis, Sentinel  # noqa: E402
from cluster import Cluster, missing_programs, node_metric  # noqa: E402
from domain import async_test, fetch_all_messages  # noqa: E402
from load import ChannelLoad  # noqa: E402
from test_push_worker import (  # noqa: E402
    SECRET,
    Receiver,
    RedisError,
    Resp,
    Worker,
    feed,
    push_bin,
    wait_until,
)
from test_cluster import (  # noqa: E402
    A,
    ADMIN_TOKEN,
    B,
    FIGURES,
    NODE_NAMES,
    ClusterTestCase,
    _count_codes,
    endpoint,
    figure,
)

MASTER_NAME = "chatd-test"
# A heartbeat every 10 s: entries back sooner than that were written again
# because the node followed the failover.
PRESENCE_TTL = 30


def user_id(u):
    return u.user_id["id"] if isinstance(u.user_id, dict) else u.user_id


def redis_with_sentinels():
    """A master, its replica and three Sentinels watching it as MASTER_NAME."""
    master = Redis().start()
    replica = Redis().start(replica_of=master)
    sentinels = [Sentinel(master, MASTER_NAME).start() for _ in range(3)]
    # a failover needs them to know each other (they say hello every 2 s)
    wait_until(lambda: all(s.knows() == (2, 1) for s in sentinels), 20,
               "the Sentinels found each other and the replica")
    return master, replica, sentinels


def sentinel_sets(sentinels):
    return ["redis.sentinels=[%s]" % ", ".join('"%s"' % s.address for s in sentinels),
            'redis.master_name="%s"' % MASTER_NAME]


def named_master(sentinels):
    """The master's port as the first Sentinel that answers names it."""
    for s in sentinels:
        if s.alive():
            port = s.master()
            if port:
                return port
    return None


def wait_master_other_than(sentinels, port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = named_master(sentinels)
        if got and got != port:
            return got
        time.sleep(0.02)
    return None


class SentinelTests(ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.master = cls.replica = cls.cluster = None
        cls.sentinels = []
        try:
            cls.master, cls.replica, cls.sentinels = redis_with_sentinels()
            cls.cluster = Cluster(nodes=2, redis=cls.master, extra_sets=[
                'admin.token="%s"' % ADMIN_TOKEN, "redis.presence_ttl=%d" % PRESENCE_TTL]
                + sentinel_sets(cls.sentinels)).start()
        except BaseException:
            cls.stop_backends()
            raise
        cls.server = endpoint(cls.cluster.lb_port, cls.cluster.root)
        cls.nodes = [endpoint(p, cls.cluster.root) for p in cls.cluster.ports]
        cls.passed = True

    @classmethod
    def stop_backends(cls):
        if cls.cluster is not None and not cls.cluster.started:
            cls.cluster.cleanup()
        for s in cls.sentinels:
            s.cleanup()
        for r in (cls.replica, cls.master):
            if r is not None:
                r.cleanup()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.stop_backends()

    # ---- helpers ---------------------------------------------------------------------

    def presence_on(self, redis, cid, users):
        """What is missing of these users' entries (entered in cid, online) on redis."""
        p = self.cluster.redis_prefix
        entered = redis.cli("HKEYS", "%sin:%d" % (p, cid)).split()
        missing = []
        for u in users:
            uid = user_id(u)
            if not any(e.startswith("%d:" % uid) for e in entered):
                missing.append("%s not entered in the channel" % u.username)
            if not redis.cli("HKEYS", "%sol:%d" % (p, uid)).split():
                missing.append("%s held by no node" % u.username)
            state = redis.cli("GET", "%spres:%d" % (p, uid))
            if state != "on":
                missing.append("%s's state %r, not 'on'" % (u.username, state))
        return missing

    def metric(self, i, name):
        """Node i's value of chatd_<name>, or None when it has no such series."""
        return node_metric(self.nodes[i], name)

    # a. ------------------------------------------------------------------------------

    @async_test
    async def test_a_master_killed_under_load(self):
        wa, wb, r = self.user("sa"), self.user("sb"), self.user("sr")
        cid = await self.channel_with(wa, wb, r)
        ca = await self.connect_to(A, wa)
        cb = await self.connect_to(B, wb)
        cr = await self.connect_to(B, r)
        for c in (ca, cb, cr):
            await self.enter(c, cid)
        users = (wa, wb, r)
        loop = asyncio.get_running_loop()
        old = self.master
        self.assertEqual(await loop.run_in_executor(None, named_master, self.sentinels),
                         old.port)
        missing = self.presence_on(old, cid, users)
        self.assertEqual(missing, [], "presence before the failover")
        for i in (A, B):  # the series is there before any failover
            self.assertEqual(self.metric(i, "redis_failovers_total"), 0.0)
        load = ChannelLoad(cid, {"A": ca, "B": cb}, cr).start()
        problems = load.problems
        try:
            await asyncio.sleep(1.5)
            # What the replica lacks of the master's last writes: the entries
            # of these users, taken from it alone (a writable replica's own
            # writes are not replicated).
            self.replica.cli("CONFIG", "SET", "replica-read-only", "no")
            p = self.cluster.redis_prefix
            self.replica.cli("DEL", "%sin:%d" % (p, cid),
                             *["%s%s:%d" % (p, k, user_id(u)) for u in users
                               for k in ("ol", "pres")])
            self.assertNotEqual(self.presence_on(self.replica, cid, users), [])
            # a logout on A, and on the replica alone the session as it was
            # before its removal (the replica did not get the DEL in time)
            gone = self.nodes[A].login(r.username, r.password)
            key = hashlib.sha256(gone.encode()).hexdigest()
            self.assertEqual(self.nodes[A].request("POST", "/api/v1/auth/logout", headers={
                "Authorization": "Bearer " + gone})[0], 204)
            self.replica.cli("SET", "%ssess:%s" % (p, key), "%d:%s" % (user_id(r), r.username),
                             "EX", "3600")
            self.replica.cli("SADD", "%susess:%d" % (p, user_id(r)), key)
            before = len(load.acked)
            t_kill = time.monotonic()
            old.kill9()
            new_port = await loop.run_in_executor(None, wait_master_other_than, self.sentinels,
                                                  old.port, 20.0)
            failover = time.monotonic() - t_kill
            self.assertEqual(new_port, self.replica.port, "the Sentinels did not fail over")
            cross = await load.wait_delivery("A", t_kill, failover + 10.0)
            back = None
            t_presence = time.monotonic()
            while time.monotonic() - t_presence < 5.0:
                if not self.presence_on(self.replica, cid, users):
                    back = time.monotonic() - t_kill
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
        finally:
            await load.stop()
        during = len(load.acked) - before

        figure("Redis master killed (Sentinel failover)",
               "the Sentinels named the replica %.2f s after kill -9; first cross-node "
               "delivery A->B %s s after the kill; presence entries on the new master %s s "
               "after the kill; %d writes acknowledged meanwhile; errors %s "
               "(short run on a shared machine)"
               % (failover, "%.2f" % cross if cross is not None else "never",
                  "%.2f" % back if back is not None else "never", during,
                  _count_codes(load.errors) or "none"))

        for i in (A, B):
            if not self.cluster.nodes[i].alive():
                problems.append("node %s exited" % NODE_NAMES[i])
            status = self.nodes[i].request("GET", "/api/v1/auth/session", headers={
                "Authorization": "Bearer " + gone})[0]
            if status != 401:
                problems.append("node %s took a token logged out before the failover: %d"
                                % (NODE_NAMES[i], status))
        if self.replica.cli("EXISTS", "%ssess:%s" % (p, key)) != "0":
            problems.append("the session logged out before the failover is on the new master")
        if cross is None:
            problems.append("no cross-node delivery within %.1f s of the kill" % (failover + 10))
        elif cross > failover + 2.0:
            problems.append("cross-node delivery back %.2f s after the kill: more than the "
                            "failover (%.2f s) plus 2 s" % (cross, failover))
        if back is None:
            problems.append("presence entries not on the new master within 5 s: %r"
                            % self.presence_on(self.replica, cid, users))
        elif back > failover + 2.0:
            problems.append("presence entries on the new master only %.2f s after the kill"
                            % back)
        bad = [e for e in load.errors if e[2] != "UNAVAILABLE"]
        if bad:
            problems.append("write errors other than UNAVAILABLE: %r" % bad[:5])
        messages = await fetch_all_messages(await self.connect_to(A, wa), cid, page=200)
        problems += ["after the failover: " + p for p in load.stored_problems(messages)]

        # entered on B, so deliveries, not pushes
        ack = await self.write(ca, cid, "after the failover")
        await asyncio.sleep(1.0)
        for u in (wb, r):
            n = self.push_count(u, cid, {ack["messageSequence"]})
            if n:
                problems.append("%s, entered on B, got %d push line(s) after the failover"
                                % (u.username, n))
        for i in (A, B):
            token = self.nodes[i].login(r.username, r.password)
            c = await self.connect_to(i, r, token=token)
            resp = await c.request("FETCH_USER_INVITECODE_REQUEST", {})
            if resp.get("inviteCode") != r.invite_code:
                problems.append("node %s after the failover: %r" % (NODE_NAMES[i], resp))
            if (self.metric(i, "redis_failovers_total") or 0) < 1:
                problems.append("node %s counted no failover followed" % NODE_NAMES[i])
        self.assertNoProblems(problems, "Redis master killed under load", logs=True)

    # b. ------------------------------------------------------------------------------

    @async_test
    async def test_b_a_sentinel_down_changes_nothing(self):
        down = next(s for s in self.sentinels if s.alive())
        down.stop()
        try:
            wa, wb = self.user("ta"), self.user("tb")
            cid = await self.channel_with(wa, wb)
            ca = await self.connect_to(A, wa)
            cb = await self.connect_to(B, wb)
            for c in (ca, cb):
                await self.enter(c, cid)
            await self.write(ca, cid, "one Sentinel down")
            got = await cb.expect("NOTIFY_MESSAGE", 5.0)
            self.assertEqual(got["content"], "one Sentinel down")
            for i in (A, B):
                self.nodes[i].login(wb.username, wb.password)
            self.assertTrue(self.cluster.alive())
        finally:
            down.start()


class PushWorkerTests(unittest.TestCase):
    """chatd-push alone on its own master, replica and Sentinels."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="chatd-push-sentinel-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.master, self.replica, sentinels = redis_with_sentinels()
        self.sentinels = sentinels
        for d in sentinels + [self.replica, self.master]:
            self.addCleanup(d.cleanup)
        self.redis = self.master  # Worker sets redis.host from it: emptied below
        self.stream = "chatd:push:%s" % os.urandom(4).hex()

    def feed_on(self, port, n, tag):
        """feed() on the Redis at port, again while it still refuses writes."""
        deadline = time.monotonic() + 10
        while True:
            r = Resp(port)
            try:
                return feed(r, self.stream, n, tag)
            except RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                r.close()

    def test_c_chatd_push_follows_the_failover(self):
        rc = Receiver()
        self.addCleanup(rc.stop)
        w = Worker(self, self.stream, rc, "sentinel",
                   sets=['redis.host=""'] + sentinel_sets(self.sentinels)).wait_ready()
        before = self.feed_on(self.master.port, 5, "before")
        wait_until(lambda: rc.delivered_set() >= set(before), 10, "delivered before")
        t_kill = time.monotonic()
        self.master.kill9()
        new_port = wait_master_other_than(self.sentinels, self.master.port, 20.0)
        self.assertEqual(new_port, self.replica.port, "the Sentinels did not fail over")
        t_named = time.monotonic()
        after = self.feed_on(new_port, 10, "after")
        wait_until(lambda: rc.delivered_set() >= set(after), 10, "delivered after the failover")
        figure("chatd-push, Redis master killed",
               "the Sentinels named the replica %.2f s after kill -9; entries added on it "
               "delivered %.2f s later (short run on a shared machine)"
               % (t_named - t_kill, time.monotonic() - t_named))
        text = w.text()
        self.assertIsNone(w.proc.poll(), text)
        self.assertIn("following the master", text)
        self.assertNotIn("was gone", text)  # its group, replicated, is on the new master
        code, _ = w.terminate()
        self.assertEqual(code, 0, w.text())
        self.assertNotIn(SECRET, w.text())


def main():
    missing = missing_programs()
    if not shutil.which("redis-sentinel"):
        missing.append("redis-sentinel (redis-sentinel)")
    if missing:
        print("skipped: not installed: " + ", ".join(missing))
        return 77
    if not os.access(push_bin(), os.X_OK):
        print("chatd-push not found: %s (set CHATD_PUSH_BIN)" % push_bin())
        return 1
    result = unittest.main(exit=False, verbosity=2).result
    if FIGURES:
        sys.stderr.write("\nfigures:\n")
        for what, text in FIGURES:
            sys.stderr.write("  %s: %s\n" % (what, text))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
