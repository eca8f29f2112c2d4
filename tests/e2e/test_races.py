#!/usr/bin/python3
"""End-to-end tests of concurrent requests: one outcome per friend request, and
gapless unique message sequences under parallel pipelined writers."""

import asyncio
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from domain import (  # noqa: E402
    ADDR_LIMIT_SET,
    DomainTestCase,
    async_test,
    chan,
    fetch_all_messages,
)

ROUNDS = 5


class RaceCase(DomainTestCase):

    async def invited_twice_connected(self):
        """An inviter (one socket) and an invitee on two sessions (one socket each),
        with a PENDING invite; returns (inviter, ci, invitee, s1, s2)."""
        inviter, invitee = self.user("ri"), self.user("re")
        ci = await self.connect(inviter)
        s1 = await self.connect(invitee)
        s2 = await self.connect(invitee, token=self.server.login(invitee.username,
                                                                 invitee.password))
        await self.invite(ci, invitee)
        await s1.expect("ASK_INVITE")
        await s2.expect("ASK_INVITE")
        return inviter, ci, invitee, s1, s2

    async def at_once(self, *pairs):
        """Send each (client, message) as close together as possible; return the
        answers in the same order."""
        await asyncio.gather(*(c.send(m) for c, m in pairs))
        return await asyncio.gather(*(c.reply(m["requestId"], m["type"]) for c, m in pairs))

    def winner_and_loser(self, answers, ok_types):
        """Exactly one answer is a success (of ok_types), the other ERROR CONFLICT."""
        oks = [a for a in answers if a.get("type") in ok_types]
        errs = [a for a in answers if a.get("type") == "ERROR"]
        self.assertEqual((len(oks), len(errs)), (1, 1), "answers %r" % (answers,))
        self.assertEqual(errs[0].get("code"), "CONFLICT", "loser got %r" % errs[0])
        return oks[0]

    async def accept_race(self, tag):
        inviter, ci, invitee, s1, s2 = await self.invited_twice_connected()
        msg = {"type": "ACCEPT_REQUEST", "username": inviter.username}
        answers = await self.at_once((s1, dict(msg, requestId=tag + "-1")),
                                     (s2, dict(msg, requestId=tag + "-2")))
        win = self.winner_and_loser(answers, {"ACCEPT_RESPONSE"})
        self.assertEqual(win.get("username"), inviter.username, win)
        notes = await ci.collect("NOTIFY_ACCEPT", 0.4)
        self.assertEqual(len(notes), 1, "inviter got %r" % notes)
        resp = await ci.request("FETCH_CONNECTIONS_REQUEST", {})
        self.assertEqual(resp.get("connections"), [
            {"username": invitee.username, "status": "ACCEPTED", "invitedBy": inviter.username}])
        resp = await s1.request("FETCH_CONNECTIONS_REQUEST", {"status": "ACCEPTED"})
        self.assertEqual([c["username"] for c in resp.get("connections", [])],
                         [inviter.username])
        return inviter, ci, invitee, s1


class AcceptRaceTests(RaceCase):

    @async_test
    async def test_two_simultaneous_accepts_give_one_accept_response_and_one_conflict(self):
        for i in range(ROUNDS):
            with self.subTest(round=i):
                await self.accept_race("acc%d" % i)

    @async_test
    async def test_accept_racing_reject_leaves_exactly_the_winners_status(self):
        outcomes = set()
        for i in range(ROUNDS):
            with self.subTest(round=i):
                inviter, ci, invitee, s1, s2 = await self.invited_twice_connected()
                acc = {"type": "ACCEPT_REQUEST", "username": inviter.username,
                       "requestId": "ar%d-a" % i}
                rej = {"type": "REJECT_REQUEST", "username": inviter.username,
                       "requestId": "ar%d-r" % i}
                order = [(s1, acc), (s2, rej)] if i % 2 == 0 else [(s2, rej), (s1, acc)]
                answers = await self.at_once(*order)
                win = self.winner_and_loser(answers, {"ACCEPT_RESPONSE", "REJECT_RESPONSE"})
                status = "ACCEPTED" if win["type"] == "ACCEPT_RESPONSE" else "REJECTED"
                outcomes.add(status)
                resp = await ci.request("FETCH_CONNECTIONS_REQUEST", {})
                self.assertEqual(resp.get("connections"), [
                    {"username": invitee.username, "status": status,
                     "invitedBy": inviter.username}])
                notes = await ci.collect("NOTIFY_ACCEPT", 0.4)
                self.assertEqual(len(notes), 1 if status == "ACCEPTED" else 0,
                                 "NOTIFY_ACCEPT after %s won: %r" % (win["type"], notes))
        # not an assertion on the server: which side wins is up to timing
        sys.stderr.write("accept/reject race outcomes: %s\n" % sorted(outcomes))


class AcceptRaceCountTests(RaceCase):
    server_sets = [ADDR_LIMIT_SET, "plugins.connection.max_connections_per_user=1"]

    @async_test
    async def test_raced_accept_counts_exactly_one_connection_per_user(self):
        for i in range(3):
            with self.subTest(round=i):
                inviter, ci, invitee, s1 = await self.accept_race("cnt%d" % i)
                # both are at the limit of 1 ...
                t, u = self.user("t"), self.user("u")
                ct, cu = await self.connect(t), await self.connect(u)
                await self.invite(ct, invitee)
                await self.invite(cu, inviter)
                await self.assertRequestFails(s1, "ACCEPT_REQUEST", {"username": t.username},
                                              "LIMIT_EXCEEDED")
                await self.assertRequestFails(ci, "ACCEPT_REQUEST", {"username": u.username},
                                              "LIMIT_EXCEEDED")
                # ... and one DISCONNECT brings both back to zero, not to one
                self.assertOk(await ci.request("DISCONNECT_REQUEST",
                                               {"username": invitee.username}),
                              "DISCONNECT_RESPONSE")
                await self.accept(s1, t)
                await self.accept(ci, u)


class ParallelWriteTests(RaceCase):
    USERS = 4
    SOCKETS_PER_USER = 2
    WRITES = 500
    WINDOW = 64  # writes in flight per socket

    async def pipelined_writer(self, client, cid, tag):
        """Write WRITES messages, at most WINDOW unanswered; return {requestId: ack}."""
        acks = {}
        window = asyncio.Semaphore(self.WINDOW)

        async def reader():
            while len(acks) < self.WRITES:
                msg = await client.recv(30.0)
                rid = msg.get("requestId")
                if msg.get("type") == "ERROR":
                    raise AssertionError("%s: write refused: %r" % (client.label, msg))
                if msg.get("type") != "WRITE_MESSAGE_ACK":
                    continue  # notifications meant for the user, not for this test
                if rid in acks:
                    raise AssertionError("%s: second ACK for %s" % (client.label, rid))
                acks[rid] = msg
                window.release()

        async def writer():
            for i in range(self.WRITES):
                await window.acquire()
                rid = "%s-%d" % (tag, i)
                await client.send({"type": "WRITE_MESSAGE", "requestId": rid,
                                   "channelId": chan(cid), "content": "content " + rid,
                                   "clientMessageId": "cm-" + rid})

        await asyncio.wait_for(asyncio.gather(reader(), writer()), 120)
        return acks

    @async_test
    async def test_parallel_pipelined_writes_get_unique_gapless_sequences(self):
        owner, *members = self.users(self.USERS, "pw")
        cid = await self.channel_with(owner, *members)
        clients = []
        for k, user in enumerate([owner] + members):
            for j in range(self.SOCKETS_PER_USER):
                token = user.token if j == 0 else self.server.login(user.username,
                                                                    user.password)
                clients.append(await self.connect(user, token=token, label="w%d.%d" % (k, j)))
        results = await asyncio.gather(*(self.pipelined_writer(c, cid, c.label)
                                          for c in clients))
        total = len(clients) * self.WRITES
        sent = {}  # sequence -> (username, content)
        for client, acks in zip(clients, results):
            self.assertEqual(len(acks), self.WRITES, client.label)
            for rid, ack in acks.items():
                self.assertEqual(ack.get("channelId"), chan(cid), ack)
                self.assertEqual(ack.get("clientMessageId"), "cm-" + rid, ack)
                seq = ack.get("messageSequence")
                self.assertNotIn(seq, sent, "sequence %r acknowledged twice" % seq)
                sent[seq] = (client.user.username, "content " + rid)
        self.assertEqual(sorted(sent), list(range(1, total + 1)))
        reader = clients[0]
        messages = await fetch_all_messages(reader, cid, page=200)
        self.assertEqual([m["messageSequence"] for m in messages], list(range(1, total + 1)))
        contents = [m["content"] for m in messages]
        self.assertEqual(len(set(contents)), total, "a content is stored more than once")
        for m in messages:
            self.assertEqual((m["username"], m["content"]), sent[m["messageSequence"]],
                             "message %d differs from what was acknowledged"
                             % m["messageSequence"])
        entry = await self.channel_entry(reader, cid)
        self.assertEqual(entry["lastMessageSequence"], total)


if __name__ == "__main__":
    unittest.main(verbosity=2)
