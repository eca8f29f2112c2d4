#!/usr/bin/python3
"""A store that cannot write (disk full, read-only) answers UNAVAILABLE, with
nothing half-written, and /healthz says so while it lasts.

The full disk is made real with RLIMIT_FSIZE lowered on the running server
(prlimit): every write past the first byte of any file fails with EFBIG, as
writes to a full disk fail with ENOSPC. Raising the limit again is the disk
getting space back."""

import asyncio
import os
import resource
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

from domain import DomainTestCase, async_test, chan  # noqa: E402
from harness import DEFAULT_PASSWORD, error_code, unique_name  # noqa: E402

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"


class FullDiskTests(DomainTestCase):

    def set_file_limit(self, limit):
        resource.prlimit(self.server.proc.pid, resource.RLIMIT_FSIZE,
                         (limit, resource.RLIM_INFINITY))

    def tearDown(self):
        self.set_file_limit(resource.RLIM_INFINITY)

    def healthz_until(self, status, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            got = self.server.healthz()[0]
            if got == status or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    @async_test
    async def test_writes_fail_unavailable_and_healthz_follows(self):
        alice, carol = self.user("al"), self.user("ca")
        cid = await self.channel_with(alice, carol)
        ca = await self.connect(alice)
        await self.write(ca, cid, "before the disk filled")
        self.assertEqual(self.server.healthz()[0], 200)

        self.set_file_limit(1)
        name = unique_name("full")
        status, _, body = self.server.request("POST", REGISTER,
                                              {"username": name, "password": DEFAULT_PASSWORD})
        self.assertEqual((status, error_code(body)), (503, "UNAVAILABLE"), body)
        status, _, body = self.server.request("POST", LOGIN, {"username": alice.username,
                                                              "password": DEFAULT_PASSWORD})
        self.assertEqual((status, error_code(body)), (503, "UNAVAILABLE"), body)
        resp = await ca.request("WRITE_MESSAGE", {"channelId": chan(cid), "content": "lost?",
                                                  "clientMessageId": "full-1"})
        self.assertErr(resp, "UNAVAILABLE", "WRITE_MESSAGE")
        # the store still reads, but cannot write: not healthy
        self.assertEqual(self.healthz_until(503), 503)
        self.assertEqual([m["content"] for m in await self.fetch(ca, cid)],
                         ["before the disk filled"])

        self.set_file_limit(resource.RLIM_INFINITY)
        self.assertEqual(self.healthz_until(200), 200)
        # nothing of the failed writes was kept: the retry takes the next sequence,
        # the name is free
        ack = await self.write(ca, cid, "lost?", cmid="full-1")
        self.assertEqual(ack["messageSequence"], 2)
        status, _, body = self.server.request("POST", REGISTER,
                                              {"username": name, "password": DEFAULT_PASSWORD})
        self.assertEqual(status, 201, body)
        self.assertTrue(self.server.alive())


if __name__ == "__main__":
    unittest.main()
