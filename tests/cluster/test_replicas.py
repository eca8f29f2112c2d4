#!/usr/bin/python3
"""MariaDB read replicas (mariadb.replicas): a real primary and a real replica
(Debian's mariadb-server, GTID replication) on loopback, one chatd node on
them (tests/cluster/cluster.py, with Redis as a cluster has it).

  a. reads land on the replica (its general log, chatd's counters), writes
     and logins on the primary;
  b. the replica stopped under a small load of reads and writes: reads move to
     the primary and no request fails; started again, reads return to it; read
     latency on the replica and on the primary is printed;
  c. read-your-write with the replica held back (STOP SLAVE SQL_THREAD): the
     writer's FETCH right after its write sees it, from the primary once the
     wait for the write's GTID timed out, or from the replica when its SQL
     thread starts again within the wait; another user's read meanwhile is
     served by the stale replica.
  d. the primary stopped: reads go on on the replica for longer than
     mariadb.max_replica_lag_ms (the node's last heartbeat is the replica's
     too: it is not behind), writes answer UNAVAILABLE; the primary started
     again, writes are acknowledged and the replica follows it again.

Exit status 77 (skipped) when mariadbd or redis-server is not installed.
"""

import asyncio
import os
import re
import statistics
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from backends import HOST, MariaDB  # noqa: E402
from cluster import Cluster, missing_programs  # noqa: E402
from harness import Server, connection_closed_types  # noqa: E402
from domain import DomainTestCase, async_test, chan  # noqa: E402

LAG_MS = 3000    # mariadb.max_replica_lag_ms
WAIT_MS = 1000   # mariadb.replica_wait_ms

FIGURES = []


def figure(what, text):
    FIGURES.append((what, text))
    sys.stderr.write("  [figure] %s: %s\n" % (what, text))
    sys.stderr.flush()


def endpoint(port, data_dir=None):
    srv = Server()
    srv.port = port
    srv.data_dir = data_dir
    return srv


_METRIC_RE = re.compile(r"^(chatd_[a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", re.MULTILINE)


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


class ReplicaTests(DomainTestCase):

    @classmethod
    def setUpClass(cls):
        cls.primary = cls.replica = cls.cluster = None
        try:
            cls.primary = MariaDB(server_id=1).start()
            cls.replica = MariaDB(server_id=2).start().replicate_from(cls.primary)
            cls.cluster = Cluster(nodes=1, balancer=False, mariadb=cls.primary, extra_sets=[
                'mariadb.replicas=["%s:%d"]' % (HOST, cls.replica.port),
                "mariadb.max_replica_lag_ms=%d" % LAG_MS,
                "mariadb.replica_wait_ms=%d" % WAIT_MS]).start()
        except BaseException:
            cls.tearDownClass()
            raise
        cls.server = endpoint(cls.cluster.ports[0], cls.cluster.root)

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.cluster is not None:
                cls.cluster.stop()
                cls.cluster.cleanup()
        finally:
            for db in (cls.replica, cls.primary):
                if db is not None:
                    db.cleanup()

    # ---- helpers -----------------------------------------------------------------

    def metrics(self):
        # a health check first: its read (on the primary) sets the gauge of fit replicas
        self.server.request("GET", "/healthz")
        status, _, body = self.server.request("GET", "/metrics")
        self.assertEqual(status, 200)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        out = {}
        for name, labels, value in _METRIC_RE.findall(text):
            out[name + (labels or "")] = float(value)
        return out

    def counter(self, name):
        return self.metrics().get("chatd_%s_total" % name, 0.0)

    def on_replica(self, m=None):
        """Reads run on the replica so far (at once, or after waiting for a write)."""
        m = m or self.metrics()
        return (m.get("chatd_store_reads_replica_total", 0)
                + m.get("chatd_store_reads_replica_waited_total", 0))

    def caught_up(self):
        self.replica.caught_up(self.primary)

    async def wait_metric(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.metrics()
            if pred(m):
                return m
            await asyncio.sleep(0.1)
        self.fail("%s within %.0f s; metrics %r" % (what, timeout, {
            k: v for k, v in self.metrics().items() if "read" in k or "replica" in k}))

    async def pair(self, prefix):
        """Two users in one channel, each with a socket; the replica has it all."""
        p, q = self.user(prefix + "p"), self.user(prefix + "q")
        cid = await self.channel_with(p, q)
        cp, cq = await self.connect(p), await self.connect(q)
        self.caught_up()
        await self.wait_metric(lambda m: m.get("chatd_store_replicas_fit", 0) == 1, 10,
                               "the replica fit")
        return cid, cp, cq

    def general_log(self, db, on):
        db.sql("SET GLOBAL log_output = 'TABLE'; TRUNCATE mysql.general_log; "
               "SET GLOBAL general_log = %d;" % (1 if on else 0))

    def fetches_logged(self, db):
        out = db.sql("SELECT COUNT(*) FROM mysql.general_log WHERE command_type = 'Execute' "
                     "AND argument LIKE '%%FROM message m JOIN message_user%%' "
                     "AND user_host LIKE 'chatd%%'", capture=True)
        return int(out.strip() or 0)

    # ---- a -----------------------------------------------------------------------

    @async_test
    async def test_a_reads_land_on_the_replica(self):
        cid, cp, cq = await self.pair("ra")
        for i in range(5):
            await self.write(cp, cid, "to the replica %d" % i)
        self.caught_up()
        before = self.on_replica()
        for db in (self.primary, self.replica):
            self.general_log(db, True)
        try:
            for _ in range(20):
                msgs = await self.fetch(cq, cid)
                self.assertEqual(len(msgs), 5)
        finally:
            on_replica = self.fetches_logged(self.replica)
            on_primary = self.fetches_logged(self.primary)
            for db in (self.primary, self.replica):
                self.general_log(db, False)
        after = self.on_replica()
        figure("reads on the replica", "%d of 20 FETCHes in the replica's general log, %d in "
               "the primary's; chatd_store_reads_replica(_waited)_total +%d"
               % (on_replica, on_primary, after - before))
        self.assertEqual(on_primary, 0, "FETCHes ran on the primary")
        self.assertGreaterEqual(on_replica, 20)
        self.assertGreaterEqual(after - before, 20)
        # the primary heard of none of them; a write still goes there
        ack = await self.write(cq, cid, "a write")
        self.assertEqual(ack["messageSequence"], 6)

    # ---- b -----------------------------------------------------------------------

    @async_test
    async def test_b_replica_stopped_under_load_reads_move_and_come_back(self):
        cid, cp, cq = await self.pair("rb")
        readers = [cq] + [await self.connect(cq.user) for _ in range(2)]
        errors, latencies = [], []   # latencies: (phase, seconds)
        acked = []
        phase = ["replica"]
        stop = asyncio.Event()
        closed = connection_closed_types()

        async def reader(c):
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    resp = await c.request("FETCH_MESSAGES_REQUEST",
                                           {"channelId": chan(cid), "limit": 20}, timeout=10)
                except (AssertionError,) + closed as e:
                    errors.append("%s: %s" % (c.label, e))
                    return
                if resp.get("type") != "FETCH_MESSAGES_RESPONSE":
                    errors.append("%s: %r" % (c.label, resp))
                else:
                    latencies.append((phase[0], time.monotonic() - t0))
                await asyncio.sleep(0.03)

        async def writer():
            i = 0
            while not stop.is_set():
                try:
                    resp = await cp.request("WRITE_MESSAGE", {"channelId": chan(cid),
                                                              "content": "load %d" % i},
                                            timeout=10)
                except (AssertionError,) + closed as e:
                    errors.append("writer: %s" % e)
                    return
                if resp.get("type") != "WRITE_MESSAGE_ACK":
                    errors.append("writer: %r" % resp)
                else:
                    acked.append(resp["messageSequence"])
                i += 1
                await asyncio.sleep(0.1)

        tasks = [asyncio.ensure_future(reader(c)) for c in readers]
        tasks.append(asyncio.ensure_future(writer()))
        loop = asyncio.get_running_loop()
        moved = back = None
        try:
            await asyncio.sleep(2.0)
            self.assertGreater(self.on_replica(), 0, "no read on the replica before it stopped")
            phase[0] = "stopping"
            t_stop = time.monotonic()
            await loop.run_in_executor(None, self.replica.stop)
            phase[0] = "primary"
            base = self.counter("store_reads_no_replica")
            await self.wait_metric(lambda m: m.get("chatd_store_reads_no_replica_total", 0)
                                   > base + 20, 10, "reads on the primary")
            moved = time.monotonic() - t_stop
            await asyncio.sleep(2.0)
            stuck = self.on_replica()
            phase[0] = "starting"
            t_start = time.monotonic()
            await loop.run_in_executor(None, self.replica.start)
            await self.wait_metric(lambda m: self.on_replica(m) > stuck + 20, 15,
                                   "reads back on the replica")
            back = time.monotonic() - t_start
            phase[0] = "replica again"
            await asyncio.sleep(2.0)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            if not self.replica.alive():
                self.replica.start()
        self.assertEqual(errors, [], "requests failed while the replica stopped and started")
        by_phase = {}
        for ph, t in latencies:
            by_phase.setdefault(ph, []).append(t * 1000)
        m = self.metrics()

        def server_avg(name):
            n = m.get("chatd_%s_seconds_count" % name, 0)
            return m.get("chatd_%s_seconds_sum" % name, 0) / n * 1000 if n else float("nan")

        figure("replica stopped under load", "reads on the primary %.2f s after the stop; "
               "back on the replica %.2f s after the start; %d reads, %d writes, 0 failed"
               % (moved, back, len(latencies), len(acked)))
        figure("FETCH latency (client, ms)", "; ".join(
            "%s: median %.2f p95 %.2f (n=%d)" % (ph, statistics.median(v), percentile(v, 95),
                                                 len(v))
            for ph, v in by_phase.items() if v))
        figure("read job latency (server, mean ms)", "replica %.3f, primary %.3f"
               % (server_avg("store_read_replica"), server_avg("store_read_primary")))
        # every acknowledged write is there, gapless
        msgs = await self.fetch_all(cp, cid)
        seqs = [x["messageSequence"] for x in msgs]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        self.assertTrue(set(acked) <= set(seqs))

    # ---- c -----------------------------------------------------------------------

    @async_test
    async def test_c_read_your_write_with_the_replica_held_back(self):
        cid, cp, cq = await self.pair("rc")
        await self.write(cp, cid, "before")
        self.caught_up()
        # 1. the SQL thread stopped: the wait for the write times out, the primary reads
        self.replica.sql("STOP SLAVE SQL_THREAD")
        try:
            timeouts = self.counter("store_reads_wait_timeout")
            ack = await self.write(cp, cid, "mine at once")
            t0 = time.monotonic()
            msgs = await self.fetch(cp, cid)
            waited = time.monotonic() - t0
            self.assertIn("mine at once", [x["content"] for x in msgs],
                          "the writer's FETCH right after its write missed it")
            self.assertEqual(self.counter("store_reads_wait_timeout"), timeouts + 1)
            # another user reads the replica as it is: behind (no wait: not their write)
            t1 = time.monotonic()
            other = [x["content"] for x in await self.fetch(cq, cid)]
            stale = "mine at once" not in other
            figure("read-your-write, SQL thread stopped", "the writer's FETCH saw its message "
                   "after %.0f ms (wait %d ms, then the primary); another user's FETCH %.0f ms "
                   "later %s" % (waited * 1000, WAIT_MS, (t1 - t0) * 1000,
                                 "did not see it yet (the replica is behind)" if stale
                                 else "saw it (the replica was skipped as lagging)"))
        finally:
            self.replica.sql("START SLAVE SQL_THREAD")
        self.caught_up()
        await self.wait_metric(lambda m: m.get("chatd_store_replicas_fit", 0) == 1, 10,
                               "the replica fit again")
        # 2. the SQL thread starts again within the wait: the replica answers
        self.replica.sql("STOP SLAVE SQL_THREAD")
        try:
            waited_ok = self.counter("store_reads_replica_waited")
            ack = await self.write(cp, cid, "mine after the wait")
            rid = "ryw-%d" % ack["messageSequence"]
            t0 = time.monotonic()
            await cp.send({"type": "FETCH_MESSAGES_REQUEST", "requestId": rid,
                           "channelId": chan(cid)})
            await asyncio.sleep(0.2)
            self.replica.sql("START SLAVE SQL_THREAD")
            resp = await cp.reply(rid, timeout=5)
            waited = time.monotonic() - t0
        finally:
            self.replica.sql("START SLAVE SQL_THREAD")
        self.assertOk(resp, "FETCH_MESSAGES_RESPONSE")
        self.assertIn("mine after the wait", [x["content"] for x in resp["messages"]])
        self.assertEqual(self.counter("store_reads_replica_waited"), waited_ok + 1,
                         "the read did not run on the replica after waiting")
        figure("read-your-write, SQL thread restarted", "the replica applied the write "
               "and answered the writer's FETCH after %.0f ms" % (waited * 1000))

    # ---- d -----------------------------------------------------------------------

    @async_test
    async def test_d_primary_down_reads_go_on_on_the_replica(self):
        cid, cp, cq = await self.pair("rd")
        await self.write(cp, cid, "before the primary stops")
        self.caught_up()
        loop = asyncio.get_running_loop()
        t_stop = time.monotonic()
        await loop.run_in_executor(None, self.primary.stop)
        try:
            reads = 0
            while time.monotonic() - t_stop < LAG_MS / 1000.0 + 1.5:
                msgs = await self.fetch(cq, cid)
                self.assertIn("before the primary stops", [x["content"] for x in msgs])
                reads += 1
                await asyncio.sleep(0.25)
            await self.assertRequestFails(cp, "WRITE_MESSAGE", {
                "channelId": chan(cid), "content": "while the primary is down"}, "UNAVAILABLE")
            self.assertEqual(self.metrics().get("chatd_store_replicas_fit"), 1.0)
        finally:
            await loop.run_in_executor(None, self.primary.start)
        figure("primary stopped", "%d FETCHes answered by the replica over %.1f s with the "
               "primary down; a write answered UNAVAILABLE" % (reads, time.monotonic() - t_stop))
        deadline = time.monotonic() + 15
        while True:
            resp = await cp.request("WRITE_MESSAGE", {"channelId": chan(cid),
                                                      "content": "after the primary is back"})
            if resp.get("type") == "WRITE_MESSAGE_ACK" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        self.assertOk(resp, "WRITE_MESSAGE_ACK")
        self.caught_up()
        msgs = await self.fetch(cq, cid)
        self.assertIn("after the primary is back", [x["content"] for x in msgs])


def main():
    missing = missing_programs()
    if missing:
        print("skipped: not installed: " + ", ".join(missing))
        return 77
    prog = unittest.main(exit=False, verbosity=2)
    if FIGURES:
        sys.stderr.write("\nfigures (quick runs on a shared machine):\n")
        for what, text in FIGURES:
            sys.stderr.write("  %s: %s\n" % (what, text))
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
