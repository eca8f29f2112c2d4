"""A steady load of writes into one channel, for the tests that take a backend
away under it (tests/cluster/test_cluster.py, test_sentinel.py).

    load = ChannelLoad(cid, {"A": client_on_a, "B": client_on_b}, listener)
    load.start()
    ...                     # stop Redis, kill its master, ...
    await load.stop()       # every writer waits up to 15 s for its last acks
    load.first_delivery("A", t)   # when the listener first got a message A wrote after t
    load.stored_problems(messages)

Each writer sends WRITE_MESSAGE at ``rate`` a second with at most ``window``
unanswered; the content "<name> <i> at <monotonic time>" says who wrote it
and when. The listener (a socket entered in the channel) records every
NOTIFY_MESSAGE with the time it came.
"""

import asyncio
import json
import time

from domain import chan
from harness import connection_closed_types


async def cancelled(task):
    """Cancel a reader task and wait for it to end."""
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError,) + connection_closed_types():
        pass


class ChannelLoad:
    def __init__(self, cid, writers, listener, rate=40, window=64):
        self.cid = cid
        self.writers = dict(writers)
        self.listener = listener
        self.rate = rate
        self.window = window
        self.acked = {}       # sequence -> content
        self.sent = set()     # contents sent
        self.errors = []      # (seconds since start, writer, code)
        self.unanswered = []  # contents never answered
        self.received = []    # (time, content) of NOTIFY_MESSAGE on the listener
        self.problems = []
        self._stop = asyncio.Event()
        self._tasks = []
        self._ltask = None
        self.t_base = None

    def start(self):
        self.t_base = time.monotonic()
        self._tasks = [asyncio.ensure_future(self._writer(name, c))
                       for name, c in self.writers.items()]
        self._ltask = asyncio.ensure_future(self._listen())
        return self

    async def stop(self):
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await cancelled(self._ltask)

    def first_delivery(self, writer, after):
        """Seconds from ``after`` to the listener's first message that ``writer``
        wrote after ``after``, or None."""
        for t, content in self.received:
            name, _, rest = content.partition(" ")
            if name == writer and float(rest.rsplit(" ", 1)[1]) > after:
                return t - after
        return None

    async def wait_delivery(self, writer, after, timeout):
        deadline = after + timeout
        while time.monotonic() < deadline:
            got = self.first_delivery(writer, after)
            if got is not None:
                return got
            await asyncio.sleep(0.02)
        return None

    def stored_problems(self, messages):
        """What is wrong with the channel's stored messages (every one, in
        order): gaps, an acknowledged message missing or changed, one nobody
        wrote, one stored twice."""
        problems = []
        seqs = [m["messageSequence"] for m in messages]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append("sequences not gapless")
        stored = {m["messageSequence"]: m["content"] for m in messages}
        lost = {s: c for s, c in self.acked.items() if stored.get(s) != c}
        if lost:
            problems.append("%d acknowledged messages missing or changed" % len(lost))
        if set(stored.values()) - self.sent:
            problems.append("stored messages nobody wrote")
        if len(set(stored.values())) != len(stored):
            problems.append("a message is stored twice")
        if self.unanswered:
            problems.append("%d writes never answered" % len(self.unanswered))
        return problems

    async def _writer(self, name, c):
        closed = connection_closed_types()
        ws = c.ws
        pending = {}
        slots = asyncio.Semaphore(self.window)

        async def reader():
            try:
                while True:
                    msg = json.loads(await ws.recv())
                    rid = msg.get("requestId")
                    if msg.get("type") == "WRITE_MESSAGE_ACK":
                        self.acked[msg["messageSequence"]] = pending.pop(rid)
                        slots.release()
                    elif msg.get("type") == "ERROR":
                        self.errors.append((time.monotonic() - self.t_base, name,
                                            msg.get("code")))
                        if rid in pending:
                            pending.pop(rid)
                            slots.release()
            except closed:
                pass

        rtask = asyncio.ensure_future(reader())
        i = 0
        try:
            while not self._stop.is_set():
                try:
                    await asyncio.wait_for(slots.acquire(), 0.5)
                except asyncio.TimeoutError:
                    continue  # acks stalled: look at the stop again
                content = "%s %d at %.3f" % (name, i, time.monotonic())
                rid = "%s%d" % (name, i)
                pending[rid] = content
                self.sent.add(content)
                await ws.send(json.dumps({"type": "WRITE_MESSAGE", "requestId": rid,
                                          "channelId": chan(self.cid), "content": content}))
                i += 1
                await asyncio.sleep(1.0 / self.rate)
            deadline = time.monotonic() + 15
            while pending and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self.unanswered.extend(pending.values())
        except closed as e:
            self.problems.append("writer on %s: connection closed (%s)" % (name, e))
        finally:
            await cancelled(rtask)

    async def _listen(self):
        try:
            while True:
                msg = json.loads(await self.listener.ws.recv())
                if msg.get("type") == "NOTIFY_MESSAGE":
                    self.received.append((time.monotonic(), msg["content"]))
        except connection_closed_types():
            pass
