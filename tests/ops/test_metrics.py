#!/usr/bin/python3
"""Operations: /metrics in Prometheus conventions, read by a real parser
(python3-prometheus-client's text parser).

After some traffic (friends, a group channel, two members entered and one
offline, messages written, a WebSocket request of a type no handler has, a
failed login), /metrics:

* parses, and every family has a # TYPE (counter, gauge or histogram: none
  "unknown") and a non-empty # HELP, given once; the core's and the in-tree
  plugins' families have a help text of their own, not the generic one;
* counters end in _total, gauges do not, histograms of time are in _seconds
  (the commit batch size, a count of jobs, is the one histogram that is not);
* has what a dashboard needs: connections, WebSockets, sessions, online users
  and entered channels (gauges, with the values of the moment), WebSocket
  messages in and out by type, errors by code (WebSocket and HTTP), the job
  queue depth, the commit batch size histogram, request latencies, and the
  push counters;
* with Redis (skipped when redis-server is not installed), the cluster bus's
  lag histogram chatd_bus_lag_seconds, probed once a second.
"""

import asyncio
import http.client
import os
import re
import shutil
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))

import harness  # noqa: E402
from domain import ADDR_LIMIT_SET, DomainTestCase, async_test  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # reported by the tests (python3-prometheus-client)
    text_string_to_metric_families = None

GENERIC_HELP = re.compile(r"^(Counter|Gauge|Histogram) \w+ of (the plugin \S+|chatd)\.$")
COUNT_HISTOGRAMS = {"chatd_commit_batch_size"}


def scrape(port):
    conn = http.client.HTTPConnection(harness.HOST, port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read().decode("utf-8")
        if resp.status != 200:
            raise AssertionError("/metrics answered %d" % resp.status)
        return body
    finally:
        conn.close()


class Exposition:
    """The families of one scrape: {name: family}, and its samples by name and labels."""

    def __init__(self, case, text):
        if text_string_to_metric_families is None:
            case.fail("python3-prometheus-client is not installed")
        self.text = text
        self.families = {}
        for fam in text_string_to_metric_families(text):
            # the parser names a counter's family without its _total
            name = fam.name + "_total" if fam.type == "counter" else fam.name
            case.assertNotIn(name, self.families, "family %s given twice" % name)
            self.families[name] = fam

    def family(self, case, name, type_):
        fam = self.families.get(name)
        case.assertIsNotNone(fam, "no family %s in:\n%s" % (name, self.text[:3000]))
        case.assertEqual(fam.type, type_, name)
        return fam

    def value(self, case, name, type_, **labels):
        """The sample of family name with exactly these labels (0 when absent)."""
        fam = self.family(case, name, type_)
        sample = name if type_ in ("counter", "gauge") else name + "_count"
        for s in fam.samples:
            if s.name == sample and s.labels == labels:
                return s.value
        return 0


class MetricsTest(DomainTestCase):
    server_sets = [ADDR_LIMIT_SET]

    def check_conventions(self, expo):
        self.assertGreater(len(expo.families), 20)
        for name, fam in expo.families.items():
            with self.subTest(family=name):
                self.assertIn(fam.type, ("counter", "gauge", "histogram"), "no # TYPE")
                self.assertTrue(fam.documentation.strip(), "no # HELP")
                self.assertNotRegex(fam.documentation, GENERIC_HELP, "no help text of its own")
                self.assertTrue(name.startswith("chatd_"), name)
                if fam.type == "counter":
                    self.assertTrue(name.endswith("_total"))
                elif fam.type == "gauge":
                    self.assertFalse(name.endswith("_total"))
                else:
                    self.assertTrue(name.endswith("_seconds") or name in COUNT_HISTOGRAMS, name)
                for s in fam.samples:
                    self.assertTrue(s.name.startswith(fam.name), (s.name, name))
        # the raw text: HELP and TYPE once per family, each right before its samples
        heads = re.findall(r"^# (HELP|TYPE) (\S+)", expo.text, re.MULTILINE)
        self.assertEqual(len(heads), 2 * len(expo.families))
        self.assertEqual(len({(k, n) for k, n in heads}), len(heads))

    @async_test
    async def test_exposition_after_traffic(self):
        owner, member, away = self.users(3, "mx")
        cid = await self.channel_with(owner, member, away)
        a = await self.connect(owner)
        b = await self.connect(member)
        await self.enter(a, cid)
        await self.enter(b, cid)
        for i in range(3):
            await self.write(a, cid, "counted %d" % i)
        await b.expect("NOTIFY_MESSAGE", pred=lambda m: m.get("content") == "counted 2")
        resp = await a.request("NO_SUCH_REQUEST", {})
        self.assertErr(resp, "BAD_REQUEST")
        status, _, _ = self.server.login_response(owner.username, "not the password")
        self.assertEqual(status, 401)
        await self.wait_push(away, "NOTIFY_MESSAGE", count=3)

        # gauges of the moment: two WebSockets (the setup's are closing), both
        # entered in one channel
        want = {"chatd_ws_connections": 2, "chatd_online_users": 2,
                "chatd_entered_channels": 1, "chatd_entered_clients": 2}
        deadline = time.monotonic() + 5
        while True:
            expo = Exposition(self, scrape(self.server.port))
            got = {k: expo.value(self, k, "gauge") for k in want}
            if got == want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        self.assertEqual(got, want)
        self.check_conventions(expo)
        self.assertGreaterEqual(expo.value(self, "chatd_connections", "gauge"), 2)
        self.assertGreaterEqual(expo.value(self, "chatd_sessions", "gauge"), 3)
        self.assertGreaterEqual(expo.value(self, "chatd_job_queue_depth", "gauge"), 0)
        # messages by type, in and out
        inn = "chatd_ws_messages_in_total"
        self.assertEqual(expo.value(self, inn, "counter", type="WRITE_MESSAGE"), 3)
        self.assertEqual(expo.value(self, inn, "counter", type="ENTER_REQUEST"), 2)
        self.assertGreaterEqual(expo.value(self, inn, "counter", type="other"), 1)
        self.assertEqual(expo.value(self, inn, "counter"), 0, "an unlabelled series")
        out = "chatd_ws_messages_out_total"
        self.assertGreaterEqual(expo.value(self, out, "counter", type="NOTIFY_MESSAGE"), 3)
        self.assertGreaterEqual(expo.value(self, out, "counter", type="ERROR"), 1)
        self.assertEqual(expo.value(self, out, "counter", type="ENTER_RESPONSE"), 2)
        # errors by code, every code there from the start
        err = "chatd_ws_errors_total"
        self.assertGreaterEqual(expo.value(self, err, "counter", code="BAD_REQUEST"), 1)
        codes = {s.labels.get("code") for s in expo.family(self, err, "counter").samples}
        self.assertLessEqual({"BAD_REQUEST", "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND",
                              "CONFLICT", "LIMIT_EXCEEDED", "RATE_LIMITED", "UNAVAILABLE",
                              "INTERNAL"}, codes)
        self.assertGreaterEqual(expo.value(self, "chatd_http_errors_total", "counter",
                                           code="UNAUTHORIZED"), 1)
        # storage, latency, push
        self.assertGreaterEqual(expo.value(self, "chatd_commit_batch_size", "histogram"), 3)
        for name in ("chatd_ws_request_seconds", "chatd_http_request_seconds",
                     "chatd_store_write_seconds", "chatd_store_write_wait_seconds"):
            self.assertGreater(expo.value(self, name, "histogram"), 0, name)
        self.assertGreaterEqual(expo.value(self, "chatd_push_queued_total", "counter"), 3)
        self.assertGreaterEqual(expo.value(self, "chatd_push_sent_total", "counter"), 3)
        self.assertEqual(expo.value(self, "chatd_messages_written_total", "counter"), 3)
        await self.disconnect(a, b)


class BusLagTest(unittest.TestCase):
    def test_bus_lag_histogram(self):
        if not shutil.which("redis-server"):
            self.skipTest("redis-server not installed")
        from backends import Redis
        redis = Redis().start()
        self.addCleanup(redis.cleanup)
        srv = harness.Server(["redis.host=\"%s\"" % harness.HOST, "redis.port=%d" % redis.port])
        with srv:
            deadline = time.monotonic() + 10
            while True:
                expo = Exposition(self, scrape(srv.port))
                fam = expo.families.get("chatd_bus_lag_seconds")
                if fam and expo.value(self, "chatd_bus_lag_seconds", "histogram") >= 2:
                    break
                self.assertLess(time.monotonic(), deadline, "no bus lag samples:\n" + expo.text)
                time.sleep(0.25)
            self.assertEqual(fam.type, "histogram")
            total = [s.value for s in fam.samples if s.name == "chatd_bus_lag_seconds_sum"]
            self.assertTrue(total and 0 < total[0] < 5, total)


if __name__ == "__main__":
    unittest.main(verbosity=2)
