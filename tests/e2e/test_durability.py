#!/usr/bin/python3
"""End-to-end crash test: acknowledged messages survive kill -9.

A few clients write into one channel with pipelined requests; chatd is killed
with SIGKILL while writes are in flight, restarted on the same data directory,
and must return every acknowledged message with its sequence and content, with
gapless sequences, new writes continuing after the last one, and the login
sessions of before the crash still valid. Twice.
"""

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Server, connection_closed_types, ws_connect  # noqa: E402
from domain import (  # noqa: E402
    ADDR_LIMIT_SET,
    DomainTestCase,
    async_test,
    chan,
    fetch_all_messages,
)


class CrashRestartTests(DomainTestCase):
    """Not one server per class: each test starts, kills and restarts its own."""

    SETS = [ADDR_LIMIT_SET, 'storage.sqlite.synchronous="full"']
    WRITERS = 3
    WINDOW = 32            # writes in flight per writer
    ACKS_BEFORE_KILL = 150  # per crash round
    CRASHES = 2

    @classmethod
    def setUpClass(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        pass

    def setUp(self):
        self.data_dir = tempfile.mkdtemp(prefix="chatd-crash-")
        self.server = None
        self.passed = False

    def tearDown(self):
        if self.server is not None and self.server.alive():
            self.server._kill()
        if self.passed and not os.environ.get("CHATD_E2E_KEEP"):
            shutil.rmtree(self.data_dir, ignore_errors=True)
        elif not self.passed:
            sys.stderr.write("crash test data dir kept at %s\n" % self.data_dir)

    def start(self):
        self.server = Server(self.SETS, data_dir=self.data_dir).start()
        return self.server

    async def write_until_killed(self, cid, users, tag, acked, sent):
        """Pipelined writers (one socket per user) until the server is SIGKILLed after
        ACKS_BEFORE_KILL more acknowledgements. ``acked`` gets {sequence: content} of
        every ACK received, ``sent`` every content sent."""
        target = len(acked) + self.ACKS_BEFORE_KILL
        sockets = [await ws_connect(self.server, u.token, "query") for u in users]
        closed = connection_closed_types() + (ConnectionError, OSError)
        errors = []

        async def writer_pair(ws, k):
            window = asyncio.Semaphore(self.WINDOW)
            pending = {}

            async def reader():
                try:
                    async for raw in ws:
                        msg = json.loads(raw)
                        if msg.get("type") == "WRITE_MESSAGE_ACK":
                            content = pending.pop(msg.get("requestId"))
                            seq = msg["messageSequence"]
                            if seq in acked:
                                errors.append("sequence %d acknowledged for %r and %r"
                                              % (seq, acked[seq], content))
                            acked[seq] = content
                            window.release()
                        elif msg.get("type") == "ERROR":
                            errors.append(msg)
                            window.release()
                except closed:
                    pass

            async def writer():
                i = 0
                try:
                    while True:
                        await window.acquire()
                        rid = "%s-%d-%d" % (tag, k, i)
                        content = "crash test " + rid
                        pending[rid] = content
                        sent.add(content)
                        await ws.send(json.dumps({"type": "WRITE_MESSAGE", "requestId": rid,
                                                  "channelId": chan(cid), "content": content}))
                        i += 1
                except closed:
                    pass

            wtask = asyncio.ensure_future(writer())
            await reader()  # ends when the connection does
            wtask.cancel()
            try:
                await wtask
            except (asyncio.CancelledError,) + closed:
                pass

        async def killer():
            deadline = time.monotonic() + 30
            while len(acked) < target and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            self.assertGreaterEqual(len(acked), target, "writes too slow: %d acks in 30 s"
                                    % len(acked))
            self.server.kill9()

        await asyncio.wait_for(asyncio.gather(killer(), *(writer_pair(ws, k)
                                                          for k, ws in enumerate(sockets))), 60)
        for ws in sockets:
            try:
                await asyncio.wait_for(ws.close(), 1)
            except Exception:
                pass
        self.assertEqual(errors, [], "write errors before the crash")

    async def check_after_restart(self, cid, users, acked, sent):
        """Everything acknowledged is there, gapless; old tokens work; writes go on.

        Returns the new last sequence.
        """
        for u in users:  # tokens issued before the first crash still open sockets
            c = await self.connect(u)
            resp = await c.request("FETCH_USER_INVITECODE_REQUEST", {})
            self.assertEqual(resp.get("inviteCode"), u.invite_code, resp)
        reader = self._clients[-1]
        messages = await fetch_all_messages(reader, cid, page=200)
        seqs = [m["messageSequence"] for m in messages]
        n = len(messages)
        self.assertEqual(seqs, list(range(1, n + 1)), "sequences are not gapless from 1")
        self.assertGreaterEqual(n, len(acked))
        by_seq = {m["messageSequence"]: m["content"] for m in messages}
        lost = {s: c for s, c in acked.items() if by_seq.get(s) != c}
        self.assertEqual(lost, {}, "acknowledged messages lost or changed: %d of %d"
                         % (len(lost), len(acked)))
        contents = [m["content"] for m in messages]
        self.assertEqual(len(set(contents)), n, "a message is stored twice")
        self.assertEqual(set(contents) - sent, set(), "messages nobody wrote")
        entry = await self.channel_entry(reader, cid)
        self.assertEqual(entry["lastMessageSequence"], n)
        content = "after restart %d" % n
        ack = await self.write(reader, cid, content)
        self.assertEqual(ack["messageSequence"], n + 1, "new writes do not continue at N+1")
        acked[n + 1] = content
        sent.add(content)
        return n + 1

    @async_test
    async def test_acked_messages_survive_kill9_and_sequences_continue(self):
        self.start()
        users = [self.server.new_user("dur") for _ in range(self.WRITERS)]
        cid = await self.channel_with(users[0], *users[1:])
        acked, sent = {}, set()
        for crash in range(1, self.CRASHES + 1):
            await self.write_until_killed(cid, users, "c%d" % crash, acked, sent)
            for c in self._clients:
                await c.close()
            self._clients = []
            self.assertFalse(self.server.alive())
            self.start()
            before = len(acked)
            last = await self.check_after_restart(cid, users, acked, sent)
            sys.stderr.write("crash %d: %d messages acknowledged so far, %d stored\n"
                             % (crash, before, last - 1))
        for c in self._clients:
            await c.close()
        self._clients = []
        self.server.stop()
        self.passed = True


if __name__ == "__main__":
    unittest.main(verbosity=2)
