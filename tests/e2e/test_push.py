#!/usr/bin/python3
"""End-to-end tests of push notifications (docs/PROTOCOL.md section 3), log backend.

The push plugin writes one JSON line per notification to <data_dir>/push.log:
{"id", "userId", "username", "devices", "event": <the message a WebSocket would
have carried>}, the body a webhook would be POSTed.
"""

import asyncio
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from domain import (  # noqa: E402
    ADDR_LIMIT_SET,
    DomainTestCase,
    async_test,
    chan,
)
from test_push_webhook import metric  # noqa: E402


# a notification is named after its push intent and the user (the same
# whoever writes it); one of a plugin that writes no intent gets a random one
ID_RE = r"^(p[0-9]+-u[0-9]+|r[0-9a-f]{16})$"


def in_channel(cid):
    return lambda line: line["event"].get("channelId") == chan(cid)


class PushCase(DomainTestCase):
    # plugins.push.backend defaults to "log", file push.log in the data dir

    def assertPushLine(self, line, user, event):
        self.assertRegex(line.get("id", ""), ID_RE, line)
        self.assertEqual({k: v for k, v in line.items() if k != "id"},
                         {"userId": user.user_id, "username": user.username, "devices": [],
                          "event": event})


class MessagePushTests(PushCase):

    @async_test
    async def test_intents_and_delivered_notifications_leave_nothing_stored(self):
        import sqlite3
        w, e, o = self.user("w"), self.user("e"), self.user("o")
        cid = await self.channel_with(w, e, o)
        cw, ce = await self.connect(w), await self.connect(e)
        await self.enter(ce, cid)
        # pipelined: many settle together, and their intents go in few statements
        for i in range(40):
            await cw.send({"type": "WRITE_MESSAGE", "channelId": chan(cid), "content": "p%d" % i,
                           "requestId": "p%d" % i})
        for i in range(40):
            await cw.reply("p%d" % i, "WRITE_MESSAGE")
        await self.wait_push(o, "NOTIFY_MESSAGE", 40, in_channel(cid))
        db = os.path.join(self.server.data_dir, "chatd.db")
        with sqlite3.connect(db) as conn:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'push_intent'").fetchall():
                raise unittest.SkipTest("the outbox is not in the embedded store here")
        deadline = time.monotonic() + 5
        while True:
            with sqlite3.connect(db) as conn:
                left = (conn.execute("SELECT COUNT(*) FROM push_intent").fetchone()[0],
                        conn.execute("SELECT COUNT(*) FROM push_outbox").fetchone()[0])
            if left == (0, 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        self.assertEqual(left, (0, 0), "intents or delivered notifications left in the store")

    @async_test
    async def test_a_write_with_every_member_entered_writes_no_intent(self):
        """Nobody to push to: no intent is stored (its insert and delete are
        the cost of push on the write path); one member away: one is."""
        import sqlite3
        w, e, o = self.user("nw"), self.user("ne"), self.user("no")
        cid = await self.channel_with(w, e, o)
        cw, ce, co = await self.connect(w), await self.connect(e), await self.connect(o)
        await self.enter(ce, cid)
        await self.enter(co, cid)
        db = os.path.join(self.server.data_dir, "chatd.db")

        def intents_ever():  # AUTOINCREMENT: counts the rows deleted since
            with sqlite3.connect(db) as conn:
                if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'push_intent'"
                                    ).fetchall():
                    raise unittest.SkipTest("the outbox is not in the embedded store here")
                row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'push_intent'"
                                   ).fetchone()
            return row[0] if row else 0

        await self.write(cw, cid, "warm")  # the channel's member list is kept from here
        before = intents_ever()
        for i in range(10):
            await self.write(cw, cid, "all here %d" % i)
        self.assertEqual(intents_ever(), before, "intents written with every member entered")
        await self.disconnect(co)
        await asyncio.sleep(0.2)
        await self.write(cw, cid, "o is away")
        self.assertEqual(intents_ever(), before + 1)
        await self.wait_push(o, "NOTIFY_MESSAGE", 1, lambda line: (
            line["event"].get("content") == "o is away"))

    @async_test
    async def test_offline_member_gets_one_push_per_message_entered_member_and_writer_none(self):
        w, e, o = self.user("w"), self.user("e"), self.user("o")
        cid = await self.channel_with(w, e, o)
        cw = await self.connect(w)   # the writer is not entered: still no push for them
        ce = await self.connect(e)
        await self.enter(ce, cid)
        notified = {}
        for i in range(1, 4):
            ack = await self.write(cw, cid, "push %d" % i)
            msg = await ce.expect("NOTIFY_MESSAGE")
            self.assertEqual(msg["messageSequence"], ack["messageSequence"])
            notified[ack["messageSequence"]] = msg
        lines = await self.assertPushCount(o, "NOTIFY_MESSAGE", 3, in_channel(cid))
        lines.sort(key=lambda line: line["event"].get("messageSequence", 0))
        for line, seq in zip(lines, sorted(notified)):
            with self.subTest(sequence=seq):
                self.assertPushLine(line, o, notified[seq])
        await self.assertPushCount(e, "NOTIFY_MESSAGE", 0, in_channel(cid))
        await self.assertPushCount(w, "NOTIFY_MESSAGE", 0, in_channel(cid))

    @async_test
    async def test_member_online_but_not_entered_in_the_channel_gets_push(self):
        w, idle, elsewhere, split = self.users(4, "m")
        cid = await self.channel_with(w, idle, elsewhere, split)
        cw = await self.connect(w)
        c_idle = await self.connect(idle)                 # connected, never entered
        c_else = await self.connect(elsewhere)
        other = await self.create_group(c_else, [w])       # entered in another channel
        await self.enter(c_else, other)
        s1, s2 = await self.connect(split), await self.connect(split)
        await self.enter(s1, cid)                          # one of two devices entered
        ack = await self.write(cw, cid, "who is here?")
        for user in (idle, elsewhere):
            with self.subTest(member=user.username):
                (line,) = await self.assertPushCount(user, "NOTIFY_MESSAGE", 1, in_channel(cid))
                self.assertPushLine(line, user, {
                    "type": "NOTIFY_MESSAGE", "channelId": chan(cid),
                    "messageSequence": ack["messageSequence"], "username": w.username,
                    "content": "who is here?", "createdAt": ack["createdAt"], "replyTo": None,
                    "version": ack["version"]})
        await self.assertPushCount(split, "NOTIFY_MESSAGE", 0, in_channel(cid))
        await c_idle.expect_none("NOTIFY_MESSAGE", 0.0)
        await c_else.expect_none("NOTIFY_MESSAGE", 0.0)
        await s2.expect_none("NOTIFY_MESSAGE", 0.0)
        self.assertEqual((await s1.expect("NOTIFY_MESSAGE"))["content"], "who is here?")

    @async_test
    async def test_member_leaving_the_channel_gets_push_again(self):
        w, r = self.user("w"), self.user("r")
        cid = await self.channel_with(w, r)
        cw, cr = await self.connect(w), await self.connect(r)
        await self.enter(cr, cid)
        await self.write(cw, cid, "seen live")
        await self.assertPushCount(r, "NOTIFY_MESSAGE", 0, in_channel(cid))
        self.assertOk(await cr.request("LEAVE_REQUEST", {}), "LEAVE_RESPONSE")
        await self.write(cw, cid, "pushed")
        (line,) = await self.assertPushCount(r, "NOTIFY_MESSAGE", 1, in_channel(cid))
        self.assertEqual(line["event"]["content"], "pushed")


def with_content(cid, content):
    return lambda line: (line["event"].get("channelId") == chan(cid)
                         and line["event"].get("content") == content)


class MemberListPushTests(PushCase):
    """The messaging plugin keeps the member lists of channels between writes
    (from member_cache_min_members members on; 1 here, so every channel is
    kept, in 2 slots, so lists replace each other): a change of members must
    show in the very next write's pushes."""

    server_sets = [ADDR_LIMIT_SET, "plugins.messaging.member_cache_min_members=1",
                   "plugins.messaging.member_cache_channels=2"]  # lists replace each other

    @async_test
    async def test_join_quit_and_unregister_change_who_is_pushed_at_once(self):
        w, a, j = self.user("w"), self.user("a"), self.user("j")
        cid = await self.channel_with(w, a)
        cw = await self.connect(w)
        await self.write(cw, cid, "one")      # the list {w, a} is kept now
        await self.assertPushCount(a, "NOTIFY_MESSAGE", 1, with_content(cid, "one"))

        cj = await self.connect(j)
        code = (await cw.request("FETCH_CHANNEL_INVITECODE_REQUEST",
                                 {"channelId": chan(cid)}))["inviteCode"]
        self.assertOk(await cj.request("JOIN_REQUEST", {"inviteCode": code}), "JOIN_RESPONSE")
        await self.disconnect(cj)
        await self.write(cw, cid, "two")
        for user in (a, j):
            with self.subTest(after="join", member=user.username):
                await self.assertPushCount(user, "NOTIFY_MESSAGE", 1, with_content(cid, "two"))

        cj = await self.connect(j)
        self.assertOk(await cj.request("QUIT_REQUEST", {"channelId": chan(cid)}),
                      "QUIT_RESPONSE")
        await self.disconnect(cj)
        await self.write(cw, cid, "three")
        await self.assertPushCount(a, "NOTIFY_MESSAGE", 1, with_content(cid, "three"))
        await self.assertPushCount(j, "NOTIFY_MESSAGE", 0, with_content(cid, "three"))

        status, _, _ = self.server.unregister(a.token)
        self.assertEqual(status, 204)
        await self.write(cw, cid, "four")
        await self.assertPushCount(a, "NOTIFY_MESSAGE", 0, with_content(cid, "four"))
        await self.assertPushCount(w, "NOTIFY_MESSAGE", 0, in_channel(cid))

    @async_test
    async def test_lists_of_many_channels_stay_apart(self):
        w = self.user("w")
        others = self.users(3, "o")
        cids = [await self.channel_with(w, o) for o in others]
        cw = await self.connect(w)
        for round_ in range(2):
            for cid in cids:
                await self.write(cw, cid, "r%d" % round_)
        for cid, o in zip(cids, others):
            with self.subTest(member=o.username):
                await self.assertPushCount(o, "NOTIFY_MESSAGE", 2, in_channel(cid))
                for other_cid in cids:
                    if other_cid != cid:
                        await self.assertPushCount(o, "NOTIFY_MESSAGE", 0, in_channel(other_cid))


class RefusedPushTests(PushCase):
    """A backend that answers every send at once with a failure (the log
    backend on a full disk: /dev/full takes the open but no write), and
    thousands of notifications due together (their retries, after chatd was
    stopped for longer than the backoff): each is tried, retried and
    dead-lettered, and the server stays up (each refusal used to run the
    delivery loop one level deeper: a stack overflow)."""
    MEMBERS = 40
    MESSAGES = 500  # 20,000 notifications
    ATTEMPTS = 2
    # a stack that holds the server's work many times over, but not a frame
    # or two for each of thousands of notifications
    server_stack_kib = 512
    server_sets = [ADDR_LIMIT_SET, 'plugins.push.file="/dev/full"',
                   "plugins.push.backoff_ms=1000", "plugins.push.backoff_max_ms=1000",
                   "plugins.push.max_attempts=%d" % ATTEMPTS,
                   "plugins.push.max_pending=1000000",
                   "ws.rate_limit=1000000", "ws.rate_burst=1000000",
                   "plugins.messaging.max_writes_per_second=1000000",
                   "plugins.messaging.write_burst=1000000"]

    def metric(self, name):
        return metric(self.server, name)

    @async_test
    async def test_thousands_refused_at_once_are_dead_lettered_and_the_server_stays_up(self):
        w = self.user("rw")
        members = [self.user("rm%d" % i) for i in range(self.MEMBERS)]
        cid = await self.channel_with(w, *members)
        # the channel's NOTIFY_JOINs are refused too: wait until they are dead
        dead0, deadline = -1, time.monotonic() + 10
        while dead0 != self.metric("chatd_push_dead_total") and time.monotonic() < deadline:
            dead0 = self.metric("chatd_push_dead_total")
            await asyncio.sleep(1.2)
        cw = await self.connect(w)
        window = 64
        for start in range(0, self.MESSAGES, window):
            batch = range(start, min(start + window, self.MESSAGES))
            for i in batch:
                await cw.send({"type": "WRITE_MESSAGE", "channelId": chan(cid),
                               "content": "r%d" % i, "requestId": "r%d" % i})
            for i in batch:
                self.assertOk(await cw.reply("r%d" % i, "WRITE_MESSAGE"), "WRITE_MESSAGE_ACK")
        # stopped past the backoff: every first retry is due at the same time
        os.kill(self.server.proc.pid, signal.SIGSTOP)
        await asyncio.sleep(1.5)
        os.kill(self.server.proc.pid, signal.SIGCONT)
        want = self.MESSAGES * self.MEMBERS
        deadline = time.monotonic() + 60
        while self.metric("chatd_push_dead_total") - dead0 < want:
            self.assertIsNone(self.server.proc.poll(), "chatd exited")
            self.assertLess(time.monotonic(), deadline, "not every notification dead-lettered")
            await asyncio.sleep(0.1)
        self.assertEqual(self.metric("chatd_push_dead_total") - dead0, want)
        self.assertEqual(self.metric("chatd_push_sent_total"), 0)
        self.assertServerUp()
        # and the server still serves: the writer's next message is acked
        resp = await cw.request("WRITE_MESSAGE", {"channelId": chan(cid), "content": "after"})
        self.assertOk(resp, "WRITE_MESSAGE_ACK")


class SocialPushTests(PushCase):

    @async_test
    async def test_ask_invite_push_when_invitee_offline_none_when_online(self):
        inviter, offline, online = self.user("i"), self.user("off"), self.user("on")
        ci = await self.connect(inviter)
        c_on = await self.connect(online)
        await self.invite(ci, offline)
        await self.invite(ci, online)
        (line,) = await self.assertPushCount(offline, "ASK_INVITE", 1)
        self.assertPushLine(line, offline, {"type": "ASK_INVITE", "username": inviter.username})
        await c_on.expect("ASK_INVITE")
        await self.assertPushCount(online, "ASK_INVITE", 0)
        await self.assertPushCount(inviter, "ASK_INVITE", 0)

    @async_test
    async def test_notify_accept_push_when_inviter_offline_none_when_online(self):
        gone, here, accepter = self.user("gone"), self.user("here"), self.user("acc")
        c_gone, c_here = await self.connect(gone), await self.connect(here)
        ca = await self.connect(accepter)
        await self.invite(c_gone, accepter)
        await self.invite(c_here, accepter)
        await self.disconnect(c_gone)  # the inviter's only socket goes away
        await self.accept(ca, gone)
        await self.accept(ca, here)
        (line,) = await self.assertPushCount(gone, "NOTIFY_ACCEPT", 1)
        self.assertPushLine(line, gone, {"type": "NOTIFY_ACCEPT", "username": accepter.username})
        await c_here.expect("NOTIFY_ACCEPT")
        await self.assertPushCount(here, "NOTIFY_ACCEPT", 0)
        await self.assertPushCount(accepter, "NOTIFY_ACCEPT", 0)

    @async_test
    async def test_notify_join_push_for_offline_participants_only(self):
        creator, on, off1, off2 = self.user("cr"), self.user("on"), self.user("of"), \
            self.user("of")
        await self.befriend(creator, on, off1, off2)
        cc, c_on = await self.connect(creator), await self.connect(on)
        resp = await cc.request("CREATE_REQUEST", {
            "title": "pushed join",
            "participantUsernames": [on.username, off1.username, off2.username]})
        self.assertOk(resp, "CREATE_RESPONSE")
        cid = self.cid_of(resp)
        want = {"type": "NOTIFY_JOIN", "channelId": chan(cid), "title": "pushed join"}
        for user in (off1, off2):
            with self.subTest(offline=user.username):
                (line,) = await self.assertPushCount(user, "NOTIFY_JOIN", 1, in_channel(cid))
                self.assertPushLine(line, user, want)
        self.assertEqual(await c_on.expect("NOTIFY_JOIN"), want)
        await self.assertPushCount(on, "NOTIFY_JOIN", 0, in_channel(cid))
        await self.assertPushCount(creator, "NOTIFY_JOIN", 0, in_channel(cid))

    @async_test
    async def test_push_line_shape_is_user_id_username_event_with_type(self):
        inviter, target = self.user("i"), self.user("t")
        ci = await self.connect(inviter)
        await self.invite(ci, target)
        (line,) = await self.assertPushCount(target, "ASK_INVITE", 1)
        self.assertEqual(set(line), {"id", "userId", "username", "devices", "event"}, line)
        self.assertRegex(line["id"], r"^p[0-9]+-u%d$" % target.user_id)
        self.assertEqual(line["userId"], target.user_id)
        self.assertEqual(line["username"], target.username)
        self.assertIsInstance(line["event"], dict, line)
        self.assertIsInstance(line["event"].get("type"), str, line)


if __name__ == "__main__":
    unittest.main(verbosity=2)
