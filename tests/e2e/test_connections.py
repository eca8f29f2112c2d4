#!/usr/bin/python3
"""End-to-end tests of friend connections (docs/PROTOCOL.md section 2.3)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from domain import (  # noqa: E402
    ADDR_LIMIT_SET,
    UNKNOWN_CODE,
    DomainTestCase,
    async_test,
)

FETCH = "FETCH_CONNECTIONS_REQUEST"
INVITE = "INVITE_REQUEST"
ACCEPT = "ACCEPT_REQUEST"
REJECT = "REJECT_REQUEST"
DISCONNECT = "DISCONNECT_REQUEST"


class ConnectionCase(DomainTestCase):

    async def pair(self, pa="a", pb="b"):
        """Two fresh users with one socket each."""
        a, b = self.user(pa), self.user(pb)
        return a, b, await self.connect(a), await self.connect(b)

    async def relation(self, client, other):
        """(status, invitedBy) of the client's relation with ``other``, or None."""
        return (await self.connections(client)).get(other.username)

    async def assertRelation(self, ca, cb, status, inviter):
        """Both sides list each other with ``status`` and ``inviter``."""
        self.assertEqual(await self.relation(ca, cb.user), (status, inviter.username),
                         "%s's view" % ca.label)
        self.assertEqual(await self.relation(cb, ca.user), (status, inviter.username),
                         "%s's view" % cb.label)

    async def make(self, ca, cb, status):
        """Bring the pair (a inviting b) to ``status``; a is the inviter throughout."""
        await self.invite(ca, cb.user)
        if status == "PENDING":
            return
        if status == "REJECTED":
            self.assertOk(await cb.request(REJECT, {"username": ca.user.username}),
                          "REJECT_RESPONSE")
            return
        await self.accept(cb, ca.user)
        if status == "DISCONNECTED":
            self.assertOk(await ca.request(DISCONNECT, {"username": cb.user.username}),
                          "DISCONNECT_RESPONSE")


class FetchConnectionsTests(ConnectionCase):

    async def four_relations(self):
        """A user 'me' with one relation of each status; names sort sa < sb < sc < sd.

        Returns (me's client, expected list sorted by username). Built in reverse
        name order so that insertion order is not the sort order.
        """
        me = self.user("me")
        cm = await self.connect(me)
        others = {p: self.user(p) for p in ("sa", "sb", "sc", "sd")}
        cs = {p: await self.connect(u) for p, u in others.items()}
        # sd invited me, I accepted, then disconnected
        await self.invite(cs["sd"], me)
        await self.accept(cm, others["sd"])
        self.assertOk(await cm.request(DISCONNECT, {"username": others["sd"].username}),
                      "DISCONNECT_RESPONSE")
        # I invited sc, sc rejected
        await self.invite(cm, others["sc"])
        self.assertOk(await cs["sc"].request(REJECT, {"username": me.username}),
                      "REJECT_RESPONSE")
        # sb invited me, I accepted
        await self.invite(cs["sb"], me)
        await self.accept(cm, others["sb"])
        # I invited sa, still pending
        await self.invite(cm, others["sa"])
        expected = [
            {"username": others["sa"].username, "status": "PENDING", "invitedBy": me.username},
            {"username": others["sb"].username, "status": "ACCEPTED",
             "invitedBy": others["sb"].username},
            {"username": others["sc"].username, "status": "REJECTED", "invitedBy": me.username},
            {"username": others["sd"].username, "status": "DISCONNECTED",
             "invitedBy": others["sd"].username},
        ]
        return cm, cs, expected

    @async_test
    async def test_fetch_without_status_lists_all_relations_sorted_by_username(self):
        cm, cs, expected = await self.four_relations()
        resp = await cm.request(FETCH, {}, rid="all")
        self.assertEqual(resp, {"type": "FETCH_CONNECTIONS_RESPONSE", "connections": expected,
                                "requestId": "all"})
        # the other side sees the same relation with the same inviter
        resp = await cs["sa"].request(FETCH, {})
        self.assertEqual(resp["connections"], [
            {"username": cm.user.username, "status": "PENDING", "invitedBy": cm.user.username}])

    @async_test
    async def test_fetch_with_status_lists_only_that_status(self):
        cm, _, expected = await self.four_relations()
        for status in ("PENDING", "ACCEPTED", "REJECTED", "DISCONNECTED"):
            with self.subTest(status=status):
                resp = await cm.request(FETCH, {"status": status}, rid="s-" + status)
                self.assertOk(resp, "FETCH_CONNECTIONS_RESPONSE", "s-" + status)
                self.assertEqual(resp["connections"],
                                 [c for c in expected if c["status"] == status])

    @async_test
    async def test_fetch_of_user_without_relations_is_empty(self):
        loner = self.user("loner")
        c = await self.connect(loner)
        resp = await c.request(FETCH, {}, rid="empty")
        self.assertEqual(resp, {"type": "FETCH_CONNECTIONS_RESPONSE", "connections": [],
                                "requestId": "empty"})
        resp = await c.request(FETCH, {"status": "ACCEPTED"})
        self.assertEqual(resp.get("connections"), [], resp)

    @async_test
    async def test_fetch_with_bad_status_is_bad_request(self):
        c = await self.connect(self.user("bs"))
        for bad in ("BOGUS", "", "pending", "Accepted", 7, True, ["PENDING"], {"s": 1}):
            with self.subTest(status=bad):
                await self.assertRequestFails(c, FETCH, {"status": bad}, "BAD_REQUEST")


class InviteTests(ConnectionCase):

    @async_test
    async def test_invite_answers_pending_and_asks_every_socket_of_invitee(self):
        inviter, invitee = self.user("inv"), self.user("tee")
        ci = await self.connect(inviter)
        ci_other = await self.connect(inviter)
        second_session = self.server.login(invitee.username, invitee.password)
        devices = [await self.connect(invitee), await self.connect(invitee),
                   await self.connect(invitee, token=second_session)]
        resp = await ci.request(INVITE, {"userInviteCode": invitee.invite_code}, rid="inv1")
        self.assertEqual(resp, {"type": "INVITE_RESPONSE", "userInviteCode": invitee.invite_code,
                                "status": "PENDING", "requestId": "inv1"})
        for dev in devices:
            with self.subTest(device=dev.label):
                msg = await dev.expect("ASK_INVITE")
                self.assertEqual(msg, {"type": "ASK_INVITE", "username": inviter.username})
        for dev in devices:
            await dev.expect_none("ASK_INVITE", 0.3)  # exactly one each
        await ci.expect_none("ASK_INVITE", 0.1)
        await ci_other.expect_none("ASK_INVITE", 0.1)
        await self.assertRelation(ci, devices[0], "PENDING", inviter)

    @async_test
    async def test_invite_unknown_code_is_not_found(self):
        c = await self.connect(self.user("unk"))
        await self.assertRequestFails(c, INVITE, {"userInviteCode": UNKNOWN_CODE}, "NOT_FOUND")
        self.assertEqual(await self.connections(c), {})

    @async_test
    async def test_invite_own_code_is_bad_request(self):
        me = self.user("own")
        c = await self.connect(me)
        await self.assertRequestFails(c, INVITE, {"userInviteCode": me.invite_code},
                                      "BAD_REQUEST")
        self.assertEqual(await self.connections(c), {})

    @async_test
    async def test_invite_of_pending_accepted_or_rejected_pair_is_conflict_both_ways(self):
        for status in ("PENDING", "ACCEPTED", "REJECTED"):
            with self.subTest(status=status):
                a, b, ca, cb = await self.pair()
                await self.make(ca, cb, status)
                await self.assertRequestFails(ca, INVITE, {"userInviteCode": b.invite_code},
                                              "CONFLICT")
                await self.assertRequestFails(cb, INVITE, {"userInviteCode": a.invite_code},
                                              "CONFLICT")
                await self.assertRelation(ca, cb, status, a)

    @async_test
    async def test_reinvite_after_disconnect_by_the_former_invitee_makes_them_inviter(self):
        a, b, ca, cb = await self.pair()
        await self.make(ca, cb, "ACCEPTED")
        resp = await cb.request(DISCONNECT, {"username": a.username})
        self.assertOk(resp, "DISCONNECT_RESPONSE")
        resp = await cb.request(INVITE, {"userInviteCode": a.invite_code}, rid="again")
        self.assertEqual(resp, {"type": "INVITE_RESPONSE", "userInviteCode": a.invite_code,
                                "status": "PENDING", "requestId": "again"})
        msg = await ca.expect("ASK_INVITE", pred=lambda m: m.get("username") == b.username)
        self.assertEqual(msg, {"type": "ASK_INVITE", "username": b.username})
        await self.assertRelation(ca, cb, "PENDING", b)
        # the new invitee (a) accepts; the old inviter may no longer
        await self.assertRequestFails(cb, ACCEPT, {"username": a.username}, "FORBIDDEN")
        await self.accept(ca, b)
        await self.assertRelation(ca, cb, "ACCEPTED", b)

    @async_test
    async def test_reinvite_after_disconnect_by_the_same_inviter(self):
        a, b, ca, cb = await self.pair()
        await self.make(ca, cb, "DISCONNECTED")
        await self.assertRelation(ca, cb, "DISCONNECTED", a)
        resp = await ca.request(INVITE, {"userInviteCode": b.invite_code})
        self.assertOk(resp, "INVITE_RESPONSE")
        self.assertEqual(resp.get("status"), "PENDING", resp)
        await self.assertRelation(ca, cb, "PENDING", a)

    @async_test
    async def test_rejected_pair_can_be_reinvited_after_inviter_disconnects(self):
        a, b, ca, cb = await self.pair()
        await self.make(ca, cb, "REJECTED")
        self.assertOk(await ca.request(DISCONNECT, {"username": b.username}),
                      "DISCONNECT_RESPONSE")
        await self.assertRelation(ca, cb, "DISCONNECTED", a)
        # now either side may invite; here the one who had rejected
        self.assertOk(await cb.request(INVITE, {"userInviteCode": a.invite_code}),
                      "INVITE_RESPONSE")
        await self.assertRelation(ca, cb, "PENDING", b)


class AcceptTests(ConnectionCase):

    @async_test
    async def test_accept_answers_and_notifies_every_socket_of_inviter(self):
        inviter, invitee = self.user("inr"), self.user("ine")
        inviter_session2 = self.server.login(inviter.username, inviter.password)
        ci = [await self.connect(inviter), await self.connect(inviter),
              await self.connect(inviter, token=inviter_session2)]
        ce = await self.connect(invitee)
        ce_other = await self.connect(invitee)
        await self.invite(ci[0], invitee)
        resp = await ce.request(ACCEPT, {"username": inviter.username}, rid="acc")
        self.assertEqual(resp, {"type": "ACCEPT_RESPONSE", "username": inviter.username,
                                "requestId": "acc"})
        for dev in ci:
            with self.subTest(device=dev.label):
                msg = await dev.expect("NOTIFY_ACCEPT")
                self.assertEqual(msg, {"type": "NOTIFY_ACCEPT", "username": invitee.username})
        for dev in ci:
            await dev.expect_none("NOTIFY_ACCEPT", 0.3)
        await ce.expect_none("NOTIFY_ACCEPT", 0.1)
        await ce_other.expect_none("NOTIFY_ACCEPT", 0.1)
        await self.assertRelation(ci[0], ce, "ACCEPTED", inviter)

    @async_test
    async def test_inviter_accepting_own_invite_is_forbidden(self):
        a, b, ca, cb = await self.pair()
        await self.invite(ca, b)
        await self.assertRequestFails(ca, ACCEPT, {"username": b.username}, "FORBIDDEN")
        await cb.expect_none("NOTIFY_ACCEPT", 0.3)
        await self.assertRelation(ca, cb, "PENDING", a)

    @async_test
    async def test_accept_of_relation_not_pending_is_conflict(self):
        for status in ("ACCEPTED", "REJECTED", "DISCONNECTED"):
            with self.subTest(status=status):
                a, b, ca, cb = await self.pair()
                await self.make(ca, cb, status)
                await self.assertRequestFails(cb, ACCEPT, {"username": a.username}, "CONFLICT")
                await self.assertRelation(ca, cb, status, a)

    @async_test
    async def test_accept_unknown_user_or_without_relation_is_not_found(self):
        a, b, ca, cb = await self.pair()
        await self.assertRequestFails(cb, ACCEPT, {"username": "nosuch_" + a.username[-12:]},
                                      "NOT_FOUND")
        await self.assertRequestFails(cb, ACCEPT, {"username": a.username}, "NOT_FOUND")
        self.assertEqual(await self.connections(cb), {})


class RejectTests(ConnectionCase):

    @async_test
    async def test_reject_answers_rejected_and_notifies_nobody(self):
        a, b, ca, cb = await self.pair("ri", "re")
        ca_other = await self.connect(a)
        cb_other = await self.connect(b)
        await self.invite(ca, b)
        await cb.expect("ASK_INVITE")
        await cb_other.expect("ASK_INVITE")
        resp = await cb.request(REJECT, {"username": a.username}, rid="rej")
        self.assertEqual(resp, {"type": "REJECT_RESPONSE", "username": a.username,
                                "status": "REJECTED", "requestId": "rej"})
        for c in (ca, ca_other, cb_other):
            await c.expect_none(None, 0.3)
        await self.assertRelation(ca, cb, "REJECTED", a)

    @async_test
    async def test_inviter_rejecting_own_invite_is_forbidden(self):
        a, b, ca, cb = await self.pair()
        await self.invite(ca, b)
        await self.assertRequestFails(ca, REJECT, {"username": b.username}, "FORBIDDEN")
        await self.assertRelation(ca, cb, "PENDING", a)

    @async_test
    async def test_reject_of_relation_not_pending_is_conflict(self):
        for status in ("ACCEPTED", "REJECTED", "DISCONNECTED"):
            with self.subTest(status=status):
                a, b, ca, cb = await self.pair()
                await self.make(ca, cb, status)
                await self.assertRequestFails(cb, REJECT, {"username": a.username}, "CONFLICT")
                await self.assertRelation(ca, cb, status, a)

    @async_test
    async def test_reject_unknown_user_or_without_relation_is_not_found(self):
        a, b, ca, cb = await self.pair()
        await self.assertRequestFails(cb, REJECT, {"username": "nosuch_" + a.username[-12:]},
                                      "NOT_FOUND")
        await self.assertRequestFails(cb, REJECT, {"username": a.username}, "NOT_FOUND")


class DisconnectTests(ConnectionCase):

    @async_test
    async def test_accepted_pair_can_be_disconnected_by_either_user(self):
        for who in ("inviter", "invitee"):
            with self.subTest(by=who):
                a, b, ca, cb = await self.pair()
                await self.make(ca, cb, "ACCEPTED")
                await ca.collect(None, 0.2)  # drop NOTIFY_ACCEPT and ASK_INVITE so far
                await cb.collect(None, 0.0)
                actor, other = (ca, b) if who == "inviter" else (cb, a)
                passive = cb if who == "inviter" else ca
                resp = await actor.request(DISCONNECT, {"username": other.username}, rid="dc")
                self.assertEqual(resp, {"type": "DISCONNECT_RESPONSE", "username": other.username,
                                        "status": "DISCONNECTED", "requestId": "dc"})
                await passive.expect_none(None, 0.3)
                await self.assertRelation(ca, cb, "DISCONNECTED", a)

    @async_test
    async def test_rejected_pair_disconnected_by_inviter_only(self):
        a, b, ca, cb = await self.pair()
        await self.make(ca, cb, "REJECTED")
        await self.assertRequestFails(cb, DISCONNECT, {"username": a.username}, "FORBIDDEN")
        await self.assertRelation(ca, cb, "REJECTED", a)
        resp = await ca.request(DISCONNECT, {"username": b.username})
        self.assertEqual((resp.get("type"), resp.get("username"), resp.get("status")),
                         ("DISCONNECT_RESPONSE", b.username, "DISCONNECTED"), resp)
        await self.assertRelation(ca, cb, "DISCONNECTED", a)

    @async_test
    async def test_disconnect_of_pending_or_disconnected_pair_is_conflict(self):
        for status in ("PENDING", "DISCONNECTED"):
            with self.subTest(status=status):
                a, b, ca, cb = await self.pair()
                await self.make(ca, cb, status)
                await self.assertRequestFails(ca, DISCONNECT, {"username": b.username},
                                              "CONFLICT")
                await self.assertRequestFails(cb, DISCONNECT, {"username": a.username},
                                              "CONFLICT")
                await self.assertRelation(ca, cb, status, a)

    @async_test
    async def test_disconnect_unknown_user_or_without_relation_is_not_found(self):
        a, b, ca, cb = await self.pair()
        await self.assertRequestFails(ca, DISCONNECT, {"username": "nosuch_" + b.username[-12:]},
                                      "NOT_FOUND")
        await self.assertRequestFails(ca, DISCONNECT, {"username": b.username}, "NOT_FOUND")


class FieldValidationTests(ConnectionCase):

    @async_test
    async def test_missing_or_mistyped_fields_are_bad_request(self):
        a, b, ca, cb = await self.pair()
        await self.invite(ca, b)  # a real pending relation: only the field is wrong
        bad = {
            INVITE: [{}, {"userInviteCode": 5}, {"userInviteCode": None},
                     {"userInviteCode": [b.invite_code]}, {"userInviteCode": {"c": 1}}],
            ACCEPT: [{}, {"username": 5}, {"username": None}, {"username": [a.username]}],
            REJECT: [{}, {"username": 5}, {"username": True}, {"username": {"u": 1}}],
            DISCONNECT: [{}, {"username": 5}, {"username": None}, {"username": [a.username]}],
            FETCH: [{"status": 1}, {"status": False}],
        }
        for type_, cases in bad.items():
            for fields in cases:
                with self.subTest(type=type_, fields=fields):
                    await self.assertRequestFails(cb, type_, fields, "BAD_REQUEST")
        # nothing of that changed the relation
        await self.assertRelation(ca, cb, "PENDING", a)

    @async_test
    async def test_request_id_is_echoed_on_answers_and_errors(self):
        a, b, ca, cb = await self.pair()
        cases = [
            (ca, INVITE, {"userInviteCode": b.invite_code}, "INVITE_RESPONSE"),
            (ca, INVITE, {"userInviteCode": b.invite_code}, "ERROR"),
            (cb, ACCEPT, {"username": a.username}, "ACCEPT_RESPONSE"),
            (cb, ACCEPT, {"username": a.username}, "ERROR"),
            (cb, REJECT, {"username": a.username}, "ERROR"),
            (ca, FETCH, {}, "FETCH_CONNECTIONS_RESPONSE"),
            (ca, FETCH, {"status": "nope"}, "ERROR"),
            (cb, DISCONNECT, {"username": a.username}, "DISCONNECT_RESPONSE"),
            (cb, DISCONNECT, {"username": a.username}, "ERROR"),
        ]
        for i, (client, type_, fields, answer) in enumerate(cases):
            rid = "echo-%d-%s" % (i, "x" * 40)
            with self.subTest(type=type_, answer=answer):
                await client.send(dict({"type": type_, "requestId": rid}, **fields))
                resp = await client.reply(rid, type_)
                self.assertEqual(resp.get("requestId"), rid)
                self.assertEqual(resp.get("type"), answer, resp)
                if answer == "ERROR":
                    self.assertEqual(resp.get("messageType"), type_, resp)


class ConnectionLimitTests(ConnectionCase):
    server_sets = [ADDR_LIMIT_SET, "plugins.connection.max_connections_per_user=2"]

    async def full_user(self, prefix="full"):
        """A user with two accepted friends (the limit); returns (user, client, friends)."""
        u = self.user(prefix)
        f1, f2 = self.user("f1"), self.user("f2")
        await self.befriend(u, f1)
        await self.befriend(f2, u)  # one invited by u, one inviting u
        return u, await self.connect(u), [f1, f2]

    @async_test
    async def test_accept_by_user_at_limit_is_limit_exceeded_and_stays_pending(self):
        u, cu, _ = await self.full_user()
        f3 = self.user("f3")
        c3 = await self.connect(f3)
        await self.invite(c3, u)  # inviting is not limited
        await self.assertRequestFails(cu, ACCEPT, {"username": f3.username}, "LIMIT_EXCEEDED")
        await c3.expect_none("NOTIFY_ACCEPT", 0.3)
        await self.assertRelation(cu, c3, "PENDING", f3)
        self.assertEqual(len(await self.connections(cu, "ACCEPTED")), 2)

    @async_test
    async def test_accept_of_invite_from_user_at_limit_is_limit_exceeded(self):
        u, cu, _ = await self.full_user()
        f4 = self.user("f4")
        c4 = await self.connect(f4)
        await self.invite(cu, f4)
        await self.assertRequestFails(c4, ACCEPT, {"username": u.username}, "LIMIT_EXCEEDED")
        await cu.expect_none("NOTIFY_ACCEPT", 0.3)
        await self.assertRelation(cu, c4, "PENDING", u)
        self.assertEqual(await self.connections(c4, "ACCEPTED"), {})

    @async_test
    async def test_disconnect_lowers_both_counts_so_new_accepts_work(self):
        u, cu, (f1, f2) = await self.full_user()
        # f1 is full too: u and g1
        g1 = self.user("g1")
        await self.befriend(g1, f1)
        c1 = await self.connect(f1)
        f3, g2 = self.user("f3"), self.user("g2")
        c3, cg2 = await self.connect(f3), await self.connect(g2)
        await self.invite(c3, u)
        await self.invite(cg2, f1)
        await self.assertRequestFails(cu, ACCEPT, {"username": f3.username}, "LIMIT_EXCEEDED")
        await self.assertRequestFails(c1, ACCEPT, {"username": g2.username}, "LIMIT_EXCEEDED")
        # u drops f1: both u and f1 go down to one
        self.assertOk(await cu.request(DISCONNECT, {"username": f1.username}),
                      "DISCONNECT_RESPONSE")
        await self.accept(cu, f3)
        await self.accept(c1, g2)
        # the other side disconnecting frees a slot of u as well
        f4 = self.user("f4")
        c4 = await self.connect(f4)
        await self.invite(cu, f4)
        await self.assertRequestFails(c4, ACCEPT, {"username": u.username}, "LIMIT_EXCEEDED")
        c2 = await self.connect(f2)
        self.assertOk(await c2.request(DISCONNECT, {"username": u.username}),
                      "DISCONNECT_RESPONSE")
        await self.accept(c4, u)
        self.assertEqual(sorted(await self.connections(cu, "ACCEPTED")),
                         sorted([f3.username, f4.username]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
