#!/usr/bin/python3
"""Writes that share one storage batch (plugins.messaging.batch_writes): the
batch takes a few statements for all its messages, and every answer is what
the same writes would get one by one. The server waits up to 50 ms to gather
a batch, so a socket's pipelined writes land in one. The same tests run with
batch_writes = 0 (UnbatchedWriteTests) as the reference."""

import asyncio
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from domain import DomainTestCase, async_test, chan  # noqa: E402
from harness import cluster_size  # noqa: E402
from test_http import parse_metrics  # noqa: E402
from test_push_webhook import db_count  # noqa: E402

WRITE = "WRITE_MESSAGE"


class BatchedWriteTests(DomainTestCase):
    server_sets = ["storage.batch_wait_us=50000", "storage.batch_max=64",
                   "plugins.messaging.max_writes_per_second=100000"]

    async def room(self, n_members=1):
        """A group of a writer and members; their sockets, entered."""
        w, *members = self.users(1 + n_members, "bw")
        cid = await self.channel_with(w, *members)
        cw = await self.connect(w)
        cms = [await self.connect(m) for m in members]
        for c in [cw] + cms:
            await self.enter(c, cid)
        return cid, w, cw, members, cms

    BATCHED = True

    async def pipelined(self, client, writes):
        """Send every write (fields) at once; the answers in the same order.
        With batching, the writes ran in batches (more than one of them shared
        one) and none of those batches was taken back to run one by one."""
        before = self.metrics()
        rids = ["b%d-%d" % (id(self) % 10000, i) for i in range(len(writes))]
        for rid, fields in zip(rids, writes):
            await client.send(dict(fields, type=WRITE, requestId=rid))
        answers = [await client.reply(rid, WRITE) for rid in rids]
        after = self.metrics()
        if after is not None:
            batched = after.get("chatd_jobs_batched_total", 0) - before.get(
                "chatd_jobs_batched_total", 0)
            self.assertEqual(after.get("chatd_jobs_batch_failed_total", 0),
                             before.get("chatd_jobs_batch_failed_total", 0),
                             "a batch's run failed and its writes ran one by one")
            if self.BATCHED:
                self.assertGreaterEqual(batched, 2, "no writes shared a batch")
            else:
                self.assertEqual(batched, 0)
        return answers

    def metrics(self):
        """The node's metrics; None behind a balancer (which node answers?)."""
        if cluster_size():
            return None
        status, _, body = self.server.request("GET", "/metrics")
        self.assertEqual(status, 200)
        return parse_metrics(body.decode("utf-8"))

    def batch_max(self):
        return self.metrics().get("chatd_commit_batch_max", 0)

    @async_test
    async def test_pipelined_writes_share_a_batch_and_stay_gapless(self):
        cid, _, cw, _, (cm,) = await self.room()
        answers = await self.pipelined(cw, [{"channelId": chan(cid), "content": "m%d" % i}
                                            for i in range(20)])
        self.assertEqual([a["messageSequence"] for a in answers], list(range(1, 21)), answers)
        versions = [a["version"] for a in answers]
        self.assertEqual(versions, sorted(set(versions)), answers)
        if not cluster_size():  # behind a balancer /metrics may be the other node's
            self.assertGreaterEqual(self.batch_max(), 10, "the writes did not share a batch")
        notes = [await cm.expect("NOTIFY_MESSAGE") for _ in range(20)]
        self.assertEqual([(n["messageSequence"], n["content"]) for n in notes],
                         [(i + 1, "m%d" % i) for i in range(20)])
        stored = await self.fetch_all(cm, cid)
        self.assertEqual([(m["messageSequence"], m["content"], m["version"]) for m in stored],
                         [(a["messageSequence"], "m%d" % i, a["version"])
                          for i, a in enumerate(answers)])
        entry = await self.channel_entry(cw, cid)
        self.assertEqual((entry["lastMessageSequence"], entry["version"]),
                         (20, versions[-1]), entry)

    @async_test
    async def test_retries_in_one_batch_store_one_message(self):
        cid, _, cw, _, (cm,) = await self.room()
        first = await self.write(cw, cid, "before", cmid="x0")
        writes = [{"channelId": chan(cid), "content": "dup", "clientMessageId": "x1"},
                  {"channelId": chan(cid), "content": "other", "clientMessageId": "x2"},
                  {"channelId": chan(cid), "content": "dup", "clientMessageId": "x1"},
                  {"channelId": chan(cid), "content": "before", "clientMessageId": "x0"},
                  {"channelId": chan(cid), "content": "dup", "clientMessageId": "x1"},
                  {"channelId": chan(cid), "content": "last"}]
        a = await self.pipelined(cw, writes)
        seqs = [x["messageSequence"] for x in a]
        self.assertEqual(seqs, [2, 3, 2, 1, 2, 4], a)
        self.assertEqual((a[0]["createdAt"], a[0]["version"]),
                         (a[2]["createdAt"], a[2]["version"]))
        self.assertEqual((a[3]["createdAt"], a[3]["version"]),
                         (first["createdAt"], first["version"]))
        self.assertEqual([x["clientMessageId"] for x in a], ["x1", "x2", "x1", "x0", "x1", None])
        stored = await self.fetch_all(cm, cid)
        self.assertEqual([m["content"] for m in stored], ["before", "dup", "other", "last"])
        notes = await cm.collect("NOTIFY_MESSAGE", 0.5)
        self.assertEqual([n["messageSequence"] for n in notes], [1, 2, 3, 4])

    @async_test
    async def test_a_retry_behind_new_writes_in_a_batch(self):
        """The batch takes its writes for new ones and the unique index finds
        the retry: here in the INSERT after the first two rows (3 rows go as 2
        and 1), so the batch is taken back and its writes run one by one."""
        cid, _, cw, _, (cm,) = await self.room()
        before = self.metrics()
        for rounds in range(2):
            first = await self.write(cw, cid, "before%d" % rounds, cmid="r%d" % rounds)
            base = first["messageSequence"]
            rids = ["rb%d-%d-%d" % (id(self) % 10000, rounds, i) for i in range(3)]
            writes = [{"content": "new", "clientMessageId": "n%d-1" % rounds},
                      {"content": "new", "clientMessageId": "n%d-2" % rounds},
                      {"content": "again", "clientMessageId": "r%d" % rounds}]
            for rid, fields in zip(rids, writes):
                await cw.send(dict(fields, type=WRITE, requestId=rid, channelId=chan(cid)))
            a = [await cw.reply(rid, WRITE) for rid in rids]
            self.assertEqual([x["messageSequence"] for x in a], [base + 1, base + 2, base], a)
            self.assertEqual((a[2]["createdAt"], a[2]["version"]),
                             (first["createdAt"], first["version"]))
        after = self.metrics()
        if after is not None and self.BATCHED:
            self.assertGreaterEqual(after.get("chatd_jobs_batch_failed_total", 0)
                                    - before.get("chatd_jobs_batch_failed_total", 0), 2,
                                    "the batches did not meet the retry in their INSERT")
        stored = await self.fetch_all(cm, cid)
        self.assertEqual([m["content"] for m in stored],
                         ["before0", "new", "new", "before1", "new", "new"])
        notes = await cm.collect("NOTIFY_MESSAGE", 0.5)
        self.assertEqual([n["messageSequence"] for n in notes], [1, 2, 3, 4, 5, 6])

    @async_test
    async def test_reply_to_a_message_of_the_same_batch(self):
        cid, _, cw, _, (cm,) = await self.room()
        await self.write(cw, cid, "one")
        a = await self.pipelined(cw, [
            {"channelId": chan(cid), "content": "two"},
            {"channelId": chan(cid), "content": "re two", "replyTo": 2},
            {"channelId": chan(cid), "content": "re one", "replyTo": 1},
            {"channelId": chan(cid), "content": "re none", "replyTo": 9},
            {"channelId": chan(cid), "content": "re five", "replyTo": 5},
            {"channelId": chan(cid), "content": "five"}])
        self.assertEqual([x.get("messageSequence") for x in a], [2, 3, 4, None, None, 5], a)
        for bad in (a[3], a[4]):
            self.assertErr(bad, "NOT_FOUND", WRITE)
        stored = await self.fetch_all(cm, cid)
        self.assertEqual([(m["messageSequence"], m["content"], m["replyTo"]) for m in stored],
                         [(1, "one", None), (2, "two", None), (3, "re two", 2),
                          (4, "re one", 1), (5, "five", None)])

    @async_test
    async def test_outsiders_in_a_batch_are_refused_and_take_no_sequence(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        other = await self.create_group(cw, [m])
        outsider = self.user("bo")
        co = await self.connect(outsider)
        refused, written, _ = await asyncio.gather(
            self.pipelined(co, [{"channelId": chan(cid), "content": "no"}] * 3),
            self.pipelined(cw, [{"channelId": chan(cid), "content": "w%d" % i}
                                for i in range(5)]),
            self.pipelined(cm, [{"channelId": chan(other), "content": "o%d" % i}
                                for i in range(5)]))
        for e in refused:
            self.assertErr(e, "FORBIDDEN", WRITE)
        self.assertEqual([x["messageSequence"] for x in written], [1, 2, 3, 4, 5])
        # a channel that does not exist, among writes that do
        a = await self.pipelined(cw, [{"channelId": chan(cid), "content": "w5"},
                                      {"channelId": chan(10 ** 9), "content": "lost"},
                                      {"channelId": chan(cid), "content": "w6"}])
        self.assertEqual([x.get("messageSequence") for x in a], [6, None, 7], a)
        self.assertErr(a[1], "NOT_FOUND", WRITE)
        self.assertEqual([x["messageSequence"] for x in await self.fetch_all(cm, cid)],
                         list(range(1, 8)))
        self.assertEqual([x["content"] for x in await self.fetch_all(cm, other)],
                         ["o%d" % i for i in range(5)])

    @async_test
    async def test_what_one_writes_in_a_batch_one_has_read(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        other = await self.create_group(cw, [m])
        other_device = await self.connect(w, token=self.server.login(w.username, w.password))
        await self.pipelined(cw, [{"channelId": chan(c), "content": "x"}
                                  for c in (cid, other) * 6])
        await cm.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 2})
        await self.wait_entry(other_device, cid, lastMessageSequence=6, unreadCount=0)
        await self.wait_entry(other_device, other, lastMessageSequence=6, unreadCount=0)
        await self.wait_entry(cm, cid, lastMessageSequence=6, unreadCount=4)
        await self.wait_entry(cm, other, lastMessageSequence=6, unreadCount=6)
        await self.pipelined(cm, [{"channelId": chan(cid), "content": "y"}] * 3)
        await self.wait_entry(cm, cid, lastMessageSequence=9, unreadCount=0)
        await self.wait_entry(other_device, cid, lastMessageSequence=9, unreadCount=3)


    @async_test
    async def test_pushes_of_a_batch_each_settle_their_own_intent(self):
        cid, w, cw, (m, away), (cm, ca) = await self.room(2)
        await ca.close()  # away: pushed to
        await asyncio.sleep(0.2)
        await self.pipelined(cw, [{"channelId": chan(cid), "content": "p%d" % i}
                                  for i in range(20)])
        lines = await self.assertPushCount(away, "NOTIFY_MESSAGE", 20)
        self.assertEqual(sorted((x["event"]["messageSequence"], x["event"]["content"])
                                for x in lines), [(i + 1, "p%d" % i) for i in range(20)])
        await self.assertPushCount(m, "NOTIFY_MESSAGE", 0)
        # every intent was settled by its own reference: none is left behind
        # for a recovery to push again
        sql = "SELECT COUNT(*) FROM push_intent WHERE channel_id = %d" % cid
        deadline = time.monotonic() + 5
        while db_count(self.server, sql) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.assertEqual(db_count(self.server, sql), 0)


    @async_test
    async def test_read_acks_in_one_batch(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        other = await self.channel_with(w, self.user("bq"))  # m is no member
        await self.pipelined(cw, [{"channelId": chan(cid), "content": "r%d" % i}
                                  for i in range(5)])
        await cw.collect("NOTIFY_READ", 0.2)
        before = self.metrics()
        acks = [(cid, 2), (cid, 1), (other, 1), (cid, 4), (10 ** 9, 1), (cid, 3)]
        for i, (c, seq) in enumerate(acks):
            await cm.send({"type": "READ_ACK", "channelId": chan(c), "messageSequence": seq,
                           "requestId": "ra%d" % i})
        self.assertErr(await cm.reply("ra2", "READ_ACK"), "FORBIDDEN", "READ_ACK", "ra2")
        self.assertErr(await cm.reply("ra4", "READ_ACK"), "NOT_FOUND", "READ_ACK", "ra4")
        # the marker took the largest, and going back changed nothing
        await self.wait_entry(cm, cid, lastMessageSequence=5, unreadCount=1)
        got = [n["messageSequence"] for n in await cw.collect("NOTIFY_READ", 1.0)]
        self.assertTrue(got and got[-1] == 4 and got == sorted(got), got)
        after = self.metrics()
        if after is not None and self.BATCHED:
            self.assertGreaterEqual(after.get("chatd_jobs_batched_total", 0)
                                    - before.get("chatd_jobs_batched_total", 0), 2)
        # past the last message: the last
        await cm.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 99})
        await self.wait_entry(cm, cid, lastMessageSequence=5, unreadCount=0)
        self.assertEqual([n["messageSequence"] for n in await cw.collect("NOTIFY_READ", 1.0)],
                         [5])


class UnbatchedWriteTests(BatchedWriteTests):
    """The same answers from five statements per message."""
    server_sets = BatchedWriteTests.server_sets + ["plugins.messaging.batch_writes=0"]
    BATCHED = False


if __name__ == "__main__":
    unittest.main(verbosity=2)
