#!/usr/bin/python3
"""The hooks on the message path (plugin ABI 1.1) against the real server, with
the purpose-built plugins of this folder:

* hookfilter.c, a message filter steered by the content it sees: it rejects,
  rewrites, answers late or not at all (see its header);
* eventlog.c, which appends every CHATD_EVENT_MESSAGE_STORED to a file;
* passfilter.c, the filter that passes everything (the benchmarks' one).

Filters: a rejection reaches the writer as that ERROR with its requestId and
stores nothing (the next write takes the next sequence); a rewrite is what is
stored and delivered, for writes and edits; a late verdict keeps the order of
a channel's writes; past hooks.filter_timeout_ms the write fails UNAVAILABLE
and the verdict owed after it changes nothing; two filters run in config
order. The after-commit stream: every stored change once, in version order per
channel, across group commits of pipelined writes from several clients, and
nothing reported across a kill -9 that a restart does not find stored.
"""

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import harness  # noqa: E402
from domain import ADDR_LIMIT_SET, DomainTestCase, async_test, chan, fetch_all_messages  # noqa
from harness import connection_closed_types, ws_connect  # noqa: E402
from test_plugins import MESSAGE_PLUGINS, TEST_PLUGINS, ConfServer, write_conf  # noqa: E402

SETS = [ADDR_LIMIT_SET, "ws.rate_limit=100000", "ws.rate_burst=100000"]
FILTER_TIMEOUT_MS = 400


def plugin(name, so=None, **settings):
    """A plugins entry for the test plugin so (default name) of this folder."""
    extra = "".join(' %s = "%s";' % kv for kv in settings.items())
    return '{ name = "%s"; path = "%s";%s }' % (name, os.path.join(TEST_PLUGINS, (so or name)
                                                                   + ".so"), extra)


class HookCase(DomainTestCase):
    """One server per class: the core plugins, then PLUGINS."""

    PLUGINS = []
    EXTRA_SETS = []

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-hooks-")
        conf = write_conf(cls.tmp, MESSAGE_PLUGINS + cls.PLUGINS)
        cls.server = ConfServer(harness.chatd_bin(), conf, SETS + cls.EXTRA_SETS).start()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    async def room(self, n_members=1):
        """A group channel of a writer and members, every client entered in it."""
        writer = self.user("w")
        members = self.users(n_members, "m")
        cid = await self.channel_with(writer, *members)
        clients = [await self.connect(u) for u in [writer] + members]
        for c in clients:
            await self.enter(c, cid)
        return cid, clients[0], clients[1:]

    async def stored(self, client, cid):
        """[(sequence, content, editedAt)] of every message of the channel."""
        return [(m["messageSequence"], m["content"], m["editedAt"])
                for m in await fetch_all_messages(client, cid)]

    async def stats(self, client):
        resp = await client.request("HOOKFILTER_STATS", {})
        self.assertOk(resp, "HOOKFILTER_STATS_RESPONSE")
        return resp

    async def settled(self, client):
        """Wait (up to 5 s) until the filter owes no verdict; its stats."""
        deadline = time.monotonic() + 5
        while True:
            st = await self.stats(client)
            if st["late"] == st["lateGiven"] or time.monotonic() > deadline:
                self.assertEqual(st["late"], st["lateGiven"], "verdicts still owed")
                return st
            await asyncio.sleep(0.05)

    def write_msg(self, cid, content):
        return {"channelId": chan(cid), "content": content}


class FilterTests(HookCase):
    """One hookfilter."""

    PLUGINS = [plugin("hookfilter", tag="a")]
    EXTRA_SETS = ["hooks.filter_timeout_ms=%d" % FILTER_TIMEOUT_MS]

    @async_test
    async def test_rejection_reaches_the_writer_and_takes_no_sequence(self):
        cid, cw, (cm,) = await self.room()
        self.assertEqual((await self.write(cw, cid, "first"))["messageSequence"], 1)
        await cm.expect("NOTIFY_MESSAGE")
        resp = await cw.request("WRITE_MESSAGE", self.write_msg(cid, "reject:FORBIDDEN:no words"),
                                rid="bad-1")
        self.assertErr(resp, "FORBIDDEN", "WRITE_MESSAGE", "bad-1")
        self.assertEqual(resp["message"], "no words")
        # the code is the filter's, whichever it is
        resp = await cw.request("WRITE_MESSAGE", self.write_msg(cid, "reject:RATE_LIMITED:later"),
                                rid="bad-2")
        self.assertErr(resp, "RATE_LIMITED", "WRITE_MESSAGE", "bad-2")
        await cm.expect_none("NOTIFY_MESSAGE", 0.3)
        # no sequence was used: the next write is the next one, gapless
        self.assertEqual((await self.write(cw, cid, "second"))["messageSequence"], 2)
        self.assertEqual([s[:2] for s in await self.stored(cw, cid)],
                         [(1, "first"), (2, "second")])
        entry = await self.channel_entry(cw, cid)
        self.assertEqual(entry["lastMessageSequence"], 2)
        # an edit rejected leaves the message as it was
        resp = await cw.request("EDIT_MESSAGE", {"channelId": chan(cid), "messageSequence": 1,
                                                 "content": "reject:CONFLICT:not so"},
                                rid="bad-edit")
        self.assertErr(resp, "CONFLICT", "EDIT_MESSAGE", "bad-edit")
        await cm.expect_none("NOTIFY_MESSAGE_EDITED", 0.3)
        self.assertEqual((await self.stored(cw, cid))[0], (1, "first", None))

    @async_test
    async def test_rewrite_is_what_is_stored_and_delivered(self):
        cid, cw, (cm,) = await self.room()
        ack = await self.write(cw, cid, "rewrite:kind words")
        note = await cm.expect("NOTIFY_MESSAGE")
        self.assertEqual((note["messageSequence"], note["content"]),
                         (ack["messageSequence"], "kind words"))
        resp = await cw.request("EDIT_MESSAGE", {"channelId": chan(cid), "messageSequence": 1,
                                                 "content": "rewrite:kinder words"})
        self.assertOk(resp, "EDIT_MESSAGE_ACK")
        edited = await cm.expect("NOTIFY_MESSAGE_EDITED")
        self.assertEqual(edited["content"], "kinder words")
        seq, content, edited_at = (await self.stored(cw, cid))[0]
        self.assertEqual((seq, content), (1, "kinder words"))
        self.assertIsNotNone(edited_at)

    @async_test
    async def test_filter_sees_the_message_as_the_core_does(self):
        cid, cw, _ = await self.room()
        await self.write(cw, cid, "who")
        await cw.request("EDIT_MESSAGE", {"channelId": chan(cid), "messageSequence": 1,
                                          "content": "who"})
        await self.write(cw, cid, "who")
        self.assertEqual([s[1] for s in await self.stored(cw, cid)], [
            "EDIT_MESSAGE 1 %s %d" % (cw.user.username, cid),
            "WRITE_MESSAGE 0 %s %d" % (cw.user.username, cid)])

    @async_test
    async def test_rewrite_obeys_the_rules_of_content(self):
        cid, cw, _ = await self.room()
        await self.write(cw, cid, "one")
        self.assertErr(await cw.request("WRITE_MESSAGE", self.write_msg(cid, "rewrite:")),
                       "BAD_REQUEST", "WRITE_MESSAGE")
        # max_content_bytes is 4096
        self.assertErr(await cw.request("WRITE_MESSAGE", self.write_msg(cid, "grow:4097")),
                       "LIMIT_EXCEEDED", "WRITE_MESSAGE")
        self.assertErr(await cw.request("EDIT_MESSAGE", {
            "channelId": chan(cid), "messageSequence": 1, "content": "grow:100000"}),
            "LIMIT_EXCEEDED", "EDIT_MESSAGE")
        # bytes that are not UTF-8 are no content
        self.assertErr(await cw.request("WRITE_MESSAGE", self.write_msg(cid, "badutf8")),
                       "BAD_REQUEST", "WRITE_MESSAGE")
        await self.write(cw, cid, "grow:4096")
        self.assertEqual([(s[0], len(s[1])) for s in await self.stored(cw, cid)],
                         [(1, 3), (2, 4096)])

    @async_test
    async def test_late_verdicts_keep_the_order_of_the_writes(self):
        cid, cw, (cm,) = await self.room()
        contents = ["late:300:rewrite:one", "two", "late:100:reject:FORBIDDEN:not three",
                    "late:50:rewrite:four", "five", "late:20:pass"]
        for i, content in enumerate(contents):
            await cw.send({"type": "WRITE_MESSAGE", "requestId": "p%d" % i,
                           **self.write_msg(cid, content)})
        answers = [await cw.reply("p%d" % i) for i in range(len(contents))]
        self.assertEqual([a["type"] for a in answers], [
            "WRITE_MESSAGE_ACK", "WRITE_MESSAGE_ACK", "ERROR", "WRITE_MESSAGE_ACK",
            "WRITE_MESSAGE_ACK", "WRITE_MESSAGE_ACK"])
        self.assertEqual(answers[2]["message"], "not three")
        self.assertEqual([a.get("messageSequence") for a in answers], [1, 2, None, 3, 4, 5])
        notes = [n["content"] for n in await cm.collect("NOTIFY_MESSAGE", 0.5)]
        self.assertEqual(notes, ["one", "two", "four", "five", "late:20:pass"])
        self.assertEqual([s[:2] for s in await self.stored(cw, cid)],
                         [(1, "one"), (2, "two"), (3, "four"), (4, "five"), (5, "late:20:pass")])
        await self.settled(cw)

    @async_test
    async def test_past_the_deadline_the_write_fails_and_the_late_verdict_is_harmless(self):
        cid, cw, (cm,) = await self.room()
        await self.write(cw, cid, "before")
        before = await self.stats(cw)
        t0 = time.monotonic()
        # a verdict three deadlines late, then a write behind it in the channel's line
        await cw.send({"type": "WRITE_MESSAGE", "requestId": "slow",
                       **self.write_msg(cid, "late:%d:rewrite:too late" % (3 * FILTER_TIMEOUT_MS))})
        await cw.send({"type": "WRITE_MESSAGE", "requestId": "next",
                       **self.write_msg(cid, "next")})
        resp = await cw.reply("slow")
        waited = time.monotonic() - t0
        self.assertErr(resp, "UNAVAILABLE", "WRITE_MESSAGE", "slow")
        self.assertGreaterEqual(waited, FILTER_TIMEOUT_MS / 1000.0 * 0.9)
        self.assertLess(waited, 3 * FILTER_TIMEOUT_MS / 1000.0)
        self.assertEqual((await cw.reply("next"))["messageSequence"], 2)
        # the verdict owed comes after the deadline, and changes nothing
        after = await self.settled(cw)
        self.assertEqual(after["lateGiven"], before["lateGiven"] + 1)
        self.assertEqual([s[:2] for s in await self.stored(cw, cid)],
                         [(1, "before"), (2, "next")])
        notes = [n["content"] for n in await cm.collect("NOTIFY_MESSAGE", 0.3)]
        self.assertEqual(notes, ["before", "next"])
        self.assertEqual((await self.write(cw, cid, "after"))["messageSequence"], 3)
        self.assertServerUp()

    @async_test
    async def test_a_filter_without_a_verdict_fails_the_write_only(self):
        cid, cw, _ = await self.room()
        resp = await cw.request("WRITE_MESSAGE", self.write_msg(cid, "noverdict"), rid="nv")
        self.assertErr(resp, "INTERNAL", "WRITE_MESSAGE", "nv")
        self.assertEqual((await self.write(cw, cid, "fine"))["messageSequence"], 1)
        self.assertEqual([s[:2] for s in await self.stored(cw, cid)], [(1, "fine")])
        self.assertIn("a message filter returned 0 without a verdict", self.server.log_text())


class ChainTests(HookCase):
    """Two filters and the trivial one, in config order: a, b, pass."""

    PLUGINS = [plugin("hookfilter", tag="a"), plugin("hookfilter2", tag="b"),
               plugin("passfilter")]

    @async_test
    async def test_filters_run_in_config_order_each_seeing_the_last_rewrite(self):
        cid, cw, (cm,) = await self.room()
        await self.write(cw, cid, "chain:x")
        self.assertEqual((await cm.expect("NOTIFY_MESSAGE"))["content"], "chain:x+a+b")
        await cw.request("EDIT_MESSAGE", {"channelId": chan(cid), "messageSequence": 1,
                                          "content": "chain:y"})
        self.assertEqual((await cm.expect("NOTIFY_MESSAGE_EDITED"))["content"], "chain:y+a+b")
        # the first one's rejection ends the chain
        self.assertErr(await cw.request("WRITE_MESSAGE", self.write_msg(cid, "reject:NOT_FOUND")),
                       "NOT_FOUND", "WRITE_MESSAGE")
        await self.write(cw, cid, "plain")
        self.assertEqual([s[:2] for s in await self.stored(cw, cid)],
                         [(1, "chain:y+a+b"), (2, "plain")])
        log = self.server.log_text()
        for name in ("hookfilter", "hookfilter2", "passfilter"):
            self.assertIn("loaded plugin %s 1.0" % name, log)


class ShutdownTests(unittest.TestCase):
    """SIGTERM while writes wait for their filters: the shutdown waits for them as
    for queued writes (one stored, one failed at its deadline), frees the chain
    whose verdict can no longer come, and exits 0 (under a sanitizer: no leak)."""

    def test_a_shutdown_waits_for_the_writes_in_the_filters(self):
        tmp = tempfile.mkdtemp(prefix="chatd-hooks-")
        self.addCleanup(shutil.rmtree, tmp, True)
        conf = write_conf(tmp, MESSAGE_PLUGINS + [plugin("hookfilter", tag="a")])
        sets = SETS + ["hooks.filter_timeout_ms=%d" % FILTER_TIMEOUT_MS]
        data = os.path.join(tmp, "data")
        srv = ConfServer(harness.chatd_bin(), conf, sets, data_dir=data).start()
        self.addCleanup(srv._kill)
        owner, member = srv.new_user("own"), srv.new_user("mem")

        async def write_then_stop():
            import domain
            co = domain.Client(await ws_connect(srv, owner.token), owner, "owner")
            cm = domain.Client(await ws_connect(srv, member.token), member, "member")
            await co.request("INVITE_REQUEST", {"userInviteCode": member.invite_code})
            await cm.request("ACCEPT_REQUEST", {"username": owner.username})
            resp = await co.request("CREATE_REQUEST", {"title": "t", "participantUsernames":
                                                       [member.username]})
            cid = resp["channelId"]["id"]
            await co.send({"type": "WRITE_MESSAGE", "channelId": cid,
                           "content": "late:%d:rewrite:kept" % (FILTER_TIMEOUT_MS // 2)})
            await co.send({"type": "WRITE_MESSAGE", "channelId": cid,
                           "content": "late:%d:rewrite:lost" % (FILTER_TIMEOUT_MS * 10)})
            await asyncio.sleep(0.1)
            t0 = time.monotonic()
            # SIGTERM, and exit code 0; the loop goes on meanwhile, so that the
            # clients answer the server's close
            await asyncio.get_running_loop().run_in_executor(None, srv.stop)
            await co.close()
            await cm.close()
            return cid, time.monotonic() - t0
        cid, took = harness.run(write_then_stop())
        self.assertLess(took, FILTER_TIMEOUT_MS * 5 / 1000.0, "the shutdown waited for the verdict")
        srv = ConfServer(harness.chatd_bin(), conf, sets, data_dir=data).start()
        self.addCleanup(srv._kill)

        async def fetch():
            import domain
            c = domain.Client(await ws_connect(srv, owner.token), owner, "owner")
            msgs = await fetch_all_messages(c, cid)
            await c.close()
            return [(m["messageSequence"], m["content"]) for m in msgs]
        self.assertEqual(harness.run(fetch()), [(1, "kept")])
        srv.stop()


class StreamCase(unittest.TestCase):
    """A server per test on a data directory of the test's, with the eventlog
    plugin (and a filter, so that the stream tells what the filters made)."""

    PLUGINS = MESSAGE_PLUGINS + [plugin("hookfilter", tag="a"), plugin("eventlog",
                                                                    file="events.log")]

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="chatd-stream-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.conf = write_conf(self.tmp, self.PLUGINS)
        self.server = None
        self.users = {}

    def tearDown(self):
        if self.server is not None and self.server.alive():
            self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self):
        self.server = ConfServer(harness.chatd_bin(), self.conf,
                                 SETS + ['storage.sqlite.synchronous="full"'],
                                 data_dir=self.data_dir).start()
        return self.server

    def events(self):
        """Every whole line of the event log, parsed."""
        try:
            with open(os.path.join(self.data_dir, "events.log"), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in data.split(b"\n")[:-1]]

    async def wait_events(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.events()) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # and none more
        return self.events()

    def assert_in_version_order(self, events):
        by_channel = {}
        for e in events:
            by_channel.setdefault(e["channelId"], []).append(e["event"]["version"])
        for cid, versions in by_channel.items():
            self.assertEqual(versions, sorted(set(versions)),
                             "channel %d: versions not strictly ascending" % cid)

    async def group(self, names):
        """A group channel of the users named (the first its creator), made through
        the wire; returns its id."""
        import domain
        srv = self.server
        for name in names:
            if name not in self.users:
                self.users[name] = srv.new_user(name)
        owner = self.users[names[0]]
        co = domain.Client(await ws_connect(srv, owner.token), owner, owner.username)
        for name in names[1:]:
            u = self.users[name]
            cu = domain.Client(await ws_connect(srv, u.token), u, u.username)
            await co.request("INVITE_REQUEST", {"userInviteCode": u.invite_code})
            await cu.request("ACCEPT_REQUEST", {"username": owner.username})
            await cu.close()
        resp = await co.request("CREATE_REQUEST", {
            "title": "stream", "participantUsernames": [self.users[n].username
                                                        for n in names[1:]]})
        await co.close()
        return resp["channelId"]["id"]

    async def clients(self, names):
        import domain
        return [domain.Client(await ws_connect(self.server, self.users[n].token),
                              self.users[n], n) for n in names]


class StreamTests(StreamCase):

    def test_every_change_is_told_once_in_order_across_group_commits(self):
        self.start()
        names = ["alpha", "bravo", "charlie"]
        n_writes = 40

        async def go():
            cid_a = await self.group(names)
            cid_b = await self.group(["bravo", "alpha"])
            cs = await self.clients(names)
            expect = {}  # (channel, kind, sequence, version) -> content or emoji

            async def pipeline(c, reqs):
                """Send every request at once, then collect each answer."""
                for rid, req in reqs:
                    await c.send(dict(req, requestId=rid))
                return [(req, await c.reply(rid, timeout=20)) for rid, req in reqs]

            # 1. pipelined writes from three clients at once, into two channels
            def writes(k, c):
                out = []
                for i in range(n_writes):
                    cid = cid_b if (i % 4 == 3 and c.label != "charlie") else cid_a
                    content = ("rewrite:%s said %d" if i % 5 == 0 else "%s wrote %d") % (
                        c.label, i)
                    out.append(("w%d-%d" % (k, i), {"type": "WRITE_MESSAGE",
                                                   "channelId": chan(cid), "content": content,
                                                   "clientMessageId": "%s-%d" % (c.label, i)}))
                return out
            results = await asyncio.gather(*(pipeline(c, writes(k, c)) for k, c in enumerate(cs)))
            own = {}
            for c, answers in zip(cs, results):
                for req, ack in answers:
                    self.assertEqual(ack["type"], "WRITE_MESSAGE_ACK", ack)
                    cid = req["channelId"]["id"]
                    content = req["content"]
                    if content.startswith("rewrite:"):
                        content = content[len("rewrite:"):]
                    seq, version = ack["messageSequence"], ack["version"]
                    expect[(cid, "message", seq, version)] = (content, c.user.username)
                    own.setdefault(c.label, []).append((cid, seq))
            # 2. edits, deletions and reactions, pipelined, with retries that change
            # nothing and so are told nothing
            def changes(k, c):
                mine = own[c.label]
                other = own[names[(k + 1) % 3]]
                out = []
                for i, (cid, seq) in enumerate(mine[:10]):
                    out.append(("e%d-%d" % (k, i), {"type": "EDIT_MESSAGE", "channelId": chan(cid),
                                                   "messageSequence": seq,
                                                   "content": "edit %d by %s" % (i, c.label)}))
                for i, (cid, seq) in enumerate(mine[10:15]):
                    for again in ("", "-again"):
                        out.append(("d%d-%d%s" % (k, i, again), {
                            "type": "DELETE_MESSAGE", "channelId": chan(cid),
                            "messageSequence": seq}))
                for i, (cid, seq) in enumerate(other[20:30]):
                    if cid != cid_a:
                        continue  # charlie is no member of channel b
                    for again in ("", "-again"):
                        out.append(("r%d-%d%s" % (k, i, again), {
                            "type": "REACT_REQUEST", "channelId": chan(cid),
                            "messageSequence": seq, "emoji": "+1", "on": True}))
                # a retry of the first write: the first ack again, nothing told
                first = writes(k, c)[0][1]
                out.append(("w%d-again" % k, first))
                return out
            results = await asyncio.gather(*(pipeline(c, changes(k, c))
                                             for k, c in enumerate(cs)))
            kinds = {"EDIT_MESSAGE": "edit", "DELETE_MESSAGE": "delete",
                     "REACT_REQUEST": "reaction"}
            for c, answers in zip(cs, results):
                for req, resp in answers:
                    self.assertNotEqual(resp["type"], "ERROR", (req, resp))
                    cid, seq = req["channelId"]["id"], resp["messageSequence"]
                    if req["type"] in kinds and not resp["requestId"].endswith("-again"):
                        expect[(cid, kinds[req["type"]], seq, resp["version"])] = (
                            req.get("content"), c.user.username)
            for c in cs:
                await c.close()
            return expect

        expect = harness.run(go())
        events = harness.run(self.wait_events(len(expect)))
        got = [(e["channelId"], e["event"]["kind"], e["event"]["messageSequence"],
                e["event"]["version"]) for e in events]
        self.assertEqual(len(got), len(set(got)), "an event told twice")
        self.assertEqual(sorted(got), sorted(expect), "the events are not the changes made")
        self.assert_in_version_order(events)
        for e in events:
            body = e["event"]
            key = (e["channelId"], body["kind"], body["messageSequence"], body["version"])
            self.assertEqual(body["channelId"], {"id": e["channelId"]})
            content, who = expect[key]
            self.assertEqual((e["username"], body["username"]), (who, who), e)
            if body["kind"] in ("message", "edit"):
                self.assertEqual(body["content"], content, e)
            if body["kind"] == "reaction":
                self.assertEqual((body["emoji"], body["on"]), ("+1", True), e)
        # the writes were group-committed: a transaction held several
        _, _, metrics = self.server.request("GET", "/metrics")
        batch_max = [line for line in metrics.decode().splitlines()
                     if line.startswith("chatd_commit_batch_max ")]
        self.assertGreater(int(batch_max[0].split()[1]), 1, "no group commit happened")

    def test_nothing_is_told_that_a_kill_9_loses(self):
        self.start()

        async def setup():
            cid = await self.group(["delta", "echo", "foxtrot"])
            return cid
        cid = harness.run(setup())
        acked = {}
        closed = connection_closed_types() + (ConnectionError, OSError, AssertionError)

        async def until_killed():
            cs = await self.clients(["delta", "echo", "foxtrot"])

            async def writer(c):
                try:
                    for i in range(100000):
                        rids = []
                        for j in range(16):  # pipelined
                            rid = "%s-%d-%d" % (c.label, i, j)
                            rids.append(rid)
                            await c.send({"type": "WRITE_MESSAGE", "requestId": rid,
                                          "channelId": chan(cid), "content": "m " + rid})
                        for rid in rids:
                            ack = await c.reply(rid, timeout=10)
                            acked[ack["messageSequence"]] = "m " + rid
                except closed:
                    pass

            async def killer():
                deadline = time.monotonic() + 30
                while len(acked) < 200 and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                self.server.kill9()
            await asyncio.wait_for(asyncio.gather(killer(), *(writer(c) for c in cs)), 60)
            for c in cs:
                await c.close()
        harness.run(until_killed())
        told = self.events()
        self.assertGreaterEqual(len(acked), 200)
        self.assertTrue(told, "no event before the crash")
        self.start()  # the same data directory: the log goes on

        async def after():
            import domain
            u = self.users["delta"]
            c = domain.Client(await ws_connect(self.server, u.token), u, "delta")
            msgs = await fetch_all_messages(c, cid)
            ack = await c.request("WRITE_MESSAGE", {"channelId": chan(cid),
                                                    "content": "after the crash"})
            await c.close()
            return {m["messageSequence"]: m["content"] for m in msgs}, ack
        stored, ack = harness.run(after())
        seqs = [e["event"]["messageSequence"] for e in told]
        self.assertEqual(len(seqs), len(set(seqs)), "a message told twice")
        self.assert_in_version_order(told)
        self.assertEqual({s: c for s, c in acked.items() if stored.get(s) != c}, {},
                         "acknowledged, but not stored after the restart")
        lost = [e for e in told if stored.get(e["event"]["messageSequence"])
                != e["event"]["content"]]
        self.assertEqual(lost, [], "told, but not stored after the restart")
        self.assertEqual(ack["messageSequence"], len(stored) + 1)
        events = harness.run(self.wait_events(len(told) + 1))
        self.assertEqual(events[:len(told)], told)
        self.assertEqual([(e["event"]["messageSequence"], e["event"]["content"])
                          for e in events[len(told):]],
                         [(len(stored) + 1, "after the crash")])


if __name__ == "__main__":
    unittest.main(verbosity=2)
