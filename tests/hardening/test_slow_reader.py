#!/usr/bin/python3
"""Hardening: a reader that stops reading must not hurt anybody else.

A busy channel: one writer, several healthy readers entered in it (one
WebSocket each), and one reader on a raw socket with a tiny receive buffer that
reads at first and then stops reading altogether. With ws.max_outbuf=262144
the writer sends 2 KiB messages at a steady rate. Checked:

* the server closes the slow reader (a 1008 close frame, or EOF / reset once
  its socket is read again) and counts it in chatd_ws_slow_reader_closed_total;
* every healthy reader gets every acknowledged message, in order, without a gap;
* the healthy readers' delivery latency (send -> receive) stays flat: p50/p99
  are printed for before and after the slow reader stopped reading, and the
  p99 afterwards must stay under a generous bound;
* the server's RSS stays bounded while the slow reader's data piles up (not
  asserted when chatd runs under a sanitizer, whose allocator keeps freed
  memory in quarantine).

Two other kinds of non-reading client are checked as well: one that sends
pings and never reads the pongs (must be closed like any slow reader), and an
HTTP client that pipelines requests and never reads the answers (the server's
memory must stay bounded).

The store runs with synchronous=normal: durability is not the subject here and
fsync jitter would only blur the latency figures.
"""

import asyncio
import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hardening_util import (  # noqa: E402
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    RELAXED_LOGIN,
    ServerTestCase,
    RssSampler,
    fast_frame,
    frames_in,
    metric,
    percentile,
    raw_ws_open,
    recv_frame_blocking,
    rss_kib,
    sanitizer_of,
    tcp_connect,
)
from domain import ADDR_LIMIT_SET, DomainTestCase, async_test, chan  # noqa: E402

MAX_OUTBUF = 262144
READERS = 4
CONTENT_BYTES = 2048
RATE = 200                # messages per second from the writer
PHASE_A = 2.0             # seconds with the slow reader still reading
AFTER_CLOSE = 1.5         # seconds of writing after the slow reader was closed
MAX_PHASE_B = 25.0        # give up waiting for the close after this long
MAX_MESSAGES = 7000       # hard cap on messages written
P99_BOUND_MS = 200.0
RSS_GROWTH_BOUND_KIB = 64 * 1024


class SlowReaderTest(DomainTestCase):
    server_sets = [ADDR_LIMIT_SET, "ws.max_outbuf=%d" % MAX_OUTBUF,
                   "storage.sqlite.synchronous=\"normal\""]

    @async_test
    async def test_slow_reader_is_cut_off_and_others_unaffected(self):
        port = self.server.port
        pid = self.server.proc.pid
        writer = self.user("sw")
        readers = self.users(READERS, "sr")
        slow = self.user("ss")
        cid = await self.channel_with(writer, *readers, slow)

        # healthy readers: library clients, entered
        healthy = []
        for r in readers:
            c = await self.connect(r)
            await self.enter(c, cid)
            healthy.append(c)

        # the slow reader: raw socket, small receive buffer, entered
        ssock, resp, buf = raw_ws_open(port, slow.token, rcvbuf=4096)
        self.assertEqual(resp.status, 101, resp)
        ssock.sendall(fast_frame(OP_TEXT, json.dumps(
            {"type": "ENTER_REQUEST", "requestId": "enter", "channelId": chan(cid)})))
        frame, buf = recv_frame_blocking(ssock, buf, 5.0)
        self.assertIsNotNone(frame, "slow reader: no ENTER_RESPONSE")
        self.assertIn(b"ENTER_RESPONSE", frame.payload)
        stop_reading = threading.Event()
        slow_read = [0]
        pending = [buf]   # bytes of an incomplete frame when the drainer stops

        def drain():
            ssock.settimeout(0.05)
            while not stop_reading.is_set():
                try:
                    data = ssock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                slow_read[0] += len(data)
                _, pending[0] = frames_in(pending[0] + data)

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()

        wc = await self.connect(writer)
        send_times = {}           # message index -> monotonic send time
        acked = {}                # message index -> sequence
        received = [[] for _ in healthy]   # (sequence, index, receive time)
        stop_at = [None]          # when the slow reader stopped reading
        closed_at = [None]        # when the server reported the slow reader closed
        done_sending = asyncio.Event()

        async def reader_task(i, client):
            while True:
                try:
                    raw = await asyncio.wait_for(client.ws.recv(), 30)
                except asyncio.TimeoutError:
                    return
                now = time.monotonic()
                msg = json.loads(raw)
                if msg.get("type") == "NOTIFY_MESSAGE":
                    idx = int(msg["content"][:7])
                    received[i].append((msg["messageSequence"], idx, now))

        async def ack_task():
            while len(acked) < len(send_times) or not done_sending.is_set():
                try:
                    raw = await asyncio.wait_for(wc.ws.recv(), 10)
                except asyncio.TimeoutError:
                    return
                msg = json.loads(raw)
                if msg.get("type") == "WRITE_MESSAGE_ACK":
                    acked[int(msg["clientMessageId"])] = msg["messageSequence"]
                elif msg.get("type") == "ERROR":
                    raise AssertionError("writer got %r" % msg)

        async def metric_task():
            while not done_sending.is_set():
                v = await asyncio.to_thread(metric, port, "chatd_ws_slow_reader_closed_total")
                if v >= 1 and closed_at[0] is None:
                    closed_at[0] = time.monotonic()
                await asyncio.sleep(0.2)

        rss_before = rss_kib(pid)
        tasks = [asyncio.create_task(reader_task(i, c)) for i, c in enumerate(healthy)]
        acks = asyncio.create_task(ack_task())
        watcher = asyncio.create_task(metric_task())
        pad = "." * (CONTENT_BYTES - 8)
        with RssSampler(pid) as rss:
            start = time.monotonic()
            n = 0
            while n < MAX_MESSAGES:
                now = time.monotonic()
                if stop_at[0] is None and now - start >= PHASE_A:
                    stop_reading.set()
                    stop_at[0] = now
                if closed_at[0] is not None and now - closed_at[0] >= AFTER_CLOSE:
                    break
                if stop_at[0] is not None and now - stop_at[0] > MAX_PHASE_B:
                    break
                due = start + n / RATE
                if due > now:
                    await asyncio.sleep(due - now)
                send_times[n] = time.monotonic()
                await wc.ws.send(json.dumps({
                    "type": "WRITE_MESSAGE", "channelId": chan(cid), "clientMessageId": str(n),
                    "content": "%07d%s" % (n, pad[:CONTENT_BYTES - 7])}))
                n += 1
            done_sending.set()
            await asyncio.wait_for(acks, 15)
            # let the healthy readers catch up with everything acknowledged
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(len(r) < len(acked) for r in received):
                await asyncio.sleep(0.05)
        await watcher
        for t in tasks:
            t.cancel()
        drainer.join(2)
        peak = rss.peak
        rss_after = rss_kib(pid)
        closed_metric = metric(port, "chatd_ws_slow_reader_closed_total")

        # what did the slow reader get? read it all now
        ssock.settimeout(0.5)
        dump = bytearray()
        ended = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(dump) < (64 << 20):
            try:
                data = ssock.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionResetError:
                ended = "reset"
                break
            if not data:
                ended = "EOF"
                break
            dump += data
        ssock.close()
        frames, _ = frames_in(pending[0] + bytes(dump))
        close_codes = [f.close_code for f in frames if f.opcode == OP_CLOSE]

        # ---- figures ----
        def lat(phase):
            out = []
            for rec in received:
                for seq, idx, t in rec:
                    sent = send_times[idx]
                    if phase == "before" and sent < stop_at[0]:
                        out.append((t - sent) * 1000)
                    elif phase == "after" and sent >= stop_at[0]:
                        out.append((t - sent) * 1000)
            return out

        before, after = lat("before"), lat("after")
        print("\nslow reader: %d messages of %d bytes written at %d/s to %d healthy readers"
              % (len(send_times), CONTENT_BYTES, RATE, READERS))
        print("slow reader: read %d bytes while reading, then stopped; server closed it "
              "%.2f s later (metric %d); afterwards it found %d more bytes, close codes %r, "
              "end %s" % (slow_read[0], (closed_at[0] - stop_at[0]) if closed_at[0] else -1,
                          closed_metric, len(dump), close_codes, ended))
        print("latency before the slow reader stopped: p50 %.1f ms, p99 %.1f ms, max %.1f ms "
              "(%d samples)" % (percentile(before, 50), percentile(before, 99),
                                max(before) if before else 0, len(before)))
        print("latency after the slow reader stopped:  p50 %.1f ms, p99 %.1f ms, max %.1f ms "
              "(%d samples)" % (percentile(after, 50), percentile(after, 99),
                                max(after) if after else 0, len(after)))
        print("server RSS: before %d KiB, peak %d KiB (+%d KiB), after %d KiB"
              % (rss_before, peak, peak - rss_before, rss_after))

        # ---- assertions ----
        self.assertIsNotNone(closed_at[0], "ws.max_outbuf=%d: the slow reader was not closed "
                             "within %.0f s of not reading" % (MAX_OUTBUF, MAX_PHASE_B))
        self.assertGreaterEqual(closed_metric, 1, "chatd_ws_slow_reader_closed_total not counted")
        self.assertTrue(1008 in close_codes or ended is not None,
                        "slow reader: neither a 1008 close frame nor the end of the connection "
                        "(close codes %r)" % close_codes)
        for code in close_codes:
            self.assertEqual(code, 1008, "slow reader closed with %r, expected 1008" % code)
        seqs_acked = sorted(acked.values())
        self.assertEqual(len(acked), len(send_times), "not every write was acknowledged")
        self.assertEqual(seqs_acked, list(range(seqs_acked[0], seqs_acked[0] + len(seqs_acked))),
                         "acknowledged sequences have gaps")
        for i, rec in enumerate(received):
            seqs = [s for s, _, _ in rec]
            self.assertEqual(seqs, seqs_acked, "healthy reader %d: got %d of %d messages, or out "
                             "of order (first differences: %r)"
                             % (i, len(seqs), len(seqs_acked),
                                [(a, b) for a, b in zip(seqs, seqs_acked) if a != b][:5]))
        self.assertTrue(before and after)
        self.assertLess(percentile(after, 99), P99_BOUND_MS,
                        "healthy readers' p99 latency after the slow reader stopped: %.1f ms"
                        % percentile(after, 99))
        san = sanitizer_of(pid)
        if san:
            print("server RSS: not bounded under %s (its allocator holds freed memory back)"
                  % san)
        else:
            self.assertLess(peak - rss_before, RSS_GROWTH_BOUND_KIB,
                            "server RSS grew by %d KiB with one slow reader"
                            % (peak - rss_before))
        self.assertServerUp()


def push_without_reading(sock, data, seconds):
    """Send ``data`` on a non-blocking socket for at most ``seconds``, never reading.

    Returns (bytes sent, "reset"/"closed" if the server ended the connection, else None).
    """
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + seconds
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += sock.send(data[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.005)
        except ConnectionResetError:
            return sent, "reset"
        except BrokenPipeError:
            return sent, "closed"
    return sent, None


class OtherNonReadersTest(ServerTestCase):
    """Clients that make the server produce output and never read it, other than by
    channel fan-out: what the server queues for them must stay bounded too."""

    server_sets = [RELAXED_LOGIN, "ws.max_outbuf=%d" % MAX_OUTBUF]

    def test_pinging_client_that_never_reads_is_closed(self):
        """A client that pings and never reads the pongs is closed like a slow reader.

        Every ping is answered with a pong; unread pongs pile up in the server
        like any other unread output."""
        port = self.server.port
        user = self.server.new_user("pinger")
        before = metric(port, "chatd_ws_slow_reader_closed_total")
        sock, resp, _ = raw_ws_open(port, user.token, rcvbuf=4096)
        try:
            self.assertEqual(resp.status, 101, resp)
            pings = fast_frame(OP_PING, b"p" * 125) * 64000       # about 8.4 MB
            sent, ended = push_without_reading(sock, pings, 20)
            time.sleep(0.5)
            closed = metric(port, "chatd_ws_slow_reader_closed_total") - before
            print("\nping flood: sent %d bytes of pings, never read; connection %s; "
                  "slow_reader_closed +%d; server RSS %d KiB"
                  % (sent, ended or "open", closed, rss_kib(self.server.proc.pid)))
            self.assertTrue(closed >= 1 or ended is not None,
                            "ws.max_outbuf=%d: a client that sent %d bytes of pings and never "
                            "read the pongs was not closed (pongs are queued without bound)"
                            % (MAX_OUTBUF, sent))
        finally:
            sock.close()
        self.assertServerUp()

    def test_pipelining_http_client_that_never_reads_stays_bounded(self):
        """An HTTP client that pipelines and never reads must not grow the server.

        40,000 requests for /metrics (34 bytes each, a few KiB of answer each)
        are sent in one go and none of the answers is read."""
        port = self.server.port
        pid = self.server.proc.pid
        san = sanitizer_of(pid)
        time.sleep(0.2)
        base = rss_kib(pid)
        sock = tcp_connect(port, rcvbuf=4096)
        try:
            reqs = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 40000
            with RssSampler(pid) as rss:
                sent, ended = push_without_reading(sock, reqs, 15)
                time.sleep(2.0)
            print("\npipelining: sent %d bytes of requests, never read; connection %s; "
                  "server RSS %d KiB -> peak %d KiB (+%d KiB)"
                  % (sent, ended or "open", base, rss.peak, rss.peak - base))
        finally:
            sock.close()
        if san:
            print("pipelining: RSS not bounded under %s" % san)
        else:
            self.assertLess(rss.peak - base, 32 * 1024,
                            "server RSS grew by %d KiB for one HTTP client that pipelines "
                            "requests and never reads the answers (no bound on queued HTTP "
                            "output; ws.max_outbuf covers WebSockets only)"
                            % (rss.peak - base))
        self.assertServerUp()


if __name__ == "__main__":
    unittest.main(verbosity=2)
