"""Helpers for the end-to-end tests of chatd's domain messages.

Friends (section 2.3 of docs/PROTOCOL.md), channels (2.4), messages (2.5) and
push notifications (3). Built on harness.py:

* ``Client`` wraps one WebSocket of one user. Requests get a fresh
  ``requestId`` and ``request()`` returns the answer carrying it; anything else
  that arrives meanwhile (notifications) is kept in ``inbox``, where
  ``expect()``, ``collect()`` and ``expect_none()`` find it later.
* ``DomainTestCase`` is a ``ServerTestCase`` with helpers to make friends,
  create channels, write and fetch messages, and read the push log.
* ``async_test`` runs an ``async def test_...`` and closes the test's sockets.
"""

import asyncio
import functools
import itertools
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402
    ServerTestCase,
    connection_closed_types,
    run,
    ws_connect,
)

# Every test logs in from 127.0.0.1; the per-address limiter must never trip.
ADDR_LIMIT_SET = "plugins.auth.login_max_failures_per_addr=100000"

CREATED_AT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# 10 of A-Z and 2-9 without 0 O 1 I L
INVITE_CODE_RE = re.compile(r"^[A-HJKMNP-Z2-9]{10}$")
# Well-formed, but (with overwhelming probability) nobody's code.
UNKNOWN_CODE = "ZZZZ2222ZZ"
UNKNOWN_CHANNEL = 987654321

STATUSES = ("PENDING", "ACCEPTED", "REJECTED", "DISCONNECTED")

PUSH_LOG = "push.log"
PUSH_WAIT = 2.0       # how long a push line may take to appear
PUSH_SETTLE = 0.5     # how long to wait before asserting that none appeared
MIN_WAIT = 0.02       # the shortest wait for a WebSocket message

_request_ids = itertools.count(1)


def chan(cid):
    """The channelId form the server writes: {"id": N}."""
    return {"id": cid}


def not_presence(msg):
    """A ``pred`` for "nothing else arrives" between friends: a friend's
    NOTIFY_PRESENCE may come at any time (a setup socket's close lets its user
    go offline once the grace runs out, and a slow machine reaches that)."""
    return msg.get("type") != "NOTIFY_PRESENCE"


class Client:
    """One WebSocket of one user, with an inbox for messages not yet asked for."""

    def __init__(self, ws, user, label):
        self.ws = ws
        self.user = user
        self.label = label
        self.inbox = []

    def __repr__(self):
        return "Client(%s)" % self.label

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    async def _next(self, timeout):
        """The next message off the socket, parsed; asyncio.TimeoutError when none.

        Even a timeout of 0 lets recv() run briefly: wait_for(..., 0) would give up
        before looking at messages already received.
        """
        try:
            raw = await asyncio.wait_for(self.ws.recv(), max(MIN_WAIT, timeout))
        except connection_closed_types() as e:
            raise AssertionError("%s: connection closed (code %s) while waiting; inbox %r"
                                 % (self.label, e.code, self.inbox[-5:]))
        if not isinstance(raw, str):
            raise AssertionError("%s: binary frame from the server: %r" % (self.label, raw[:80]))
        try:
            obj = json.loads(raw)
        except ValueError:
            raise AssertionError("%s: frame that is not JSON: %r" % (self.label, raw[:200]))
        if not isinstance(obj, dict):
            raise AssertionError("%s: JSON that is not an object: %r" % (self.label, raw[:200]))
        return obj

    async def recv(self, timeout=5.0):
        """The next message off the socket (the inbox is not consulted)."""
        try:
            return await self._next(timeout)
        except asyncio.TimeoutError:
            raise AssertionError("%s: no message within %.1f s" % (self.label, timeout))

    async def request(self, type_, fields=None, rid=None, timeout=5.0):
        """Send ``{"type": type_, "requestId": rid, **fields}``; return the answer to it."""
        if rid is None:
            rid = "r%d" % next(_request_ids)
        msg = {"type": type_, "requestId": rid}
        msg.update(fields or {})
        await self.send(msg)
        return await self.reply(rid, type_, timeout)

    async def reply(self, rid, what="request", timeout=5.0):
        """Wait for the message whose requestId is ``rid``; keep the others in the inbox."""
        for i, msg in enumerate(self.inbox):
            if msg.get("requestId") == rid:
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = await self._next(deadline - time.monotonic())
            except asyncio.TimeoutError:
                raise AssertionError("%s: no answer to %s (requestId %r) within %.1f s; "
                                     "inbox %r" % (self.label, what, rid, timeout,
                                                   self.inbox[-5:]))
            if msg.get("requestId") == rid:
                return msg
            self.inbox.append(msg)

    def _take(self, type_, pred):
        for i, msg in enumerate(self.inbox):
            if (type_ is None or msg.get("type") == type_) and (pred is None or pred(msg)):
                return self.inbox.pop(i)
        return None

    async def expect(self, type_, timeout=3.0, pred=None):
        """The first message of ``type_`` (and matching ``pred``), from the inbox or the wire."""
        msg = self._take(type_, pred)
        if msg is not None:
            return msg
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = await self._next(deadline - time.monotonic())
            except asyncio.TimeoutError:
                raise AssertionError("%s: no %s within %.1f s; inbox %r"
                                     % (self.label, type_, timeout, self.inbox[-5:]))
            if (type_ is None or msg.get("type") == type_) and (pred is None or pred(msg)):
                return msg
            self.inbox.append(msg)

    async def collect(self, type_=None, seconds=0.5, pred=None):
        """Every message of ``type_`` (all types when None) in the inbox or arriving
        within ``seconds``; they are removed from the inbox."""
        got = []
        while True:
            msg = self._take(type_, pred)
            if msg is None:
                break
            got.append(msg)
        deadline = time.monotonic() + seconds
        while True:
            try:
                msg = await self._next(deadline - time.monotonic())
            except asyncio.TimeoutError:
                return got
            if (type_ is None or msg.get("type") == type_) and (pred is None or pred(msg)):
                got.append(msg)
            else:
                self.inbox.append(msg)

    async def expect_none(self, type_=None, seconds=0.5, pred=None):
        """Assert that no message of ``type_`` (any when None) is queued or arrives."""
        got = await self.collect(type_, seconds, pred)
        if got:
            raise AssertionError("%s: expected no %s, got %r"
                                 % (self.label, type_ or "message", got[:5]))

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 3)
        except Exception:
            pass


def async_test(fn):
    """Run an ``async def`` test; sockets opened through ``self.connect`` are closed after."""

    @functools.wraps(fn)
    def wrapper(self):
        async def main():
            self._clients = []
            try:
                await fn(self)
            finally:
                for c in self._clients:
                    await c.close()

        run(main())

    return wrapper


class DomainTestCase(ServerTestCase):
    """One chatd per class (settings in ``server_sets``) and the domain helpers."""

    server_sets = [ADDR_LIMIT_SET]

    # ---- users and sockets ---------------------------------------------------------

    def user(self, prefix="u"):
        # lower-case prefixes only: usernames then sort the same bytewise and caselessly
        return self.server.new_user(prefix.lower())

    def users(self, n, prefix="u"):
        return [self.user(prefix) for _ in range(n)]

    async def connect(self, user, token=None, label=None):
        """A Client for ``user`` (on ``token``, default the user's login token)."""
        ws = await ws_connect(self.server, token or user.token, "query")
        n = sum(1 for c in self._clients if c.user is user) + 1
        client = Client(ws, user, label or "%s#%d" % (user.username, n))
        self._clients.append(client)
        return client

    async def disconnect(self, *clients):
        """Close sockets and give the server a moment to notice."""
        for c in clients:
            await c.close()
        await asyncio.sleep(0.1)

    # ---- assertions ------------------------------------------------------------------

    def assertOk(self, resp, type_, rid=None):
        """``resp`` is a message of ``type_`` (and carries ``rid`` when given)."""
        self.assertEqual(resp.get("type"), type_, "expected %s, got %r" % (type_, resp))
        if rid is not None:
            self.assertEqual(resp.get("requestId"), rid, resp)
        return resp

    def assertErr(self, resp, code, message_type=None, rid=None):
        """``resp`` is ``ERROR`` with ``code``, a non-empty message, and the given
        messageType / requestId."""
        self.assertEqual((resp.get("type"), resp.get("code")), ("ERROR", code),
                         "expected ERROR %s, got %r" % (code, resp))
        self.assertIsInstance(resp.get("message"), str, resp)
        self.assertTrue(resp["message"], resp)
        if message_type is not None:
            self.assertEqual(resp.get("messageType"), message_type, resp)
        if rid is not None:
            self.assertEqual(resp.get("requestId"), rid, resp)
        return resp

    async def assertRequestFails(self, client, type_, fields, code):
        """Send a request; assert ERROR ``code`` with messageType and requestId echoed."""
        rid = "e%d" % next(_request_ids)
        resp = await client.request(type_, fields, rid=rid)
        self.assertErr(resp, code, type_, rid)
        return resp

    def cid_of(self, resp):
        """The channel id of a response, asserting the {"id": N} form."""
        ch = resp.get("channelId")
        self.assertIsInstance(ch, dict, "channelId is not {\"id\": N} in %r" % resp)
        self.assertEqual(set(ch), {"id"}, resp)
        self.assertIsInstance(ch["id"], int, resp)
        self.assertGreater(ch["id"], 0, resp)
        return ch["id"]

    # ---- connections (friends) -------------------------------------------------------

    async def invite(self, client, invitee):
        resp = await client.request("INVITE_REQUEST", {"userInviteCode": invitee.invite_code})
        self.assertOk(resp, "INVITE_RESPONSE")
        return resp

    async def accept(self, client, inviter):
        resp = await client.request("ACCEPT_REQUEST", {"username": inviter.username})
        self.assertOk(resp, "ACCEPT_RESPONSE")
        return resp

    async def connections(self, client, status=None):
        """{username: (status, invitedBy)} of the client's user."""
        fields = {} if status is None else {"status": status}
        resp = await client.request("FETCH_CONNECTIONS_REQUEST", fields)
        self.assertOk(resp, "FETCH_CONNECTIONS_RESPONSE")
        return {c["username"]: (c["status"], c["invitedBy"]) for c in resp["connections"]}

    async def befriend(self, inviter, *invitees):
        """Make ``inviter`` an ACCEPTED connection of each invitee (invite + accept).

        Uses sockets of its own, closed afterwards; notifications to sockets the
        test holds stay in their inboxes.
        """
        ca = await self.connect(inviter, label="befriend:" + inviter.username)
        try:
            for b in invitees:
                cb = await self.connect(b, label="befriend:" + b.username)
                try:
                    await self.invite(ca, b)
                    await self.accept(cb, inviter)
                finally:
                    await cb.close()
                    self._clients.remove(cb)
        finally:
            await ca.close()
            self._clients.remove(ca)

    # ---- channels ----------------------------------------------------------------------

    async def create_group(self, client, members, title=None):
        """Create a group channel with ``members`` (Users); return its id."""
        title = title or "group %d" % next(_request_ids)
        resp = await client.request("CREATE_REQUEST", {
            "title": title, "participantUsernames": [m.username for m in members]})
        self.assertOk(resp, "CREATE_RESPONSE")
        return self.cid_of(resp)

    async def create_direct(self, client, other, title=None):
        title = title or "direct %d" % next(_request_ids)
        resp = await client.request("CREATE_REQUEST", {
            "title": title, "participantUsername": other.username})
        self.assertOk(resp, "CREATE_RESPONSE")
        return self.cid_of(resp)

    async def channel_with(self, owner, *members):
        """Friends ``owner`` with every member and creates a group of them all.

        Returns the channel id (no sockets are left open).
        """
        await self.befriend(owner, *members)
        c = await self.connect(owner, label="setup:" + owner.username)
        try:
            return await self.create_group(c, members)
        finally:
            await c.close()
            self._clients.remove(c)

    async def enter(self, client, cid):
        resp = await client.request("ENTER_REQUEST", {"channelId": chan(cid)})
        self.assertOk(resp, "ENTER_RESPONSE")
        return resp

    async def channel_list(self, client):
        """The ``channels`` list of FETCH_CHANNELS_LIST_RESPONSE."""
        resp = await client.request("FETCH_CHANNELS_LIST_REQUEST", {})
        self.assertOk(resp, "FETCH_CHANNELS_LIST_RESPONSE")
        self.assertIsInstance(resp.get("channels"), list, resp)
        return resp["channels"]

    async def channels(self, client):
        """{channel id: entry} of FETCH_CHANNELS_LIST."""
        return {self.cid_of(ch): ch for ch in await self.channel_list(client)}

    async def channel_entry(self, client, cid):
        chans = await self.channels(client)
        self.assertIn(cid, chans, "channel %d not in %s's list" % (cid, client.label))
        return chans[cid]

    async def wait_entry(self, client, cid, **want):
        """Poll FETCH_CHANNELS_LIST (up to 2 s) until the entry has the wanted values.

        READ_ACK has no answer, so its effect is observed by polling.
        """
        deadline = time.monotonic() + 2.0
        while True:
            entry = await self.channel_entry(client, cid)
            if all(entry.get(k) == v for k, v in want.items()) or time.monotonic() > deadline:
                for k, v in want.items():
                    self.assertEqual(entry.get(k), v, "%s of %r" % (k, entry))
                return entry
            await asyncio.sleep(0.05)

    # ---- messages ------------------------------------------------------------------------

    async def write(self, client, cid, content, cmid=None):
        fields = {"channelId": chan(cid), "content": content}
        if cmid is not None:
            fields["clientMessageId"] = cmid
        resp = await client.request("WRITE_MESSAGE", fields)
        self.assertOk(resp, "WRITE_MESSAGE_ACK")
        return resp

    async def fetch(self, client, cid, before=None, limit=None):
        fields = {"channelId": chan(cid)}
        if before is not None:
            fields["beforeSequence"] = before
        if limit is not None:
            fields["limit"] = limit
        resp = await client.request("FETCH_MESSAGES_REQUEST", fields)
        self.assertOk(resp, "FETCH_MESSAGES_RESPONSE")
        self.assertEqual(resp.get("channelId"), chan(cid), resp)
        return resp["messages"]

    async def fetch_all(self, client, cid, page=200):
        """Every message of the channel, oldest first, by paging backwards."""
        return await fetch_all_messages(client, cid, page)

    # ---- push log ------------------------------------------------------------------------

    def push_lines(self, user=None, type_=None, pred=None):
        return read_push_log(self.server, user, type_, pred)

    async def wait_push(self, user, type_, count=1, pred=None, timeout=PUSH_WAIT):
        """Poll the push log until ``count`` matching lines exist; return them."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.push_lines(user, type_, pred)
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            await asyncio.sleep(0.05)

    async def assertPushCount(self, user, type_, count, pred=None):
        """Exactly ``count`` push lines of ``type_`` for ``user`` (waiting for them to
        appear, then a moment more for extra ones)."""
        if count:
            await self.wait_push(user, type_, count, pred)
        await asyncio.sleep(PUSH_SETTLE)
        lines = self.push_lines(user, type_, pred)
        self.assertEqual(len(lines), count, "push lines of %s for %s: %r"
                         % (type_, user.username, lines))
        return lines


async def fetch_all_messages(client, cid, page=200):
    """Page through FETCH_MESSAGES (newest first pages); return messages oldest first.

    Asserts each page is ascending and the pages join up without overlap.
    """
    pages = []
    before = None
    while True:
        fields = {"channelId": chan(cid), "limit": page}
        if before is not None:
            fields["beforeSequence"] = before
        resp = await client.request("FETCH_MESSAGES_REQUEST", fields, timeout=10)
        if resp.get("type") != "FETCH_MESSAGES_RESPONSE":
            raise AssertionError("FETCH_MESSAGES before %r: %r" % (before, resp))
        msgs = resp["messages"]
        seqs = [m["messageSequence"] for m in msgs]
        if seqs != sorted(seqs) or len(set(seqs)) != len(seqs):
            raise AssertionError("page before %r not strictly ascending: %r" % (before, seqs))
        if before is not None and seqs and seqs[-1] >= before:
            raise AssertionError("page before %r holds sequence %r" % (before, seqs[-1]))
        if len(msgs) > page:
            raise AssertionError("page of %d messages for limit %d" % (len(msgs), page))
        if not msgs:
            break
        pages.append(msgs)
        if seqs[0] <= 1:
            break
        before = seqs[0]
    out = []
    for msgs in reversed(pages):
        out.extend(msgs)
    return out


def push_log_path(server):
    return os.path.join(server.data_dir, PUSH_LOG)


def read_push_log(server, user=None, type_=None, pred=None):
    """Complete lines of the push log (parsed), optionally only those for ``user``
    (matched by username) with an event of ``type_`` matching ``pred``."""
    try:
        with open(push_log_path(server), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    out = []
    for raw in data.split(b"\n")[:-1]:  # a last line without "\n" may be half written
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise AssertionError("push log line is not JSON: %r" % raw[:200])
        if not isinstance(obj, dict):
            raise AssertionError("push log line is not an object: %r" % raw[:200])
        if user is not None and obj.get("username") != user.username:
            continue
        event = obj.get("event")
        if type_ is not None and not (isinstance(event, dict) and event.get("type") == type_):
            continue
        if pred is not None and not pred(obj):
            continue
        out.append(obj)
    return out
