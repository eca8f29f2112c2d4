#!/usr/bin/python3
"""End-to-end tests of messages (docs/PROTOCOL.md section 2.5)."""

import asyncio
import datetime
import http.client
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import connection_closed_types  # noqa: E402
from domain import (  # noqa: E402
    CREATED_AT_RE,
    UNKNOWN_CHANNEL,
    DomainTestCase,
    async_test,
    chan,
    not_presence,
)

WRITE = "WRITE_MESSAGE"
FETCH = "FETCH_MESSAGES_REQUEST"
MESSAGE_KEYS = {"messageSequence", "username", "content", "createdAt", "version", "editedAt",
                "deleted", "replyTo", "reactions"}


def parse_created_at(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


class MessageCase(DomainTestCase):

    async def room(self, n_members=1):
        """A group channel of a writer and ``n_members`` others; no sockets entered.

        Returns (cid, writer, writer's client, members).
        """
        writer = self.user("w")
        members = self.users(n_members, "m")
        cid = await self.channel_with(writer, *members)
        return cid, writer, await self.connect(writer), members


class WriteTests(MessageCase):

    @async_test
    async def test_ack_has_sequence_from_1_created_at_and_client_message_id_or_null(self):
        cid, w, cw, _ = await self.room()
        before = datetime.datetime.now(datetime.timezone.utc)
        acks = []
        for i, cmid in enumerate(["cm-a", None, "cm-c"], 1):
            fields = {"channelId": chan(cid), "content": "message %d" % i}
            if cmid is not None:
                fields["clientMessageId"] = cmid
            rid = "w%d" % i
            ack = await cw.request(WRITE, fields, rid=rid)
            created = ack.get("createdAt")
            self.assertEqual(ack, {"type": "WRITE_MESSAGE_ACK", "channelId": chan(cid),
                                   "messageSequence": i, "clientMessageId": cmid,
                                   "createdAt": created, "requestId": rid, "version": i})
            self.assertIsInstance(created, str, ack)
            self.assertRegex(created, CREATED_AT_RE)
            acks.append(ack)
        stamps = [parse_created_at(a["createdAt"]) for a in acks]
        self.assertEqual(stamps, sorted(stamps), "createdAt goes backwards")
        slack = datetime.timedelta(seconds=30)
        self.assertGreater(stamps[0], before - slack, "createdAt is not now (UTC)")
        self.assertLess(stamps[-1], datetime.datetime.now(datetime.timezone.utc) + slack,
                        "createdAt is not now (UTC)")

    @async_test
    async def test_bare_channel_id_is_accepted_on_write(self):
        cid, w, cw, _ = await self.room()
        ack = await cw.request(WRITE, {"channelId": cid, "content": "bare"})
        self.assertOk(ack, "WRITE_MESSAGE_ACK")
        self.assertEqual((ack["channelId"], ack["messageSequence"]), (chan(cid), 1))

    @async_test
    async def test_notify_reaches_every_entered_socket_except_the_writing_one(self):
        cid, w, w1, (m, n) = await self.room(2)
        w2, w3 = await self.connect(w), await self.connect(w)
        m1, m2 = await self.connect(m), await self.connect(m)
        n1 = await self.connect(n)
        other = await self.create_group(n1, [w])  # where n's socket is entered instead
        for c in (w1, w2, m1):
            await self.enter(c, cid)
        await self.enter(n1, other)
        # w3 and m2 are connected but not entered anywhere
        ack = await self.write(w1, cid, "to the entered")
        want = {"type": "NOTIFY_MESSAGE", "channelId": chan(cid), "messageSequence": 1,
                "username": w.username, "content": "to the entered",
                "createdAt": ack["createdAt"], "replyTo": None, "version": 1}
        for c in (w2, m1):
            with self.subTest(receiver=c.label):
                self.assertEqual(await c.expect("NOTIFY_MESSAGE"), want)
        for c in (w1, w2, w3, m1, m2, n1):
            with self.subTest(silent=c.label):
                await c.expect_none("NOTIFY_MESSAGE", 0.3 if c is w1 else 0.0)

    @async_test
    async def test_writing_does_not_need_entering(self):
        cid, w, cw, (m,) = await self.room()
        cm = await self.connect(m)
        await self.enter(cm, cid)
        ack = await self.write(cw, cid, "from outside")
        self.assertEqual(ack["messageSequence"], 1)
        msg = await cm.expect("NOTIFY_MESSAGE")
        self.assertEqual((msg["content"], msg["username"]), ("from outside", w.username))

    @async_test
    async def test_write_by_non_member_forbidden_unknown_channel_not_found(self):
        cid, w, cw, (m,) = await self.room()
        cm = await self.connect(m)
        await self.enter(cm, cid)
        outsider = await self.connect(self.user("out"))
        await self.assertRequestFails(outsider, WRITE, {"channelId": chan(cid), "content": "x"},
                                      "FORBIDDEN")
        await self.assertRequestFails(cw, WRITE, {"channelId": chan(UNKNOWN_CHANNEL),
                                                  "content": "x"}, "NOT_FOUND")
        for bad in ("x", -1, 0, None, {"id": "1"}):
            with self.subTest(channelId=bad):
                await self.assertRequestFails(cw, WRITE, {"channelId": bad, "content": "x"},
                                              "BAD_REQUEST")
        await self.assertRequestFails(cw, WRITE, {"content": "x"}, "BAD_REQUEST")
        await cm.expect_none("NOTIFY_MESSAGE", 0.3)
        self.assertEqual(await self.fetch(cw, cid), [])

    @async_test
    async def test_content_must_be_a_string_of_1_to_4096_bytes(self):
        cid, w, cw, _ = await self.room()
        await self.assertRequestFails(cw, WRITE, {"channelId": chan(cid), "content": ""},
                                      "BAD_REQUEST")
        for bad in (5, None, ["x"], {"c": "x"}, True):
            with self.subTest(content=bad):
                await self.assertRequestFails(cw, WRITE, {"channelId": chan(cid), "content": bad},
                                              "BAD_REQUEST")
        await self.assertRequestFails(cw, WRITE, {"channelId": chan(cid)}, "BAD_REQUEST")
        for too_long in ("a" * 4097, "\u00e9" * 2048 + "a", "\u65e5" * 1366):
            with self.subTest(nbytes=len(too_long.encode()), nchars=len(too_long)):
                await self.assertRequestFails(cw, WRITE, {"channelId": chan(cid),
                                                          "content": too_long}, "LIMIT_EXCEEDED")
        self.assertEqual(await self.fetch(cw, cid), [], "a refused write was stored")
        ok = ["a" * 4096, "\u00e9" * 2048, "\u65e5" * 1365 + "z", "x"]
        for i, content in enumerate(ok, 1):
            with self.subTest(ok_nbytes=len(content.encode())):
                ack = await self.write(cw, cid, content)
                self.assertEqual(ack["messageSequence"], i, "refused writes used up sequences")
        got = await self.fetch(cw, cid)
        self.assertEqual([m["content"] for m in got], ok)

    @async_test
    async def test_client_message_id_is_a_string_of_at_most_64_bytes(self):
        cid, w, cw, _ = await self.room()
        for bad in ("c" * 65, "\u00e9" * 33, 5, ["x"], {"x": 1}, True):
            with self.subTest(clientMessageId=bad if not isinstance(bad, str) else len(bad)):
                await self.assertRequestFails(cw, WRITE, {"channelId": chan(cid), "content": "x",
                                                          "clientMessageId": bad}, "BAD_REQUEST")
        for i, cmid in enumerate(("c" * 64, "\u00e9" * 32), 1):
            ack = await self.write(cw, cid, "ok", cmid)
            self.assertEqual((ack["messageSequence"], ack["clientMessageId"]), (i, cmid))


class LatencyMetricsTests(MessageCase):

    def metrics(self):
        """Unlabelled series summed over every node (each node counts its own)."""
        cluster = self.server.cluster
        ports = [n.port for n in cluster.nodes] if cluster else [self.server.port]
        totals = {}
        for port in ports:
            conn = (http.client.HTTPConnection("127.0.0.1", port, timeout=5) if cluster
                    else self.server.connection(timeout=5))  # https in TLS mode
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            self.assertEqual(resp.status, 200)
            for line in body.decode("utf-8").splitlines():
                if line and not line.startswith("#") and "{" not in line:
                    name, value = line.rsplit(" ", 1)
                    totals[name] = totals.get(name, 0.0) + float(value)
        return totals

    @async_test
    async def test_writes_are_counted_in_request_and_storage_histograms(self):
        cid, _, cw, _ = await self.room()
        before = self.metrics()
        for i in range(3):
            await self.write(cw, cid, "timed %d" % i)
        after = self.metrics()
        for name in ("chatd_ws_request_seconds", "chatd_store_write_seconds",
                     "chatd_store_write_wait_seconds"):
            with self.subTest(histogram=name):
                grew = after.get(name + "_count", 0) - before.get(name + "_count", 0)
                self.assertGreaterEqual(grew, 3, name)
                self.assertGreater(after[name + "_sum"], before.get(name + "_sum", 0), name)


class IdempotencyTests(MessageCase):

    @async_test
    async def test_retry_with_same_client_message_id_gets_same_ack_stored_once_notified_once(self):
        cid, w, cw, (m,) = await self.room()
        cw2 = await self.connect(w)  # the same user's other device
        cm = await self.connect(m)
        await self.enter(cm, cid)
        await self.write(cw, cid, "first")
        first = await self.write(cw, cid, "retried", "retry-1")
        self.assertEqual(first["messageSequence"], 2)
        self.assertEqual((await cm.expect("NOTIFY_MESSAGE", pred=lambda x: x.get(
            "messageSequence") == 2))["content"], "retried")
        await cm.collect("NOTIFY_MESSAGE", 0.0)
        for client in (cw, cw2):
            with self.subTest(retry_from=client.label):
                again = await self.write(client, cid, "retried", "retry-1")
                self.assertEqual(
                    {k: again.get(k) for k in ("channelId", "messageSequence", "clientMessageId",
                                               "createdAt")},
                    {k: first.get(k) for k in ("channelId", "messageSequence", "clientMessageId",
                                               "createdAt")})
        await cm.expect_none("NOTIFY_MESSAGE", 0.5)
        msgs = await self.fetch(cw, cid)
        self.assertEqual([(x["messageSequence"], x["content"]) for x in msgs],
                         [(1, "first"), (2, "retried")])
        nxt = await self.write(cw, cid, "next", "retry-2")
        self.assertEqual(nxt["messageSequence"], 3, "a retry used up a sequence")

    @async_test
    async def test_same_client_message_id_from_other_user_or_in_other_channel_is_new(self):
        cid, w, cw, (m,) = await self.room()
        other = await self.create_group(cw, [m])
        cm = await self.connect(m)
        a = await self.write(cw, cid, "by w", "shared-id")
        b = await self.write(cm, cid, "by m", "shared-id")
        c = await self.write(cw, other, "by w elsewhere", "shared-id")
        self.assertEqual((a["messageSequence"], b["messageSequence"]), (1, 2))
        self.assertEqual((c["channelId"], c["messageSequence"]), (chan(other), 1))
        msgs = await self.fetch(cw, cid)
        self.assertEqual([(x["username"], x["content"]) for x in msgs],
                         [(w.username, "by w"), (m.username, "by m")])
        self.assertEqual([x["content"] for x in await self.fetch(cw, other)], ["by w elsewhere"])


class FetchTests(MessageCase):
    """One channel of 60 messages (every third by the second member), shared by the tests."""

    _data = None

    async def data(self):
        """(cid, writer, member, [(ack, username)] in order), made on first use."""
        cls = type(self)
        if cls._data is None:
            cid, w, cw, (m,) = await self.room()
            cm = await self.connect(m)
            acks = []
            for i in range(1, 61):
                client = cw if i % 3 else cm
                ack = await self.write(client, cid, "msg %d by %s" % (i, client.user.username))
                acks.append((ack, client.user.username))
            cls._data = (cid, w, m, acks)
        return cls._data

    async def expected(self, first, last):
        out = []
        for ack, name in (await self.data())[3][first - 1:last]:
            seq = ack["messageSequence"]
            out.append({"messageSequence": seq, "username": name,
                        "content": "msg %d by %s" % (seq, name), "createdAt": ack["createdAt"],
                        "version": seq, "editedAt": None, "deleted": False, "replyTo": None,
                        "reactions": []})
        return out

    @async_test
    async def test_written_sequences_are_1_to_60(self):
        acks = (await self.data())[3]
        self.assertEqual([a["messageSequence"] for a, _ in acks], list(range(1, 61)))

    @async_test
    async def test_default_is_newest_50_ascending_with_usernames_and_created_at(self):
        cid, w, m, _ = await self.data()
        c = await self.connect(w)
        resp = await c.request(FETCH, {"channelId": chan(cid)}, rid="f")
        self.assertEqual(set(resp), {"type", "channelId", "messages", "requestId", "hasMore"},
                         resp)
        self.assertIs(resp["hasMore"], True)
        self.assertEqual((resp["type"], resp["channelId"], resp["requestId"]),
                         ("FETCH_MESSAGES_RESPONSE", chan(cid), "f"))
        for msg in resp["messages"]:
            self.assertEqual(set(msg), MESSAGE_KEYS, msg)
            self.assertRegex(msg["createdAt"], CREATED_AT_RE)
        self.assertEqual(resp["messages"], await self.expected(11, 60))

    @async_test
    async def test_limit_and_before_sequence_page_backwards(self):
        cid, w, m, _ = await self.data()
        c = await self.connect(m)
        cases = [
            ({"limit": 10}, (51, 60)),
            ({"limit": 1}, (60, 60)),
            ({"limit": 200}, (1, 60)),
            ({"beforeSequence": 51, "limit": 10}, (41, 50)),
            ({"beforeSequence": 41}, (1, 40)),
            ({"beforeSequence": 5, "limit": 50}, (1, 4)),
            ({"beforeSequence": 2}, (1, 1)),
            ({"beforeSequence": 1}, None),
            ({"beforeSequence": 1000, "limit": 3}, (58, 60)),
        ]
        for fields, span in cases:
            with self.subTest(**fields):
                msgs = await self.fetch(c, cid, fields.get("beforeSequence"),
                                        fields.get("limit"))
                self.assertEqual(msgs, (await self.expected(*span)) if span else [])
        # paging backwards with limit 7 visits every message once
        everything = await self.fetch_all(c, cid, page=7)
        self.assertEqual(everything, await self.expected(1, 60))

    @async_test
    async def test_bad_limit_or_before_sequence_is_bad_request(self):
        cid, w, m, _ = await self.data()
        c = await self.connect(w)
        for bad in (0, 201, -1, "5", 1.5, [5], True):
            with self.subTest(limit=bad):
                await self.assertRequestFails(c, FETCH, {"channelId": chan(cid),
                                                         "limit": bad}, "BAD_REQUEST")
        for bad in (0, -1, "x", 1.5, {"s": 1}):
            with self.subTest(beforeSequence=bad):
                await self.assertRequestFails(c, FETCH, {"channelId": chan(cid),
                                                         "beforeSequence": bad}, "BAD_REQUEST")

    @async_test
    async def test_fetch_by_non_member_forbidden_unknown_not_found(self):
        cid, w, m, _ = await self.data()
        outsider = await self.connect(self.user("out"))
        await self.assertRequestFails(outsider, FETCH, {"channelId": chan(cid)},
                                      "FORBIDDEN")
        await self.assertRequestFails(outsider, FETCH, {"channelId": chan(UNKNOWN_CHANNEL)},
                                      "NOT_FOUND")
        await self.assertRequestFails(outsider, FETCH, {"channelId": "x"}, "BAD_REQUEST")
        await self.assertRequestFails(outsider, FETCH, {}, "BAD_REQUEST")

    @async_test
    async def test_fetch_of_channel_without_messages_is_empty(self):
        cid, w, m, _ = await self.data()
        c = await self.connect(w)
        empty = await self.create_group(c, [m])
        resp = await c.request(FETCH, {"channelId": empty}, rid="e")
        self.assertEqual(resp, {"type": "FETCH_MESSAGES_RESPONSE", "channelId": chan(empty),
                                "messages": [], "hasMore": False, "requestId": "e"})


class ReadAckTests(MessageCase):

    async def room_with_messages(self, n):
        cid, w, cw, (m,) = await self.room()
        for i in range(n):
            await self.write(cw, cid, "m%d" % i)
        cm = await self.connect(m)
        return cid, cw, cm

    async def read_ack(self, client, cid, seq, rid=None):
        msg = {"type": "READ_ACK", "channelId": chan(cid), "messageSequence": seq}
        if rid is not None:
            msg["requestId"] = rid
        await client.send(msg)

    @async_test
    async def test_read_ack_gets_no_answer(self):
        cid, cw, cm = await self.room_with_messages(3)
        await self.read_ack(cm, cid, 1)
        await self.read_ack(cm, cid, 2, rid="ra")
        await cm.expect_none(None, 0.6, not_presence)
        await self.wait_entry(cm, cid, unreadCount=1)

    @async_test
    async def test_read_ack_only_moves_forward(self):
        cid, cw, cm = await self.room_with_messages(5)
        await self.read_ack(cm, cid, 4)
        await self.wait_entry(cm, cid, unreadCount=1)
        await self.read_ack(cm, cid, 2)
        await asyncio.sleep(0.5)
        entry = await self.channel_entry(cm, cid)
        self.assertEqual(entry["unreadCount"], 1, "a smaller READ_ACK moved the mark back")
        resp = await self.enter(cm, cid)
        self.assertEqual((resp["lastReadMessageSequence"], resp["lastMessageSequence"]), (4, 5))

    @async_test
    async def test_read_ack_is_clamped_at_last_message(self):
        cid, cw, cm = await self.room_with_messages(3)
        await self.read_ack(cm, cid, 999)
        await self.wait_entry(cm, cid, unreadCount=0, lastMessageSequence=3)
        resp = await self.enter(cm, cid)
        self.assertEqual((resp["lastReadMessageSequence"], resp["lastMessageSequence"]), (3, 3))
        await self.write(cw, cid, "new 1")
        await self.write(cw, cid, "new 2")
        entry = await self.channel_entry(cm, cid)
        self.assertEqual((entry["lastMessageSequence"], entry["unreadCount"]), (5, 2), entry)

    @async_test
    async def test_read_ack_errors_are_answered(self):
        cid, cw, cm = await self.room_with_messages(1)
        outsider = await self.connect(self.user("out"))
        await outsider.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 1,
                             "requestId": "nm"})
        self.assertErr(await outsider.reply("nm", "READ_ACK"), "FORBIDDEN", "READ_ACK", "nm")
        await outsider.send({"type": "READ_ACK", "channelId": chan(UNKNOWN_CHANNEL),
                             "messageSequence": 1, "requestId": "uk"})
        self.assertErr(await outsider.reply("uk", "READ_ACK"), "NOT_FOUND", "READ_ACK", "uk")
        # without a requestId the error still comes
        await outsider.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 1})
        self.assertErr(await outsider.expect("ERROR"), "FORBIDDEN", "READ_ACK")
        bad_inputs = [
            {"channelId": chan(cid)},
            {"channelId": chan(cid), "messageSequence": "x"},
            {"channelId": chan(cid), "messageSequence": -1},
            {"channelId": chan(cid), "messageSequence": 1.5},
            {"messageSequence": 1},
            {"channelId": "x", "messageSequence": 1},
        ]
        for i, fields in enumerate(bad_inputs):
            with self.subTest(fields=fields):
                rid = "bad%d" % i
                await cm.send(dict({"type": "READ_ACK", "requestId": rid}, **fields))
                self.assertErr(await cm.reply(rid, "READ_ACK"), "BAD_REQUEST", "READ_ACK", rid)
        entry = await self.channel_entry(cm, cid)
        self.assertEqual(entry["unreadCount"], 1, entry)



class ExpiredSessionTests(MessageCase):
    """A session ended by its TTL gets no delivery, even while it waits for the
    sweep that closes its sockets."""
    server_sets = MessageCase.server_sets + ["session.ttl=3"]

    @async_test
    async def test_no_delivery_after_the_session_expired(self):
        writer, member = self.user("w"), self.user("m")
        cid = await self.channel_with(writer, member)
        # fresh sessions: the setup above used part of the first ones' TTL
        cw = await self.connect(writer, self.server.login(writer.username))
        token = self.server.login(member.username)
        logged_in = time.time()
        cm = await self.connect(member, token)
        await self.enter(cm, cid)
        got, closed_at = [], None
        deadline = time.monotonic() + 6.0
        n = 0
        while time.monotonic() < deadline and closed_at is None:
            await cw.send({"type": "KEEP_ALIVE"})
            await cw.send({"type": WRITE, "channelId": chan(cid), "content": "tick %d" % n,
                           "requestId": "t%d" % n})
            n += 1
            try:
                while True:
                    raw = await asyncio.wait_for(cm.ws.recv(), 0.1)
                    got.append((time.time(), json.loads(raw)))
            except asyncio.TimeoutError:
                pass
            except connection_closed_types():
                closed_at = time.time()
        self.assertIsNotNone(closed_at, "the expired session's socket was never closed")
        self.assertEqual(cm.ws.close_code, 4001)
        self.assertLess(closed_at - logged_in, 5.0)
        notes = [(t, m) for t, m in got if m.get("type") == "NOTIFY_MESSAGE"]
        self.assertTrue(notes, "nothing was delivered while the session lived")
        for t, m in notes:
            created = parse_created_at(m["createdAt"]).timestamp()
            self.assertLess(created, logged_in + 3.05,
                            "delivered %r written %.2f s after the login (TTL 3 s)"
                            % (m["content"], created - logged_in))

if __name__ == "__main__":
    unittest.main(verbosity=2)
