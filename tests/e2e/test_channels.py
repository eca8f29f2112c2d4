#!/usr/bin/python3
"""End-to-end tests of channels (docs/PROTOCOL.md section 2.4)."""

import asyncio
import os
import sqlite3
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from domain import (  # noqa: E402
    ADDR_LIMIT_SET,
    INVITE_CODE_RE,
    UNKNOWN_CHANNEL,
    UNKNOWN_CODE,
    DomainTestCase,
    async_test,
    chan,
)

CREATE = "CREATE_REQUEST"
CODE = "FETCH_CHANNEL_INVITECODE_REQUEST"
JOIN = "JOIN_REQUEST"
LIST = "FETCH_CHANNELS_LIST_REQUEST"
ENTER = "ENTER_REQUEST"
LEAVE = "LEAVE_REQUEST"
QUIT = "QUIT_REQUEST"
FETCH_MESSAGES = "FETCH_MESSAGES_REQUEST"

ENTRY_KEYS = {"channelId", "title", "headCount", "lastMessageSequence", "unreadCount", "version",
              "direct", "lastMessageAt"}
BAD_CHANNEL_IDS = ["x", "1", -1, 0, 1.5, True, None, [1], {}, {"id": "x"}, {"id": -1},
                   {"id": 0}, {"id": None}]


class ChannelCase(DomainTestCase):

    async def friends_with_sockets(self, n, prefix="p"):
        """A creator and ``n`` accepted friends; returns (creator, client, friends)."""
        creator = self.user("cr")
        friends = self.users(n, prefix)
        if friends:
            await self.befriend(creator, *friends)
        return creator, await self.connect(creator), friends

    async def code_of(self, client, cid):
        resp = await client.request(CODE, {"channelId": chan(cid)})
        self.assertOk(resp, "FETCH_CHANNEL_INVITECODE_RESPONSE")
        return resp["inviteCode"]


class CreateTests(ChannelCase):

    @async_test
    async def test_create_direct_answers_and_notifies_participant_sockets_only(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cc_other = await self.connect(creator)
        p_session2 = self.server.login(p.username, p.password)
        p_devices = [await self.connect(p), await self.connect(p, token=p_session2)]
        resp = await cc.request(CREATE, {"title": "hello", "participantUsername": p.username},
                                rid="cd")
        cid = self.cid_of(resp)
        self.assertEqual(resp, {"type": "CREATE_RESPONSE", "channelId": chan(cid),
                                "title": "hello", "requestId": "cd"})
        for dev in p_devices:
            msg = await dev.expect("NOTIFY_JOIN")
            self.assertEqual(msg, {"type": "NOTIFY_JOIN", "channelId": chan(cid),
                                   "title": "hello"})
        for dev in p_devices:
            await dev.expect_none("NOTIFY_JOIN", 0.2)
        await cc.expect_none("NOTIFY_JOIN", 0.1)
        await cc_other.expect_none("NOTIFY_JOIN", 0.1)
        for c in (cc, p_devices[0]):
            entry = await self.channel_entry(c, cid)
            self.assertEqual(entry, {"channelId": chan(cid), "title": "hello", "headCount": 2,
                                     "lastMessageSequence": 0, "unreadCount": 0, "version": 0,
                                     "direct": True, "lastMessageAt": None})

    @async_test
    async def test_create_group_notifies_each_participant_once_and_counts_duplicates_once(self):
        creator, cc, (p1, p2, p3) = await self.friends_with_sockets(3)
        c1, c2, c3 = [await self.connect(u) for u in (p1, p2, p3)]
        resp = await cc.request(CREATE, {
            "title": "group", "participantUsernames": [p1.username, p2.username, p3.username,
                                                       p1.username]}, rid="cg")
        cid = self.cid_of(resp)
        self.assertEqual(resp, {"type": "CREATE_RESPONSE", "channelId": chan(cid),
                                "title": "group", "requestId": "cg"})
        for c in (c1, c2, c3):
            msg = await c.expect("NOTIFY_JOIN")
            self.assertEqual(msg, {"type": "NOTIFY_JOIN", "channelId": chan(cid),
                                   "title": "group"})
        for c in (c1, c2, c3):
            await c.expect_none("NOTIFY_JOIN", 0.2)
        await cc.expect_none("NOTIFY_JOIN", 0.1)
        for c in (cc, c1, c2, c3):
            entry = await self.channel_entry(c, cid)
            self.assertEqual(entry["headCount"], 4, entry)

    @async_test
    async def test_title_must_be_1_to_100_characters(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        bad = ["", "a" * 101, "\u00e9" * 101, "\u65e5" * 101]
        for title in bad:
            with self.subTest(title_len=len(title)):
                await self.assertRequestFails(cc, CREATE, {
                    "title": title, "participantUsernames": [p.username]}, "BAD_REQUEST")
        for title in (5, None, ["t"], {"t": 1}):
            with self.subTest(title=title):
                await self.assertRequestFails(cc, CREATE, {
                    "title": title, "participantUsernames": [p.username]}, "BAD_REQUEST")
        await self.assertRequestFails(cc, CREATE, {"participantUsernames": [p.username]},
                                      "BAD_REQUEST")
        self.assertEqual(await self.channel_list(cc), [], "a bad CREATE made a channel")
        # 1 and 100 characters, also when 100 characters are 200 or 300 bytes
        for title in ("a", "b" * 100, "\u00e9" * 100, "\u65e5" * 100):
            with self.subTest(ok_title_len=len(title), nbytes=len(title.encode())):
                resp = await cc.request(CREATE, {"title": title,
                                                 "participantUsernames": [p.username]})
                self.assertOk(resp, "CREATE_RESPONSE")
                self.assertEqual(resp.get("title"), title)
                entry = await self.channel_entry(cc, self.cid_of(resp))
                self.assertEqual(entry["title"], title)

    @async_test
    async def test_exactly_one_participant_field_of_the_right_type(self):
        creator, cc, (p, q) = await self.friends_with_sockets(2)
        cases = [
            {},
            {"participantUsername": p.username, "participantUsernames": [q.username]},
            {"participantUsernames": []},
            {"participantUsernames": p.username},
            {"participantUsernames": [p.username, 5]},
            {"participantUsernames": [None]},
            {"participantUsernames": None},
            {"participantUsername": 5},
            {"participantUsername": [p.username]},
            {"participantUsername": None},
        ]
        for fields in cases:
            with self.subTest(fields=fields):
                await self.assertRequestFails(cc, CREATE, dict({"title": "t"}, **fields),
                                              "BAD_REQUEST")
        self.assertEqual(await self.channel_list(cc), [], "a bad CREATE made a channel")

    @async_test
    async def test_naming_oneself_is_bad_request(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        await self.assertRequestFails(cc, CREATE, {
            "title": "t", "participantUsername": creator.username}, "BAD_REQUEST")
        await self.assertRequestFails(cc, CREATE, {
            "title": "t", "participantUsernames": [p.username, creator.username]}, "BAD_REQUEST")
        self.assertEqual(await self.channel_list(cc), [])

    @async_test
    async def test_unknown_participant_is_not_found(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        ghost = "ghost_" + creator.username[-12:]
        await self.assertRequestFails(cc, CREATE, {"title": "t", "participantUsername": ghost},
                                      "NOT_FOUND")
        await self.assertRequestFails(cc, CREATE, {
            "title": "t", "participantUsernames": [p.username, ghost]}, "NOT_FOUND")
        self.assertEqual(await self.channel_list(cc), [])

    @async_test
    async def test_participant_not_an_accepted_connection_is_forbidden(self):
        creator, cc, (friend,) = await self.friends_with_sockets(1)
        cf = await self.connect(friend)
        stranger = self.user("str")
        pend_out, pend_in, rejected, disconnected = self.users(4, "nf")
        await self.invite(cc, pend_out)                  # PENDING, invited by creator
        c_in = await self.connect(pend_in)
        await self.invite(c_in, creator)                 # PENDING, invited by them
        await self.invite(cc, rejected)
        c_rej = await self.connect(rejected)
        self.assertOk(await c_rej.request("REJECT_REQUEST", {"username": creator.username}),
                      "REJECT_RESPONSE")
        await self.befriend(creator, disconnected)
        self.assertOk(await cc.request("DISCONNECT_REQUEST",
                                       {"username": disconnected.username}),
                      "DISCONNECT_RESPONSE")
        for who in (stranger, pend_out, pend_in, rejected, disconnected):
            with self.subTest(participant=who.username):
                await self.assertRequestFails(cc, CREATE, {
                    "title": "t", "participantUsername": who.username}, "FORBIDDEN")
                await self.assertRequestFails(cc, CREATE, {
                    "title": "t", "participantUsernames": [friend.username, who.username]},
                    "FORBIDDEN")
        await cf.expect_none("NOTIFY_JOIN", 0.3)
        self.assertEqual(await self.channel_list(cc), [])
        self.assertEqual(await self.channel_list(cf), [])

    @async_test
    async def test_direct_channel_created_again_answers_same_channel_and_notifies_nobody(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cp = await self.connect(p)
        first = await cc.request(CREATE, {"title": "first", "participantUsername": p.username})
        cid = self.cid_of(first)
        await cp.expect("NOTIFY_JOIN")
        again = await cc.request(CREATE, {"title": "second", "participantUsername": p.username},
                                 rid="again")
        self.assertEqual(again, {"type": "CREATE_RESPONSE", "channelId": chan(cid),
                                 "title": "first", "requestId": "again"})
        # from the other side too
        other = await cp.request(CREATE, {"title": "third",
                                          "participantUsername": creator.username})
        self.assertOk(other, "CREATE_RESPONSE")
        self.assertEqual(self.cid_of(other), cid)
        await cp.expect_none("NOTIFY_JOIN", 0.4)
        await cc.expect_none("NOTIFY_JOIN", 0.1)
        self.assertEqual(list(await self.channels(cc)), [cid])
        self.assertEqual(list(await self.channels(cp)), [cid])

    @async_test
    async def test_direct_channel_after_participant_quit_is_a_new_channel(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cp = await self.connect(p)
        cid = await self.create_direct(cc, p, "one")
        await cp.expect("NOTIFY_JOIN")
        self.assertOk(await cp.request(QUIT, {"channelId": chan(cid)}), "QUIT_RESPONSE")
        resp = await cc.request(CREATE, {"title": "two", "participantUsername": p.username})
        self.assertOk(resp, "CREATE_RESPONSE")
        new_cid = self.cid_of(resp)
        self.assertNotEqual(new_cid, cid)
        self.assertEqual(resp.get("title"), "two")
        msg = await cp.expect("NOTIFY_JOIN")
        self.assertEqual(msg["channelId"], chan(new_cid))


class InviteCodeAndJoinTests(ChannelCase):

    @async_test
    async def test_member_fetches_channel_invite_code_with_either_id_form(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_group(cc, [p])
        resp = await cc.request(CODE, {"channelId": chan(cid)}, rid="code")
        code = resp.get("inviteCode")
        self.assertEqual(resp, {"type": "FETCH_CHANNEL_INVITECODE_RESPONSE",
                                "channelId": chan(cid), "inviteCode": code, "requestId": "code"})
        self.assertRegex(code, INVITE_CODE_RE)
        cp = await self.connect(p)
        bare = await cp.request(CODE, {"channelId": cid})
        self.assertOk(bare, "FETCH_CHANNEL_INVITECODE_RESPONSE")
        self.assertEqual((bare["channelId"], bare["inviteCode"]), (chan(cid), code))
        other = await self.create_group(cc, [p])
        self.assertNotEqual(await self.code_of(cc, other), code)

    @async_test
    async def test_invite_code_of_non_member_forbidden_unknown_not_found_bad_id(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_group(cc, [p])
        outsider = await self.connect(self.user("out"))
        await self.assertRequestFails(outsider, CODE, {"channelId": chan(cid)}, "FORBIDDEN")
        await self.assertRequestFails(outsider, CODE, {"channelId": cid}, "FORBIDDEN")
        await self.assertRequestFails(cc, CODE, {"channelId": chan(UNKNOWN_CHANNEL)},
                                      "NOT_FOUND")
        await self.assertRequestFails(cc, CODE, {"channelId": UNKNOWN_CHANNEL}, "NOT_FOUND")
        for bad in BAD_CHANNEL_IDS:
            with self.subTest(channelId=bad):
                await self.assertRequestFails(cc, CODE, {"channelId": bad}, "BAD_REQUEST")
        await self.assertRequestFails(cc, CODE, {}, "BAD_REQUEST")

    @async_test
    async def test_direct_channel_has_no_invite_code_and_cannot_be_joined(self):
        """A direct channel has exactly its two members: a third user who came by
        its code would read the whole history."""
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_direct(cc, p)
        cp = await self.connect(p)
        for c in (cc, cp):
            resp = await self.assertRequestFails(c, CODE, {"channelId": chan(cid)}, "FORBIDDEN")
            self.assertIn("direct", resp["message"])
            self.assertNotIn("inviteCode", resp)
        await self.write(cc, cid, "between the two of us")
        # the store still holds a code (the column is NOT NULL); it opens nothing
        db = os.path.join(self.server.data_dir, "chatd.db")
        if os.path.exists(db):
            with sqlite3.connect(db) as conn:
                (code,) = conn.execute("SELECT invite_code FROM channel WHERE id = ?",
                                       (cid,)).fetchone()
            third = await self.connect(self.user("thd"))
            resp = await self.assertRequestFails(third, JOIN, {"inviteCode": code}, "FORBIDDEN")
            self.assertIn("direct", resp["message"])
            self.assertEqual(await self.channel_list(third), [])
            await self.assertRequestFails(third, FETCH_MESSAGES, {"channelId": chan(cid)},
                                          "FORBIDDEN")
        self.assertEqual((await self.channel_entry(cc, cid))["headCount"], 2)
        again = await cc.request(CREATE, {"title": "again", "participantUsername": p.username})
        self.assertEqual(self.cid_of(again), cid)

    @async_test
    async def test_join_by_code_adds_a_member(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_group(cc, [p], title="joinable")
        code = await self.code_of(cc, cid)
        joiner = self.user("jn")  # no connection with anyone
        cj = await self.connect(joiner)
        resp = await cj.request(JOIN, {"inviteCode": code}, rid="j")
        self.assertEqual(resp, {"type": "JOIN_RESPONSE", "channelId": chan(cid),
                                "title": "joinable", "requestId": "j"})
        entry = await self.channel_entry(cj, cid)
        self.assertEqual(entry["headCount"], 3, entry)
        self.assertEqual((await self.channel_entry(cc, cid))["headCount"], 3)
        # a member now: may fetch the code and write
        self.assertEqual(await self.code_of(cj, cid), code)
        ack = await self.write(cj, cid, "hi from the joiner")
        self.assertEqual(ack["messageSequence"], 1)

    @async_test
    async def test_join_when_already_member_is_conflict(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_group(cc, [p])
        code = await self.code_of(cc, cid)
        cp = await self.connect(p)
        await self.assertRequestFails(cc, JOIN, {"inviteCode": code}, "CONFLICT")
        await self.assertRequestFails(cp, JOIN, {"inviteCode": code}, "CONFLICT")
        cj = await self.connect(self.user("jn"))
        self.assertOk(await cj.request(JOIN, {"inviteCode": code}), "JOIN_RESPONSE")
        await self.assertRequestFails(cj, JOIN, {"inviteCode": code}, "CONFLICT")
        self.assertEqual((await self.channel_entry(cc, cid))["headCount"], 3)

    @async_test
    async def test_join_unknown_code_not_found_and_bad_code_field_bad_request(self):
        c = await self.connect(self.user("jx"))
        await self.assertRequestFails(c, JOIN, {"inviteCode": UNKNOWN_CODE}, "NOT_FOUND")
        for fields in ({}, {"inviteCode": 5}, {"inviteCode": None}, {"inviteCode": ["A"]}):
            with self.subTest(fields=fields):
                await self.assertRequestFails(c, JOIN, fields, "BAD_REQUEST")
        self.assertEqual(await self.channel_list(c), [])


class ChannelListTests(ChannelCase):

    @async_test
    async def test_list_of_new_user_is_empty(self):
        c = await self.connect(self.user("nl"))
        resp = await c.request(LIST, {}, rid="l")
        self.assertEqual(resp, {"type": "FETCH_CHANNELS_LIST_RESPONSE", "channels": [],
                                "requestId": "l"})

    @async_test
    async def test_list_entries_have_all_fields_and_are_ordered_by_channel_id(self):
        creator, cc, (p, q) = await self.friends_with_sockets(2)
        a = await self.create_group(cc, [p, q], title="A")
        b = await self.create_direct(cc, p, title="B")
        c = await self.create_group(cc, [q], title="C")
        chans = await self.channel_list(cc)
        for entry in chans:
            self.assertEqual(set(entry), ENTRY_KEYS, entry)
        self.assertEqual([e["channelId"] for e in chans], [chan(x) for x in sorted([a, b, c])])
        by_id = {e["channelId"]["id"]: e for e in chans}
        self.assertEqual(by_id[a], {"channelId": chan(a), "title": "A", "headCount": 3,
                                    "lastMessageSequence": 0, "unreadCount": 0, "version": 0,
                                    "direct": False, "lastMessageAt": None})
        self.assertTrue(by_id[b]["direct"])
        self.assertEqual(by_id[b]["headCount"], 2)
        self.assertEqual(by_id[c]["headCount"], 2)
        cp = await self.connect(p)
        self.assertEqual([e["channelId"] for e in await self.channel_list(cp)],
                         [chan(x) for x in sorted([a, b])])

    @async_test
    async def test_unread_count_follows_messages_and_read_ack(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_group(cc, [p])
        cp = await self.connect(p)
        for i in range(3):
            await self.write(cc, cid, "m%d" % i)
        entry = await self.channel_entry(cp, cid)
        self.assertEqual((entry["lastMessageSequence"], entry["unreadCount"]), (3, 3), entry)
        await cp.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 2})
        await self.wait_entry(cp, cid, lastMessageSequence=3, unreadCount=1)
        await self.write(cc, cid, "m3")
        await self.wait_entry(cp, cid, lastMessageSequence=4, unreadCount=2)
        await cp.send({"type": "READ_ACK", "channelId": cid, "messageSequence": 4})
        await self.wait_entry(cp, cid, lastMessageSequence=4, unreadCount=0)
        # the writer's own messages are not unread, on any of their devices
        other_device = await self.connect(creator)
        entry = await self.channel_entry(other_device, cid)
        self.assertEqual((entry["lastMessageSequence"], entry["unreadCount"]), (4, 0), entry)
        # and a reader who writes has read everything up to their message
        await self.write(cc, cid, "m4")
        await self.write(cp, cid, "reply")
        await self.wait_entry(cp, cid, lastMessageSequence=6, unreadCount=0)
        await self.wait_entry(other_device, cid, lastMessageSequence=6, unreadCount=1)


class EnterLeaveTests(ChannelCase):

    @async_test
    async def test_enter_answers_channel_state(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_group(cc, [p], title="room")
        cp = await self.connect(p)
        resp = await cp.request(ENTER, {"channelId": chan(cid)}, rid="en")
        self.assertEqual(resp, {"type": "ENTER_RESPONSE", "channelId": chan(cid), "title": "room",
                                "lastReadMessageSequence": 0, "lastMessageSequence": 0,
                                "requestId": "en"})
        for i in range(3):
            await self.write(cc, cid, "m%d" % i)
        await cp.send({"type": "READ_ACK", "channelId": chan(cid), "messageSequence": 2})
        await self.wait_entry(cp, cid, unreadCount=1)
        resp = await cp.request(ENTER, {"channelId": cid}, rid="en2")  # bare id form
        self.assertEqual(resp, {"type": "ENTER_RESPONSE", "channelId": chan(cid), "title": "room",
                                "lastReadMessageSequence": 2, "lastMessageSequence": 3,
                                "requestId": "en2"})

    @async_test
    async def test_enter_unknown_not_found_non_member_forbidden_bad_id_bad_request(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_group(cc, [p])
        outsider = await self.connect(self.user("out"))
        await self.assertRequestFails(outsider, ENTER, {"channelId": chan(cid)}, "FORBIDDEN")
        await self.assertRequestFails(cc, ENTER, {"channelId": chan(UNKNOWN_CHANNEL)},
                                      "NOT_FOUND")
        for bad in BAD_CHANNEL_IDS:
            with self.subTest(channelId=bad):
                await self.assertRequestFails(cc, ENTER, {"channelId": bad}, "BAD_REQUEST")
        # the outsider did not become a reader of the channel
        await self.write(cc, cid, "private")
        await outsider.expect_none("NOTIFY_MESSAGE", 0.3)

    @async_test
    async def test_leave_is_always_answered_and_stops_notifications(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_group(cc, [p])
        cp = await self.connect(p)
        resp = await cp.request(LEAVE, {}, rid="l0")  # not entered: still answered
        self.assertEqual(resp, {"type": "LEAVE_RESPONSE", "requestId": "l0"})
        await self.enter(cp, cid)
        await self.write(cc, cid, "while entered")
        msg = await cp.expect("NOTIFY_MESSAGE")
        self.assertEqual(msg["content"], "while entered")
        resp = await cp.request(LEAVE, {}, rid="l1")
        self.assertEqual(resp, {"type": "LEAVE_RESPONSE", "requestId": "l1"})
        await self.write(cc, cid, "after leave")
        await cp.expect_none("NOTIFY_MESSAGE", 0.5)
        resp = await cp.request(LEAVE, {}, rid="l2")  # twice: still answered
        self.assertEqual(resp, {"type": "LEAVE_RESPONSE", "requestId": "l2"})

    @async_test
    async def test_enter_of_another_channel_replaces_the_active_one(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        first = await self.create_group(cc, [p], title="first")
        second = await self.create_group(cc, [p], title="second")
        cp = await self.connect(p)
        await self.enter(cp, first)
        await self.enter(cp, second)
        await self.write(cc, first, "in first")
        await self.write(cc, second, "in second")
        got = await cp.collect("NOTIFY_MESSAGE", 0.6)
        self.assertEqual([(m["channelId"], m["content"]) for m in got],
                         [(chan(second), "in second")])

    @async_test
    async def test_active_channel_is_per_websocket(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        first = await self.create_group(cc, [p])
        second = await self.create_group(cc, [p])
        d1, d2, d3 = [await self.connect(p) for _ in range(3)]
        await self.enter(d1, first)
        await self.enter(d2, second)
        # d3 never enters
        await self.write(cc, first, "one")
        await self.write(cc, second, "two")
        got1 = await d1.collect("NOTIFY_MESSAGE", 0.6)
        got2 = await d2.collect("NOTIFY_MESSAGE", 0.0)
        got3 = await d3.collect("NOTIFY_MESSAGE", 0.0)
        self.assertEqual([m["content"] for m in got1], ["one"])
        self.assertEqual([m["content"] for m in got2], ["two"])
        self.assertEqual(got3, [])


class QuitTests(ChannelCase):

    @async_test
    async def test_quit_ends_membership_everywhere(self):
        creator, cc, (p, q) = await self.friends_with_sockets(2)
        cid = await self.create_group(cc, [p, q])
        code = await self.code_of(cc, cid)
        d1, d2 = await self.connect(p), await self.connect(p)
        cq = await self.connect(q)
        await self.enter(d1, cid)
        await self.enter(d2, cid)
        await self.write(cc, cid, "before")
        for d in (d1, d2):
            self.assertEqual((await d.expect("NOTIFY_MESSAGE"))["content"], "before")
        resp = await d1.request(QUIT, {"channelId": chan(cid)}, rid="q")
        self.assertEqual(resp, {"type": "QUIT_RESPONSE", "channelId": chan(cid),
                                "requestId": "q"})
        # one member fewer for those who stay; gone from the quitter's list
        self.assertEqual((await self.channel_entry(cq, cid))["headCount"], 2)
        self.assertNotIn(cid, await self.channels(d2))
        # neither of the quitter's sockets is entered any more
        await self.write(cc, cid, "after")
        await d1.expect_none("NOTIFY_MESSAGE", 0.5)
        await d2.expect_none("NOTIFY_MESSAGE", 0.0)
        # and every member-only request is FORBIDDEN now
        await self.assertRequestFails(d2, "FETCH_MESSAGES_REQUEST", {"channelId": chan(cid)},
                                      "FORBIDDEN")
        await self.assertRequestFails(d2, "WRITE_MESSAGE",
                                      {"channelId": chan(cid), "content": "x"}, "FORBIDDEN")
        await self.assertRequestFails(d2, ENTER, {"channelId": chan(cid)}, "FORBIDDEN")
        await self.assertRequestFails(d2, CODE, {"channelId": chan(cid)}, "FORBIDDEN")
        await self.assertRequestFails(d2, QUIT, {"channelId": chan(cid)}, "FORBIDDEN")
        # the invite code lets them back in
        self.assertOk(await d2.request(JOIN, {"inviteCode": code}), "JOIN_RESPONSE")
        self.assertEqual((await self.channel_entry(cq, cid))["headCount"], 3)

    @async_test
    async def test_quit_unknown_not_found_non_member_forbidden_bad_id_bad_request(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_group(cc, [p])
        outsider = await self.connect(self.user("out"))
        await self.assertRequestFails(outsider, QUIT, {"channelId": chan(cid)}, "FORBIDDEN")
        await self.assertRequestFails(cc, QUIT, {"channelId": chan(UNKNOWN_CHANNEL)},
                                      "NOT_FOUND")
        for bad in ("x", -1, 0, None, {"id": "1"}):
            with self.subTest(channelId=bad):
                await self.assertRequestFails(cc, QUIT, {"channelId": bad}, "BAD_REQUEST")
        self.assertEqual((await self.channel_entry(cc, cid))["headCount"], 2)

    @async_test
    async def test_channel_whose_last_member_quits_is_deleted(self):
        creator, cc, (p,) = await self.friends_with_sockets(1)
        cid = await self.create_group(cc, [p])
        code = await self.code_of(cc, cid)
        await self.write(cc, cid, "soon gone")
        cp = await self.connect(p)
        self.assertOk(await cp.request(QUIT, {"channelId": cid}), "QUIT_RESPONSE")
        self.assertOk(await cc.request(QUIT, {"channelId": cid}), "QUIT_RESPONSE")
        await asyncio.sleep(0.2)
        await self.assertRequestFails(cc, ENTER, {"channelId": cid}, "NOT_FOUND")
        await self.assertRequestFails(cc, CODE, {"channelId": cid}, "NOT_FOUND")
        await self.assertRequestFails(cc, "FETCH_MESSAGES_REQUEST", {"channelId": cid},
                                      "NOT_FOUND")
        stranger = await self.connect(self.user("late"))
        await self.assertRequestFails(stranger, JOIN, {"inviteCode": code}, "NOT_FOUND")


class ChannelMemberLimitTests(ChannelCase):
    server_sets = [ADDR_LIMIT_SET, "plugins.channel.max_channel_members=3"]

    @async_test
    async def test_group_over_member_limit_is_limit_exceeded(self):
        creator, cc, friends = await self.friends_with_sockets(3)
        clients = [await self.connect(f) for f in friends]
        await self.assertRequestFails(cc, CREATE, {
            "title": "big", "participantUsernames": [f.username for f in friends]},
            "LIMIT_EXCEEDED")
        for c in clients:
            await c.expect_none("NOTIFY_JOIN", 0.2)
        self.assertEqual(await self.channel_list(cc), [])
        # exactly at the limit is fine; duplicates count once
        resp = await cc.request(CREATE, {"title": "ok", "participantUsernames": [
            friends[0].username, friends[1].username, friends[0].username]})
        self.assertOk(resp, "CREATE_RESPONSE")
        self.assertEqual((await self.channel_entry(cc, self.cid_of(resp)))["headCount"], 3)

    @async_test
    async def test_join_of_full_channel_is_limit_exceeded_until_someone_quits(self):
        creator, cc, (p, q) = await self.friends_with_sockets(2)
        cid = await self.create_group(cc, [p, q])
        code = await self.code_of(cc, cid)
        cj = await self.connect(self.user("jn"))
        await self.assertRequestFails(cj, JOIN, {"inviteCode": code}, "LIMIT_EXCEEDED")
        self.assertEqual(await self.channel_list(cj), [])
        cq = await self.connect(q)
        self.assertOk(await cq.request(QUIT, {"channelId": cid}), "QUIT_RESPONSE")
        self.assertOk(await cj.request(JOIN, {"inviteCode": code}), "JOIN_RESPONSE")
        self.assertEqual((await self.channel_entry(cc, cid))["headCount"], 3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
