#!/usr/bin/python3
"""Webhook throughput of the push plugin: how fast one chatd delivers a burst
of notifications from its durable outbox to a receiver that answers at once.

    tests/bench/push_webhook.py [--messages 200] [--members 50] [--max-in-flight 64]

The receiver is nginx (tests/cluster/balancer.py's process, here with one
location answering every POST 204 at once, no access log, keep-alive), so
that chatd, not the receiver, is what is measured. One chatd on the embedded
SQLite store POSTs to it (plugins.push.backend="webhook", signed, at most
--max-in-flight requests open). A writer and --members members share a group
channel; the members never connect, so each message is a notification for
each of them (an offline member needs no registered device: the POST has
"devices": []). The writer writes --messages messages on one WebSocket with
--window unanswered, so N = messages x members notifications.

Measured from the first write to the moment chatd's /metrics (polled every
50 ms) counts the N-th in chatd_push_sent_total: notifications/s, the write
acks/s meanwhile, chatd's CPU (/proc/PID/stat) and RSS, the most rows the
outbox held (chatd_push_outbox_held) and the webhook's mean answer time.
Exit 1 unless exactly N were sent and none dead-lettered; 77 (skipped) without
nginx. Every wait has a timeout; everything runs on 127.0.0.1 in a temporary
directory, removed at the end.
"""
import argparse
import asyncio
import http.client
import os
import re
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for sub in ("e2e", "cluster", "bench"):
    sys.path.insert(0, os.path.join(HERE, "..", sub))

import harness  # noqa: E402
from balancer import Nginx, available, process_config  # noqa: E402
from scenario import GENEROUS  # noqa: E402
from test_push_webhook import HOOK_PATH, pipelined_writes, webhook_sets  # noqa: E402
from write_throughput import cpu_seconds, request  # noqa: E402

POLL = 0.05  # seconds between two reads of /metrics

_RECEIVER = """\
    server {{
        listen {host}:{port} backlog=1024;
        keepalive_timeout 65s;
        keepalive_requests 10000000;
        location / {{
            return 204;
        }}
    }}
"""


def receiver_config(directory, port):
    return process_config(directory, "a webhook receiver answering 204", _RECEIVER.format(
        host=harness.HOST, port=port), access_log=False)


_SAMPLE_RE = re.compile(r"^(chatd_[a-z_]+) ([0-9.e+-]+)$", re.MULTILINE)


def metrics(port):
    """{family: value} of chatd's /metrics, its samples without labels."""
    conn = http.client.HTTPConnection(harness.HOST, port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode("utf-8")
    finally:
        conn.close()
    return {name: float(value) for name, value in _SAMPLE_RE.findall(text)}


def counts(m):
    return {k: int(m.get("chatd_push_%s" % k, 0))
            for k in ("queued_total", "sent_total", "dead_total", "retried_total",
                      "outbox_held")}


async def setup(srv, members):
    """A writer befriended with ``members`` offline users and their group channel:
    (writer, channel id). No socket stays open."""
    w = srv.new_user("pw")
    ws = await harness.ws_connect(srv, w.token)
    try:
        users = []
        for _ in range(members):
            u = srv.new_user("pm")
            mws = await harness.ws_connect(srv, u.token)
            try:
                r = await request(ws, {"type": "INVITE_REQUEST", "userInviteCode": u.invite_code},
                                  "INVITE_RESPONSE")
                assert r["type"] == "INVITE_RESPONSE", r
                r = await request(mws, {"type": "ACCEPT_REQUEST", "username": w.username},
                                  "ACCEPT_RESPONSE")
                assert r["type"] == "ACCEPT_RESPONSE", r
            finally:
                await mws.close()
            users.append(u)
        r = await request(ws, {"type": "CREATE_REQUEST", "title": "push bench",
                               "participantUsernames": [u.username for u in users]},
                          "CREATE_RESPONSE")
        assert r["type"] == "CREATE_RESPONSE", r
        return w, r["channelId"]["id"]
    finally:
        await ws.close()


def wait_quiet(port, at_least, timeout):
    """Wait until the outbox is empty, at least ``at_least`` were sent (or
    dead-lettered) and the counters rest for 0.5 s (the setup's pushes,
    NOTIFY_JOIN, are out); the counts."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        c = counts(metrics(port))
        if c != last:
            last, since = c, time.monotonic()
        elif (c["outbox_held"] == 0 and c["sent_total"] + c["dead_total"] >= at_least
              and time.monotonic() - since >= 0.5):
            return c
        time.sleep(POLL)
    raise RuntimeError("the setup's pushes did not settle within %.0f s: %r" % (timeout, last))


class Poller(threading.Thread):
    """Reads /metrics, the CPU and the RSS of chatd every POLL seconds until
    ``want`` more were sent (or dead-lettered) than at ``base``, or ``stop``."""

    def __init__(self, srv, base, want):
        super().__init__(daemon=True)
        self.port, self.pid, self.base, self.want = srv.port, srv.proc.pid, base, want
        self.stop = threading.Event()
        self.done_at = self.cpu_done = None
        self.max_held = 0
        self.max_rss = 0
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                c = counts(metrics(self.port))
                now, cpu = time.monotonic(), cpu_seconds(self.pid)
                self.max_held = max(self.max_held, c["outbox_held"])
                self.max_rss = max(self.max_rss, harness.rss_kib(self.pid))
                out = (c["sent_total"] - self.base["sent_total"]
                       + c["dead_total"] - self.base["dead_total"])
                if out >= self.want:
                    self.done_at, self.cpu_done = now, cpu
                    return
                self.stop.wait(POLL)
        except Exception as e:  # reported by the main thread
            self.error = e


def run(args, tmp):
    n = args.messages * args.members
    nginx = Nginx(os.path.join(tmp, "nginx"), make_config=receiver_config).start()
    srv = None
    try:
        url = "http://%s:%d%s" % (harness.HOST, nginx.port, HOOK_PATH)
        sets = GENEROUS + webhook_sets(url, "bench secret", max_in_flight=args.max_in_flight,
                                       max_pending=max(100000, 2 * n)) + args.set
        srv = harness.Server(sets, data_dir=os.path.join(tmp, "chatd")).start()
        writer, cid = asyncio.run(setup(srv, args.members))
        base = wait_quiet(srv.port, args.members, args.timeout)
        webhook0 = metrics(srv.port)
        poller = Poller(srv, base, n)
        stamps = {}
        cpu0 = cpu_seconds(srv.proc.pid)
        poller.start()
        try:
            acked = asyncio.run(asyncio.wait_for(
                pipelined_writes(srv, writer, cid, args.messages, window=args.window,
                                 tag="bench", stamps=stamps), args.timeout))
            poller.join(max(0.0, stamps["first_write"] + args.timeout - time.monotonic()))
        finally:
            poller.stop.set()
            poller.join(5)
        if poller.error is not None:
            raise poller.error
        time.sleep(0.5)  # anything past N would show now
        end = metrics(srv.port)
        c = counts(end)
        rss_end = harness.rss_kib(srv.proc.pid)
        srv.stop()
        srv = None
    finally:
        if srv is not None:
            srv._kill()
        nginx.stop()

    sent = c["sent_total"] - base["sent_total"]
    dead = c["dead_total"] - base["dead_total"]
    retried = c["retried_total"] - base["retried_total"]
    print("push_webhook: %d messages x %d offline members = %d notifications, "
          "max_in_flight %d, window %d, SQLite store, nginx answering 204"
          % (args.messages, args.members, n, args.max_in_flight, args.window))
    t0 = stamps["first_write"]
    if poller.done_at is None:
        print("  delivered    only %d of %d within %.0f s" % (sent, n, args.timeout))
    else:
        took = poller.done_at - t0
        print("  delivered    %d%s in %.2f s: %.0f notifications/s (first write to the last "
              "counted; /metrics every %d ms)" % (sent, " (and %d dead-lettered)" % dead if dead
                                                  else "", took, sent / took, POLL * 1000))
        cpu = poller.cpu_done - cpu0
        print("  chatd CPU    %.2f s in those %.2f s: %.2f cores, %.0f us per notification"
              % (cpu, took, cpu / took, cpu / max(1, sent) * 1e6))
    writes = stamps["last_ack"] - t0
    print("  writes       %d acked in %.2f s: %.0f acks/s while the pushes flowed%s"
          % (len(acked), writes, len(acked) / writes,
             "" if poller.done_at is None else
             "; the last push %.2f s after the last ack" % (poller.done_at - stamps["last_ack"])))
    print("  chatd RSS    at most %d KiB during the run, %d KiB at the end"
          % (max(poller.max_rss, rss_end), rss_end))
    answers = (end.get("chatd_push_webhook_seconds_count", 0)
               - webhook0.get("chatd_push_webhook_seconds_count", 0))
    answer_sum = (end.get("chatd_push_webhook_seconds_sum", 0)
                  - webhook0.get("chatd_push_webhook_seconds_sum", 0))
    print("  outbox       at most %d rows held (chatd_push_outbox_held); webhook answer "
          "%.2f ms on average over %d" % (poller.max_held, answer_sum / max(1, answers) * 1000,
                                          answers))
    ok = sent == n and dead == 0 and len(acked) == args.messages
    print("  check        sent %d of %d, dead %d, retried %d, acked %d of %d: %s"
          % (sent, n, dead, retried, len(acked), args.messages, "ok" if ok else "FAILED"))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description="Webhook throughput of the push plugin.",
                                 allow_abbrev=False)
    ap.add_argument("--messages", type=int, default=200, help="messages written [200]")
    ap.add_argument("--members", type=int, default=50, help="offline members [50]")
    ap.add_argument("--max-in-flight", type=int, default=64,
                    help="plugins.push.max_in_flight [64]")
    ap.add_argument("--window", type=int, default=16, help="writes unanswered at once [16]")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="the longest wait for the setup, the writes or the deliveries [120]")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                    help="one more chatd setting; repeatable; wins over ours")
    args = ap.parse_args()
    if args.messages < 1 or args.members < 1 or args.window < 1:
        sys.exit("push_webhook.py: --messages, --members and --window at least 1")
    if not available():
        print("push_webhook.py: nginx not installed: skipped")
        return 77
    for name in ("CHATD_E2E_CLUSTER", "CHATD_E2E_TLS", "CHATD_E2E_SETS"):
        os.environ.pop(name, None)  # one plain process on the embedded store
    with tempfile.TemporaryDirectory(prefix="chatd-bench-push-") as tmp:
        try:
            return run(args, tmp)
        except (RuntimeError, AssertionError, OSError, asyncio.TimeoutError) as e:
            print("push_webhook.py: %s: %s" % (type(e).__name__, e))
            return 1


if __name__ == "__main__":
    sys.exit(main())
