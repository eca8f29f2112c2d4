#!/usr/bin/python3
"""End-to-end tests of conversations (docs/PROTOCOL.md section 5, protocol 1.1):
versions and catch-up, edit, delete, replies, reactions, read receipts across
members and devices, typing, friends' presence, and the original platform's
WRITE_MESSAGE without channelId. Every rule and every error it can give, with
several users and several WebSockets per user."""

import asyncio
import itertools
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import cluster_size  # noqa: E402
from domain import (  # noqa: E402
    ADDR_LIMIT_SET,
    CREATED_AT_RE,
    UNKNOWN_CHANNEL,
    DomainTestCase,
    async_test,
    chan,
    not_presence,
    read_push_log,
)

WRITE = "WRITE_MESSAGE"
FETCH = "FETCH_MESSAGES_REQUEST"
SYNC = "SYNC_REQUEST"
EDIT = "EDIT_MESSAGE"
DELETE = "DELETE_MESSAGE"
REACT = "REACT_REQUEST"
MARKERS = "FETCH_READ_MARKERS_REQUEST"
MESSAGE_KEYS = {"messageSequence", "username", "content", "createdAt", "version", "editedAt",
                "deleted", "replyTo", "reactions"}

READ_INTERVAL_MS = 300
TYPING_INTERVAL_MS = 1000
GRACE_S = 1

SETS = [ADDR_LIMIT_SET,
        "plugins.messaging.read_notify_interval_ms=%d" % READ_INTERVAL_MS,
        "plugins.messaging.typing_interval_ms=%d" % TYPING_INTERVAL_MS,
        "plugins.messaging.max_writes_per_second=100000",
        "plugins.messaging.write_burst=100000",
        "ws.rate_limit=100000", "ws.rate_burst=100000",
        "plugins.connection.presence_grace=%d" % GRACE_S]

_rids = itertools.count(1)


class ConversationCase(DomainTestCase):
    server_sets = SETS

    async def room(self, n_members=1, prefix="w"):
        """A group channel of a writer (its creator) and n_members others, the
        writer's client, the members and their clients, all entered."""
        writer = self.user(prefix)
        members = self.users(n_members, "m")
        cid = await self.channel_with(writer, *members)
        cw = await self.connect(writer)
        clients = [await self.connect(m) for m in members]
        for c in [cw] + clients:
            await self.enter(c, cid)
        return cid, writer, cw, members, clients

    async def req(self, client, type_, fields):
        return await client.request(type_, fields)

    async def write_many(self, client, cid, contents, batch=100):
        """Pipelined writes, in batches; returns the acks in order."""
        acks = []
        for i in range(0, len(contents), batch):
            rids = []
            for content in contents[i:i + batch]:
                rid = "wm%d" % next(_rids)
                rids.append(rid)
                await client.send({"type": WRITE, "channelId": chan(cid), "content": content,
                                   "requestId": rid})
            for rid in rids:
                ack = await client.reply(rid, WRITE, timeout=20)
                self.assertOk(ack, "WRITE_MESSAGE_ACK")
                acks.append(ack)
        return acks

    async def sync_all(self, client, cid, since, limit=None):
        """SYNC from since until hasMore is false: (messages in order, last version)."""
        out = []
        while True:
            fields = {"channelId": chan(cid), "sinceVersion": since}
            if limit:
                fields["limit"] = limit
            resp = await client.request(SYNC, fields, timeout=20)
            self.assertOk(resp, "SYNC_RESPONSE")
            self.assertEqual(set(resp), {"type", "channelId", "version", "messages", "hasMore",
                                         "requestId"}, resp)
            versions = [m["version"] for m in resp["messages"]]
            self.assertEqual(versions, sorted(versions), "a sync page not ascending by version")
            self.assertTrue(all(v > since for v in versions), (since, versions))
            out += resp["messages"]
            self.assertGreaterEqual(resp["version"], since)
            since = resp["version"]
            if not resp["hasMore"]:
                return out, since

    async def fetch_after_all(self, client, cid, page=200):
        """Every message, oldest first, paging forward with afterSequence."""
        out, after = [], 0
        while True:
            resp = await client.request(FETCH, {"channelId": chan(cid), "afterSequence": after,
                                                "limit": page}, timeout=20)
            self.assertOk(resp, "FETCH_MESSAGES_RESPONSE")
            out += resp["messages"]
            if not resp["hasMore"]:
                return out
            after = resp["messages"][-1]["messageSequence"]

    async def message(self, client, cid, seq):
        resp = await client.request(FETCH, {"channelId": chan(cid), "afterSequence": seq - 1,
                                            "limit": 1})
        self.assertOk(resp, "FETCH_MESSAGES_RESPONSE")
        self.assertEqual(resp["messages"][0]["messageSequence"], seq)
        return resp["messages"][0]

    async def version_of(self, client, cid):
        return (await self.channel_entry(client, cid))["version"]


# ---- 5.1 versions and catch-up -------------------------------------------------------------

class CatchUpTests(ConversationCase):

    @async_test
    async def test_fetch_after_sequence_pages_forward_with_has_more(self):
        cid, w, cw, _, (cm,) = await self.room()
        acks = await self.write_many(cw, cid, ["m%d" % i for i in range(1, 8)])
        resp = await cm.request(FETCH, {"channelId": chan(cid), "afterSequence": 2, "limit": 3},
                                rid="fa")
        self.assertEqual(resp["hasMore"], True)
        self.assertEqual([m["messageSequence"] for m in resp["messages"]], [3, 4, 5])
        for m in resp["messages"]:
            self.assertEqual(set(m), MESSAGE_KEYS, m)
            self.assertRegex(m["createdAt"], CREATED_AT_RE)
            self.assertEqual((m["editedAt"], m["deleted"], m["replyTo"], m["reactions"]),
                             (None, False, None, []))
        self.assertEqual(resp["messages"][0]["version"], acks[2]["version"])
        resp = await cm.request(FETCH, {"channelId": chan(cid), "afterSequence": 5, "limit": 3})
        self.assertEqual(([m["messageSequence"] for m in resp["messages"]], resp["hasMore"]),
                         ([6, 7], False))
        resp = await cm.request(FETCH, {"channelId": chan(cid), "afterSequence": 0})
        self.assertEqual(([m["messageSequence"] for m in resp["messages"]], resp["hasMore"]),
                         (list(range(1, 8)), False))
        resp = await cm.request(FETCH, {"channelId": chan(cid), "afterSequence": 7})
        self.assertEqual((resp["messages"], resp["hasMore"]), ([], False))
        # before a point: hasMore says whether older ones are left
        resp = await cm.request(FETCH, {"channelId": chan(cid), "beforeSequence": 4, "limit": 2})
        self.assertEqual(([m["messageSequence"] for m in resp["messages"]], resp["hasMore"]),
                         ([2, 3], True))
        resp = await cm.request(FETCH, {"channelId": chan(cid), "beforeSequence": 3, "limit": 2})
        self.assertEqual(resp["hasMore"], False)

    @async_test
    async def test_before_and_after_together_and_bad_values(self):
        cid, w, cw, _, _ = await self.room()
        await self.assertRequestFails(cw, FETCH, {"channelId": chan(cid), "beforeSequence": 5,
                                                  "afterSequence": 1}, "BAD_REQUEST")
        for bad in (-1, "1", 1.5, True):
            with self.subTest(afterSequence=bad):
                await self.assertRequestFails(cw, FETCH, {"channelId": chan(cid),
                                                          "afterSequence": bad}, "BAD_REQUEST")

    @async_test
    async def test_channel_version_grows_with_every_change(self):
        cid, w, cw, _, (cm,) = await self.room()
        self.assertEqual(await self.version_of(cw, cid), 0)
        ack = await self.write(cw, cid, "one")
        self.assertEqual(ack["version"], 1)
        v = await self.version_of(cw, cid)
        steps = [(EDIT, {"content": "one, edited"}),
                 (REACT, {"emoji": "👍", "on": True}),
                 (REACT, {"emoji": "👍", "on": False}),
                 (DELETE, {})]
        for type_, fields in steps:
            fields.update({"channelId": chan(cid), "messageSequence": 1})
            resp = await cw.request(type_, fields)
            self.assertNotEqual(resp["type"], "ERROR", resp)
            self.assertGreater(resp["version"], v, (type_, resp))
            v = resp["version"]
            self.assertEqual(await self.version_of(cm, cid), v)

    @async_test
    async def test_sync_gives_every_change_once_in_its_current_state(self):
        cid, w, cw, _, (cm,) = await self.room()
        await self.write_many(cw, cid, ["m%d" % i for i in range(1, 6)])
        since = await self.version_of(cm, cid)
        self.assertEqual(since, 5)
        self.assertOk(await cw.request(EDIT, {"channelId": chan(cid), "messageSequence": 2,
                                              "content": "two, edited"}), "EDIT_MESSAGE_ACK")
        self.assertOk(await cw.request(EDIT, {"channelId": chan(cid), "messageSequence": 2,
                                              "content": "two, edited again"}),
                      "EDIT_MESSAGE_ACK")
        self.assertOk(await cm.request(REACT, {"channelId": chan(cid), "messageSequence": 3,
                                               "emoji": "🎉", "on": True}), "REACT_RESPONSE")
        self.assertOk(await cw.request(DELETE, {"channelId": chan(cid), "messageSequence": 4}),
                      "DELETE_MESSAGE_ACK")
        await self.write(cw, cid, "six", )
        msgs, version = await self.sync_all(cm, cid, since)
        self.assertEqual([m["messageSequence"] for m in msgs], [2, 3, 4, 6])
        self.assertEqual(version, await self.version_of(cm, cid))
        by_seq = {m["messageSequence"]: m for m in msgs}
        self.assertEqual(by_seq[2]["content"], "two, edited again")
        self.assertIsNotNone(by_seq[2]["editedAt"])
        self.assertEqual(by_seq[3]["reactions"], [{"emoji": "🎉", "count": 1, "me": True}])
        self.assertEqual((by_seq[4]["deleted"], by_seq[4]["content"], by_seq[4]["reactions"]),
                         (True, "", []))
        # the writer does not see the member's reaction as its own
        msgs_w, _ = await self.sync_all(cw, cid, since)
        self.assertEqual({m["messageSequence"]: m for m in msgs_w}[3]["reactions"],
                         [{"emoji": "🎉", "count": 1, "me": False}])
        # nothing new: nothing, and the same version
        resp = await cm.request(SYNC, {"channelId": chan(cid), "sinceVersion": version})
        self.assertEqual((resp["messages"], resp["hasMore"], resp["version"]),
                         ([], False, version))
        # from the start, in pages: the whole channel, each message once
        msgs, _ = await self.sync_all(cm, cid, 0, limit=2)
        self.assertEqual(sorted(m["messageSequence"] for m in msgs), [1, 2, 3, 4, 5, 6])

    @async_test
    async def test_sync_errors(self):
        cid, w, cw, _, _ = await self.room()
        outsider = await self.connect(self.user("out"))
        await self.assertRequestFails(outsider, SYNC, {"channelId": chan(cid), "sinceVersion": 0},
                                      "FORBIDDEN")
        await self.assertRequestFails(cw, SYNC, {"channelId": chan(UNKNOWN_CHANNEL),
                                                 "sinceVersion": 0}, "NOT_FOUND")
        for fields in ({}, {"sinceVersion": -1}, {"sinceVersion": "3"}, {"sinceVersion": 0,
                                                                         "limit": 0},
                       {"sinceVersion": 0, "limit": 201}):
            with self.subTest(fields=fields):
                fields = dict(fields, channelId=chan(cid))
                await self.assertRequestFails(cw, SYNC, fields, "BAD_REQUEST")
        await self.assertRequestFails(cw, SYNC, {"sinceVersion": 0}, "BAD_REQUEST")

    @async_test
    async def test_catch_up_after_1000_messages_and_100_changes(self):
        """A client offline while 1,000 messages are written and 100 changed ends,
        by SYNC alone, with exactly what a fresh FETCH shows, every message once."""
        writer, reader = self.user("cw"), self.user("cr")
        cid = await self.channel_with(writer, reader)
        cw = await self.connect(writer)
        cr = await self.connect(reader)
        await self.write_many(cw, cid, ["before %d" % i for i in range(1, 11)])
        _, since = await self.sync_all(cr, cid, 0)
        await self.disconnect(cr)
        self._clients.remove(cr)
        acks = await self.write_many(cw, cid, ["message %d" % i for i in range(1, 1001)])
        seqs = [a["messageSequence"] for a in acks]
        changes = []
        for k in range(100):
            seq = seqs[(k * 37) % len(seqs)]
            if k % 3 == 0:
                changes.append((EDIT, {"messageSequence": seq, "content": "edited %d" % k}))
            elif k % 3 == 1:
                changes.append((REACT, {"messageSequence": seq, "emoji": "e%d" % (k % 5),
                                        "on": True}))
            else:
                changes.append((DELETE, {"messageSequence": seq}))
        for type_, fields in changes:
            fields["channelId"] = chan(cid)
            resp = await cw.request(type_, fields)
            if resp["type"] == "ERROR":  # an edit or reaction of a message deleted before
                self.assertEqual(resp["code"], "CONFLICT", resp)
        cr = await self.connect(reader)
        synced, _ = await self.sync_all(cr, cid, since)
        got = [m["messageSequence"] for m in synced]
        self.assertEqual(len(got), len(set(got)), "a message came twice")
        fresh = await self.fetch_after_all(cr, cid)
        state = {m["messageSequence"]: m for m in fresh if m["messageSequence"] > 10}
        self.assertEqual({m["messageSequence"]: m for m in synced}, state)


# ---- 5.2 edit, delete, reply, react --------------------------------------------------------

class EditTests(ConversationCase):

    @async_test
    async def test_author_edits_and_the_others_are_told(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        cw2 = await self.connect(w)
        await self.enter(cw2, cid)
        ack = await self.write(cw, cid, "first words")
        resp = await cw.request(EDIT, {"channelId": chan(cid), "messageSequence": 1,
                                       "content": "better words"}, rid="ed")
        self.assertEqual(set(resp), {"type", "channelId", "messageSequence", "editedAt",
                                     "version", "requestId"}, resp)
        self.assertEqual((resp["type"], resp["channelId"], resp["messageSequence"]),
                         ("EDIT_MESSAGE_ACK", chan(cid), 1))
        self.assertRegex(resp["editedAt"], CREATED_AT_RE)
        self.assertGreater(resp["version"], ack["version"])
        want = {"type": "NOTIFY_MESSAGE_EDITED", "channelId": chan(cid), "messageSequence": 1,
                "username": w.username, "content": "better words", "editedAt": resp["editedAt"],
                "version": resp["version"]}
        for c in (cm, cw2):
            self.assertEqual(await c.expect("NOTIFY_MESSAGE_EDITED"), want)
        await cw.expect_none("NOTIFY_MESSAGE_EDITED", 0.3)
        msg = await self.message(cm, cid, 1)
        self.assertEqual((msg["content"], msg["editedAt"], msg["version"], msg["createdAt"]),
                         ("better words", resp["editedAt"], resp["version"], ack["createdAt"]))

    @async_test
    async def test_edit_errors(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        await self.write(cw, cid, "mine")
        await self.assertRequestFails(cm, EDIT, {"channelId": chan(cid), "messageSequence": 1,
                                                 "content": "not yours"}, "FORBIDDEN")
        await self.assertRequestFails(cw, EDIT, {"channelId": chan(cid), "messageSequence": 9,
                                                 "content": "x"}, "NOT_FOUND")
        await self.assertRequestFails(cw, EDIT, {"channelId": chan(cid), "messageSequence": 1,
                                                 "content": ""}, "BAD_REQUEST")
        await self.assertRequestFails(cw, EDIT, {"channelId": chan(cid), "messageSequence": 1,
                                                 "content": "x" * 5000}, "LIMIT_EXCEEDED")
        for bad in ({"messageSequence": 1}, {"content": "x"},
                    {"messageSequence": 0, "content": "x"},
                    {"messageSequence": "1", "content": "x"}):
            with self.subTest(fields=bad):
                await self.assertRequestFails(cw, EDIT, dict(bad, channelId=chan(cid)),
                                              "BAD_REQUEST")
        outsider = await self.connect(self.user("out"))
        await self.assertRequestFails(outsider, EDIT, {"channelId": chan(cid),
                                                       "messageSequence": 1, "content": "x"},
                                      "FORBIDDEN")
        await self.assertRequestFails(cw, EDIT, {"channelId": chan(UNKNOWN_CHANNEL),
                                                 "messageSequence": 1, "content": "x"},
                                      "NOT_FOUND")
        self.assertEqual((await self.message(cm, cid, 1))["content"], "mine")

    @async_test
    async def test_edits_are_not_pushed_and_unread_is_unchanged(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        self.assertOk(await cm.request("LEAVE_REQUEST", {}), "LEAVE_RESPONSE")
        await self.write(cw, cid, "pushed once")
        await self.wait_push(m, "NOTIFY_MESSAGE", 1)
        self.assertOk(await cw.request(EDIT, {"channelId": chan(cid), "messageSequence": 1,
                                              "content": "edited"}), "EDIT_MESSAGE_ACK")
        self.assertOk(await cw.request(REACT, {"channelId": chan(cid), "messageSequence": 1,
                                               "emoji": "x", "on": True}), "REACT_RESPONSE")
        self.assertOk(await cw.request(DELETE, {"channelId": chan(cid), "messageSequence": 1}),
                      "DELETE_MESSAGE_ACK")
        await asyncio.sleep(0.5)
        self.assertEqual([ln["event"]["type"] for ln in self.push_lines(m)
                          if ln["event"]["type"] != "NOTIFY_JOIN"], ["NOTIFY_MESSAGE"])
        self.assertEqual((await self.channel_entry(cm, cid))["unreadCount"], 1)


class EditWindowTests(ConversationCase):
    server_sets = SETS + ["plugins.messaging.edit_window=1"]

    @async_test
    async def test_edit_past_the_window_is_forbidden(self):
        cid, w, cw, _, _ = await self.room()
        await self.write(cw, cid, "quick")
        self.assertOk(await cw.request(EDIT, {"channelId": chan(cid), "messageSequence": 1,
                                              "content": "quick fix"}), "EDIT_MESSAGE_ACK")
        await asyncio.sleep(1.3)
        resp = await self.assertRequestFails(cw, EDIT, {"channelId": chan(cid),
                                                        "messageSequence": 1,
                                                        "content": "too late"}, "FORBIDDEN")
        self.assertIn("edit window", resp["message"])


class DeleteTests(ConversationCase):

    @async_test
    async def test_author_deletes_leaving_a_tombstone(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        await self.write_many(cw, cid, ["one", "two", "three"])
        self.assertOk(await cm.request(REACT, {"channelId": chan(cid), "messageSequence": 2,
                                               "emoji": "🔥", "on": True}), "REACT_RESPONSE")
        resp = await cw.request(DELETE, {"channelId": chan(cid), "messageSequence": 2}, rid="d")
        self.assertEqual(set(resp), {"type", "channelId", "messageSequence", "version",
                                     "requestId"}, resp)
        self.assertEqual(resp["type"], "DELETE_MESSAGE_ACK")
        note = await cm.expect("NOTIFY_MESSAGE_DELETED")
        self.assertEqual(note, {"type": "NOTIFY_MESSAGE_DELETED", "channelId": chan(cid),
                                "messageSequence": 2, "version": resp["version"]})
        msgs = await self.fetch_after_all(cm, cid)
        self.assertEqual([m_["messageSequence"] for m_ in msgs], [1, 2, 3])
        self.assertEqual((msgs[1]["deleted"], msgs[1]["content"], msgs[1]["reactions"],
                          msgs[1]["version"]), (True, "", [], resp["version"]))
        # again: the same answer, nobody told
        again = await cw.request(DELETE, {"channelId": chan(cid), "messageSequence": 2}, rid="d2")
        self.assertEqual((again["type"], again["version"]), ("DELETE_MESSAGE_ACK", resp["version"]))
        await cm.expect_none("NOTIFY_MESSAGE_DELETED", 0.3)
        # a deleted message takes neither edits nor reactions
        await self.assertRequestFails(cw, EDIT, {"channelId": chan(cid), "messageSequence": 2,
                                                 "content": "back"}, "CONFLICT")
        await self.assertRequestFails(cm, REACT, {"channelId": chan(cid), "messageSequence": 2,
                                                  "emoji": "🔥", "on": True}, "CONFLICT")
        self.assertEqual((await self.message(cm, cid, 2))["content"], "")
        # the next message takes the next sequence: no gap, no reuse
        self.assertEqual((await self.write(cw, cid, "four"))["messageSequence"], 4)

    @async_test
    async def test_deleted_content_is_gone_from_storage(self):
        db = os.path.join(self.server.data_dir, "chatd.db")
        if not os.path.exists(db):
            raise unittest.SkipTest("not on the embedded store")
        import sqlite3
        cid, w, cw, _, _ = await self.room()
        await self.write(cw, cid, "a secret 7f3a9c")
        long_secret = "a longer secret 5d1e " * 190  # ~4 KB: past a page, into overflow pages
        await self.write(cw, cid, long_secret)
        await self.write(cw, cid, "kept")
        for seq in (1, 2):
            self.assertOk(await cw.request(DELETE, {"channelId": chan(cid),
                                                    "messageSequence": seq}),
                          "DELETE_MESSAGE_ACK")
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT content, deleted FROM message WHERE channel_id = ?"
                                " ORDER BY seq", (cid,)).fetchall()
            # nor are its bytes left in the file's free space once the log
            # is checkpointed into it
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.assertEqual(rows, [("", 1), ("", 1), ("kept", 0)])
        with open(db, "rb") as f:
            stored = f.read()
        for secret in (b"a secret 7f3a9c", b"longer secret 5d1e"):
            self.assertFalse(secret in stored, "%r is still in chatd.db" % secret)
        self.assertTrue(b"kept" in stored, "the checkpoint left chatd.db without the last write")

    @async_test
    async def test_who_may_delete(self):
        owner, a, b = self.user("own"), self.user("ua"), self.user("ub")
        cid = await self.channel_with(owner, a, b)
        co, ca, cb = await self.connect(owner), await self.connect(a), await self.connect(b)
        await self.write(ca, cid, "by a")
        await self.write(cb, cid, "by b")
        await self.assertRequestFails(cb, DELETE, {"channelId": chan(cid), "messageSequence": 1},
                                      "FORBIDDEN")
        # the creator of a group channel deletes anybody's
        self.assertOk(await co.request(DELETE, {"channelId": chan(cid), "messageSequence": 1}),
                      "DELETE_MESSAGE_ACK")
        await self.assertRequestFails(co, DELETE, {"channelId": chan(cid), "messageSequence": 9},
                                      "NOT_FOUND")
        # in a direct channel, the creator is only an author
        direct = await self.create_direct(co, a)
        await self.write(ca, direct, "direct from a")
        await self.assertRequestFails(co, DELETE, {"channelId": chan(direct),
                                                   "messageSequence": 1}, "FORBIDDEN")
        self.assertOk(await ca.request(DELETE, {"channelId": chan(direct), "messageSequence": 1}),
                      "DELETE_MESSAGE_ACK")


class ReplyTests(ConversationCase):

    @async_test
    async def test_reply_names_a_message_of_the_channel(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        await self.write(cw, cid, "question?")
        note = await cm.expect("NOTIFY_MESSAGE")
        self.assertIsNone(note["replyTo"])
        resp = await cm.request(WRITE, {"channelId": chan(cid), "content": "answer",
                                        "replyTo": 1})
        self.assertOk(resp, "WRITE_MESSAGE_ACK")
        note = await cw.expect("NOTIFY_MESSAGE")
        self.assertEqual((note["replyTo"], note["content"]), (1, "answer"))
        self.assertEqual((await self.message(cw, cid, 2))["replyTo"], 1)
        await self.assertRequestFails(cm, WRITE, {"channelId": chan(cid), "content": "x",
                                                  "replyTo": 99}, "NOT_FOUND")
        other = await self.create_group(cw, [m])
        await self.assertRequestFails(cw, WRITE, {"channelId": chan(other), "content": "x",
                                                  "replyTo": 1}, "NOT_FOUND")
        for bad in (0, -1, "1", 1.5, True):
            with self.subTest(replyTo=bad):
                await self.assertRequestFails(cm, WRITE, {"channelId": chan(cid), "content": "x",
                                                          "replyTo": bad}, "BAD_REQUEST")
        ok = await cm.request(WRITE, {"channelId": chan(cid), "content": "plain",
                                      "replyTo": None})
        self.assertEqual(ok["messageSequence"], 3)


class ReactionTests(ConversationCase):
    server_sets = SETS + ["plugins.messaging.max_reactions_per_message=3"]

    @async_test
    async def test_reactions_count_and_tell(self):
        cid, w, cw, (a, b), (ca, cb) = await self.room(2)
        await self.write(cw, cid, "react to me")
        for c in (ca, cb):
            await c.expect("NOTIFY_MESSAGE")
        resp = await ca.request(REACT, {"channelId": chan(cid), "messageSequence": 1,
                                        "emoji": "👍", "on": True}, rid="r1")
        self.assertEqual(set(resp), {"type", "channelId", "messageSequence", "emoji", "on",
                                     "version", "requestId"}, resp)
        self.assertEqual((resp["type"], resp["emoji"], resp["on"]), ("REACT_RESPONSE", "👍", True))
        for c in (cw, cb):
            note = await c.expect("NOTIFY_REACTION")
            self.assertEqual(note, {"type": "NOTIFY_REACTION", "channelId": chan(cid),
                                    "messageSequence": 1, "username": a.username, "emoji": "👍",
                                    "on": True, "version": resp["version"]})
        await ca.expect_none("NOTIFY_REACTION", 0.2)
        # on again: the same shape, nobody told, nothing changes
        again = await ca.request(REACT, {"channelId": chan(cid), "messageSequence": 1,
                                         "emoji": "👍", "on": True})
        self.assertEqual((again["on"], again["version"]), (True, resp["version"]))
        self.assertOk(await cb.request(REACT, {"channelId": chan(cid), "messageSequence": 1,
                                               "emoji": "👍", "on": True}), "REACT_RESPONSE")
        self.assertOk(await cb.request(REACT, {"channelId": chan(cid), "messageSequence": 1,
                                               "emoji": "❤️", "on": True}), "REACT_RESPONSE")
        self.assertEqual(len(await cw.collect("NOTIFY_REACTION", 0.3)), 2)
        msg = await self.message(cb, cid, 1)
        self.assertEqual(msg["reactions"], [{"emoji": "👍", "count": 2, "me": True},
                                            {"emoji": "❤️", "count": 1, "me": True}])
        msg = await self.message(cw, cid, 1)
        self.assertEqual(msg["reactions"], [{"emoji": "👍", "count": 2, "me": False},
                                            {"emoji": "❤️", "count": 1, "me": False}])
        # off, and off when absent
        off = await ca.request(REACT, {"channelId": chan(cid), "messageSequence": 1,
                                       "emoji": "👍", "on": False})
        self.assertEqual(off["on"], False)
        self.assertEqual((await cb.expect("NOTIFY_REACTION"))["on"], False)
        absent = await ca.request(REACT, {"channelId": chan(cid), "messageSequence": 1,
                                          "emoji": "👍", "on": False})
        self.assertEqual((absent["on"], absent["version"]), (False, off["version"]))
        await cb.expect_none("NOTIFY_REACTION", 0.3)
        self.assertEqual((await self.message(cw, cid, 1))["reactions"][0]["count"], 1)

    @async_test
    async def test_reaction_limits_and_errors(self):
        cid, w, cw, (a,), (ca,) = await self.room()
        await self.write(cw, cid, "limited")
        for e in ("a", "b", "c"):
            self.assertOk(await ca.request(REACT, {"channelId": chan(cid), "messageSequence": 1,
                                                   "emoji": e, "on": True}), "REACT_RESPONSE")
        await self.assertRequestFails(cw, REACT, {"channelId": chan(cid), "messageSequence": 1,
                                                  "emoji": "d", "on": True}, "LIMIT_EXCEEDED")
        # an emoji already there is not a new one
        self.assertOk(await cw.request(REACT, {"channelId": chan(cid), "messageSequence": 1,
                                               "emoji": "a", "on": True}), "REACT_RESPONSE")
        for bad in ({"emoji": "", "on": True}, {"emoji": "x" * 33, "on": True},
                    {"emoji": 5, "on": True}, {"emoji": "x", "on": "yes"}, {"emoji": "x"},
                    {"on": True}):
            with self.subTest(fields=bad):
                await self.assertRequestFails(cw, REACT, dict(bad, channelId=chan(cid),
                                                              messageSequence=1), "BAD_REQUEST")
        self.assertOk(await cw.request(REACT, {"channelId": chan(cid), "messageSequence": 1,
                                               "emoji": "🧑‍🤝‍🧑", "on": False}), "REACT_RESPONSE")
        await self.assertRequestFails(cw, REACT, {"channelId": chan(cid), "messageSequence": 5,
                                                  "emoji": "a", "on": True}, "NOT_FOUND")
        outsider = await self.connect(self.user("out"))
        await self.assertRequestFails(outsider, REACT, {"channelId": chan(cid),
                                                        "messageSequence": 1, "emoji": "a",
                                                        "on": True}, "FORBIDDEN")


# ---- 5.3 read receipts and devices -----------------------------------------------------------

class ReceiptTests(ConversationCase):

    @async_test
    async def test_read_ack_tells_members_and_own_devices_once(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        cm_entered_2 = await self.connect(m)  # m's second device, entered too
        await self.enter(cm_entered_2, cid)
        cm_idle = await self.connect(m)       # m's third device, not entered
        outsider_device = await self.connect(w)  # w's second device, not entered
        await self.write_many(cw, cid, ["r1", "r2", "r3"])
        await cm.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 2})
        want = {"type": "NOTIFY_READ", "channelId": chan(cid), "username": m.username,
                "messageSequence": 2}
        for c in (cw, cm_entered_2, cm_idle):
            got = await c.collect("NOTIFY_READ", 1.0)
            self.assertEqual(got, [want], c.label)  # once, on both lists
        await cm.expect_none("NOTIFY_READ", 0.0)
        await outsider_device.expect_none("NOTIFY_READ", 0.0)
        # a smaller value changes nothing and tells nobody
        await cm.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 1})
        await cw.expect_none("NOTIFY_READ", READ_INTERVAL_MS / 1000 + 0.3)
        # unread follows the user's devices
        self.assertEqual((await self.channel_entry(cm_idle, cid))["unreadCount"], 1)

    @async_test
    async def test_receipts_are_coalesced_and_never_go_down(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        await self.write_many(cw, cid, ["c%d" % i for i in range(1, 31)])
        t0 = time.monotonic()
        for seq in range(1, 31):
            await cm.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": seq})
            await asyncio.sleep(0.01)
        sent_for = time.monotonic() - t0
        got = await cw.collect("NOTIFY_READ", READ_INTERVAL_MS / 1000 * 2 + 0.5)
        seqs = [n["messageSequence"] for n in got]
        self.assertEqual(seqs, sorted(seqs), "a receipt went down")
        self.assertEqual(len(seqs), len(set(seqs)))
        self.assertEqual(seqs[-1], 30, "the latest value was not told")
        most = int(sent_for * 1000 / READ_INTERVAL_MS) + 2
        self.assertLessEqual(len(seqs), most, "not coalesced: %r" % seqs)

    @async_test
    async def test_fetch_read_markers(self):
        cid, w, cw, (a, b), (ca, cb) = await self.room(2)
        await self.write_many(cw, cid, ["x", "y", "z"])
        await ca.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 3})
        await cb.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 1})
        deadline = time.monotonic() + 3
        while True:
            resp = await cw.request(MARKERS, {"channelId": chan(cid)}, rid="mk")
            markers = {x["username"]: x["messageSequence"] for x in resp["markers"]}
            if markers.get(a.username) == 3 and markers.get(b.username) == 1:
                break
            self.assertLess(time.monotonic(), deadline, resp)
            await asyncio.sleep(0.05)
        self.assertEqual(set(resp), {"type", "channelId", "markers", "requestId"})
        # the writer has read what they wrote
        self.assertEqual(markers, {w.username: 3, a.username: 3, b.username: 1})
        outsider = await self.connect(self.user("out"))
        await self.assertRequestFails(outsider, MARKERS, {"channelId": chan(cid)}, "FORBIDDEN")
        await self.assertRequestFails(cw, MARKERS, {"channelId": chan(UNKNOWN_CHANNEL)},
                                      "NOT_FOUND")
        await self.assertRequestFails(cw, MARKERS, {}, "BAD_REQUEST")


# ---- 5.4 typing --------------------------------------------------------------------------------

class TypingTests(ConversationCase):

    @async_test
    async def test_typing_is_told_at_most_once_per_interval(self):
        cid, w, cw, (a, b), (ca, cb) = await self.room(2)
        cw2 = await self.connect(w)
        await self.enter(cw2, cid)
        idle = await self.connect(a)  # not entered
        for _ in range(5):
            await cw.send({"type": "TYPING", "channelId": chan(cid), "requestId": "t"})
        want = {"type": "NOTIFY_TYPING", "channelId": chan(cid), "username": w.username}
        for c in (ca, cb, cw2):
            self.assertEqual(await c.collect("NOTIFY_TYPING", 0.5), [want], c.label)
        await cw.expect_none(None, 0.0, not_presence)  # no answer, not even to a requestId
        await idle.expect_none("NOTIFY_TYPING", 0.0)
        await asyncio.sleep(TYPING_INTERVAL_MS / 1000)
        await cw.send({"type": "TYPING", "channelId": chan(cid)})
        self.assertEqual(await ca.collect("NOTIFY_TYPING", 0.5), [want])
        await asyncio.sleep(0.3)
        self.assertEqual([ln for ln in self.push_lines(a) if ln["event"]["type"] == "NOTIFY_TYPING"],
                         [])

    @async_test
    async def test_typing_from_a_socket_not_entered_and_errors(self):
        cid, w, cw, (a,), (ca,) = await self.room()
        other = await self.connect(w)  # a member, not entered
        await other.send({"type": "TYPING", "channelId": chan(cid)})
        self.assertEqual(len(await ca.collect("NOTIFY_TYPING", 0.5)), 1)
        outsider = await self.connect(self.user("out"))
        await self.assertRequestFails(outsider, "TYPING", {"channelId": chan(cid)}, "FORBIDDEN")
        await self.assertRequestFails(cw, "TYPING", {"channelId": chan(UNKNOWN_CHANNEL)},
                                      "NOT_FOUND")
        await self.assertRequestFails(cw, "TYPING", {"channelId": "x"}, "BAD_REQUEST")
        await ca.expect_none("NOTIFY_TYPING", 0.3)


class ChannelBudgetTests(ConversationCase):
    """In a big channel every receipt and every typing notice is a frame to
    each member: their rates per channel are bounded too."""
    READ_RATE = 2    # receipts a second per channel: a channel of 4 spreads them 2 s apart
    TYPING_RATE = 1  # typing notices a second per channel
    server_sets = SETS + ["plugins.messaging.read_notify_channel_rate=%d" % READ_RATE,
                          "plugins.messaging.typing_channel_rate=%d" % TYPING_RATE]

    @async_test
    async def test_receipts_of_a_member_spread_out_with_the_channel_size(self):
        cid, w, cw, (a, b, c), (ca, cb, cc) = await self.room(3)
        interval = 4 / self.READ_RATE  # members / rate, longer than read_notify_interval_ms
        await self.write_many(cw, cid, ["s1", "s2", "s3"])
        await ca.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 1})
        first = await cw.expect("NOTIFY_READ", 2)
        t0 = time.monotonic()
        self.assertEqual(first["messageSequence"], 1)
        await ca.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 3})
        # not after read_notify_interval_ms, but after the channel's spread
        await cw.expect_none("NOTIFY_READ", interval - 0.5)
        second = await cw.expect("NOTIFY_READ", 2)
        self.assertEqual(second["messageSequence"], 3)
        self.assertGreaterEqual(time.monotonic() - t0, interval - 0.2)

    @async_test
    async def test_typing_in_one_channel_is_bounded_per_second(self):
        cid, w, cw, (a, b, c), (ca, cb, cc) = await self.room(3)
        for client in (ca, cb, cc):  # three members type at once
            await client.send({"type": "TYPING", "channelId": chan(cid)})
        got = await cw.collect("NOTIFY_TYPING", 0.6)
        # the channel's one notice this second; the budget is each node's, so
        # behind a balancer each node the typers reached may send its one
        self.assertGreaterEqual(len(got), 1, got)
        self.assertLessEqual(len(got), max(1, cluster_size()), got)
        await asyncio.sleep(1.0)
        await cb.send({"type": "TYPING", "channelId": chan(cid)})  # a new second: told
        got = await cw.collect("NOTIFY_TYPING", 0.6)
        self.assertEqual([n["username"] for n in got], [b.username])


# ---- 5.5 presence of friends -------------------------------------------------------------------

class PresenceTests(ConversationCase):

    async def friends(self):
        a, b = self.user("pa"), self.user("pb")
        await self.befriend(a, b)
        await asyncio.sleep(GRACE_S + 0.5)  # the befriending sockets' presence settles
        return a, b

    @async_test
    async def test_online_offline_and_fetch(self):
        a, b = await self.friends()
        cb = await self.connect(b)
        resp = await cb.request("FETCH_PRESENCE_REQUEST", {}, rid="fp")
        self.assertEqual(resp["type"], "FETCH_PRESENCE_RESPONSE")
        (entry,) = resp["friends"]
        self.assertEqual((entry["username"], entry["online"]), (a.username, False))
        self.assertRegex(entry["lastSeen"], CREATED_AT_RE)
        ca = await self.connect(a)
        note = await cb.expect("NOTIFY_PRESENCE", 3)
        self.assertEqual(note, {"type": "NOTIFY_PRESENCE", "username": a.username,
                                "online": True, "lastSeen": None})
        resp = await cb.request("FETCH_PRESENCE_REQUEST", {})
        self.assertEqual(resp["friends"], [{"username": a.username, "online": True,
                                            "lastSeen": None}])
        t0 = time.time()
        await self.disconnect(ca)
        note = await cb.expect("NOTIFY_PRESENCE", GRACE_S + 5)
        self.assertEqual((note["username"], note["online"]), (a.username, False))
        self.assertRegex(note["lastSeen"], CREATED_AT_RE)
        self.assertGreaterEqual(time.time() - t0, GRACE_S - 0.2, "no grace before offline")

    @async_test
    async def test_reconnect_within_the_grace_does_not_flap(self):
        a, b = await self.friends()
        cb = await self.connect(b)
        ca = await self.connect(a)
        await cb.expect("NOTIFY_PRESENCE", 3)
        for _ in range(3):
            await self.disconnect(ca)
            self._clients.remove(ca)
            ca = await self.connect(a)
        await cb.expect_none("NOTIFY_PRESENCE", GRACE_S + 1.0)

    @async_test
    async def test_only_accepted_friends_are_told(self):
        a, b = await self.friends()
        stranger = self.user("ps")
        cs = await self.connect(stranger)
        cb = await self.connect(b)
        await self.connect(a)
        await cb.expect("NOTIFY_PRESENCE", 3)
        await cs.expect_none("NOTIFY_PRESENCE", 0.5)
        self.assertEqual((await cs.request("FETCH_PRESENCE_REQUEST", {}))["friends"], [])


# ---- 5.6 the original system's shape ---------------------------------------------------------

class OriginalShapeTests(ConversationCase):

    @async_test
    async def test_write_without_channel_id_goes_to_the_entered_channel(self):
        cid, w, cw, (m,), (cm,) = await self.room()
        ack = await cw.request(WRITE, {"username": "someone else", "content": "as before"})
        self.assertOk(ack, "WRITE_MESSAGE_ACK")
        self.assertEqual(ack["channelId"], chan(cid))
        note = await cm.expect("NOTIFY_MESSAGE")
        self.assertEqual((note["username"], note["content"]), (w.username, "as before"))
        other = await self.connect(w)  # not entered anywhere
        await self.assertRequestFails(other, WRITE, {"content": "where to?"}, "BAD_REQUEST")


# ---- races ------------------------------------------------------------------------------------

class RaceTests(ConversationCase):

    async def at_once(self, *pairs):
        for c, m in pairs:
            m["requestId"] = "x%d" % next(_rids)
        await asyncio.gather(*(c.send(m) for c, m in pairs))
        return await asyncio.gather(*(c.reply(m["requestId"]) for c, m in pairs))

    @async_test
    async def test_edit_racing_delete_leaves_one_outcome(self):
        cid, w, cw, _, _ = await self.room()
        cw2 = await self.connect(w)
        for i in range(10):
            ack = await self.write(cw, cid, "race %d" % i)
            seq = ack["messageSequence"]
            edit, delete = await self.at_once(
                (cw, {"type": EDIT, "channelId": chan(cid), "messageSequence": seq,
                      "content": "edited %d" % i}),
                (cw2, {"type": DELETE, "channelId": chan(cid), "messageSequence": seq}))
            self.assertEqual(delete["type"], "DELETE_MESSAGE_ACK", delete)
            msg = await self.message(cw, cid, seq)
            self.assertEqual((msg["deleted"], msg["content"]), (True, ""))
            if edit["type"] == "ERROR":
                self.assertEqual(edit["code"], "CONFLICT")
            else:  # the edit came first; the deletion is the later version
                self.assertLess(edit["version"], delete["version"])

    @async_test
    async def test_same_emoji_at_once_counts_two(self):
        cid, w, cw, (a, b), (ca, cb) = await self.room(2)
        for i in range(5):
            seq = (await self.write(cw, cid, "both %d" % i))["messageSequence"]
            r1, r2 = await self.at_once(
                (ca, {"type": REACT, "channelId": chan(cid), "messageSequence": seq,
                      "emoji": "👏", "on": True}),
                (cb, {"type": REACT, "channelId": chan(cid), "messageSequence": seq,
                      "emoji": "👏", "on": True}))
            self.assertNotEqual(r1["version"], r2["version"])
            msg = await self.message(cw, cid, seq)
            self.assertEqual(msg["reactions"], [{"emoji": "👏", "count": 2, "me": False}])

    @async_test
    async def test_one_user_toggling_from_two_devices_ends_as_the_last_answer(self):
        cid, w, cw, (a,), (ca,) = await self.room()
        ca2 = await self.connect(a)
        seq = (await self.write(cw, cid, "toggle"))["messageSequence"]
        for i in range(10):
            r1, r2 = await self.at_once(
                (ca, {"type": REACT, "channelId": chan(cid), "messageSequence": seq,
                      "emoji": "⭐", "on": True}),
                (ca2, {"type": REACT, "channelId": chan(cid), "messageSequence": seq,
                       "emoji": "⭐", "on": False}))
            last = r1 if r1["version"] >= r2["version"] else r2
            msg = await self.message(ca, cid, seq)
            mine = [r for r in msg["reactions"] if r["emoji"] == "⭐"]
            self.assertEqual(bool(mine), last["on"], (r1, r2, msg["reactions"]))


if __name__ == "__main__":
    unittest.main()
