#!/usr/bin/python3
"""Operations: log.format = "json".

A chatd at log level debug with the standard plugins and the probe plugin
(tests/plugins/probe.c) serves some traffic: registrations, logins, failed
logins with a username full of quotes, newlines and control characters,
WebSocket requests good and bad, and POST /probe/internal (an INTERNAL error,
logged with its reference) with an X-Request-Id holding a quote and a byte
that is not UTF-8; then SIGTERM. Afterwards:

* the log is valid UTF-8, and every line is one JSON object with string
  members time (ISO 8601, UTC, milliseconds), level (error, warn, info,
  debug), module and message, and at most "conn" (a positive integer) and
  "request" (a string) besides;
* the failed login's line carries the username exactly, quote, newline and
  control characters included (decoded from their escapes);
* the INTERNAL error's line has the connection's id and the X-Request-Id,
  with U+FFFD for the byte that was not UTF-8;
* the same run with log.format = "text" writes no line that parses as JSON;
* log.format changes on a SIGHUP reload: text lines before, JSON after.
"""

import http.client
import json
import os
import re
import shutil
import signal
import sys
import time
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import harness  # noqa: E402
from harness import run, ws_connect, ws_request, ws_send, ws_recv  # noqa: E402

BUILD = os.environ.get("CHATD_BUILD_ROOT", os.path.join(harness.REPO_ROOT, "build"))
PROBE = os.path.join(BUILD, "tests", "plugins", "probe.so")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"error", "warn", "info", "debug"}
ODD_NAME = 'odd "name"\nnext line\t\x01\x1f end'
ODD_REQUEST = b'req "7" \xff end'


class ProbeServer(harness.Server):
    """A Server whose config is etc/chatd.conf with the probe plugin added."""

    def __init__(self, conf_dir, extra_sets, log_format=None):
        super().__init__(extra_sets, data_dir=os.path.join(conf_dir, "data"))
        with open(harness.chatd_conf(), encoding="utf-8") as f:
            self.text = f.read()
        entry = '  { name = "probe"; path = "%s"; },\n' % PROBE
        self.text = re.sub(r"(?m)^plugins = \(\n", lambda m: m.group(0) + entry, self.text,
                           count=1)
        self.conf = os.path.join(conf_dir, "chatd-probe.conf")
        self.write_conf(log_format)

    def write_conf(self, log_format):
        """The config file, with log.format set in it (None: not set)."""
        text = self.text
        if log_format:
            text = re.sub(r"(?m)^log = \{\n", lambda m: '%s  format = "%s";\n'
                          % (m.group(0), log_format), text, count=1)
            assert 'format = "%s"' % log_format in text
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(text)

    def args(self):
        argv = super().args()
        argv[argv.index("-c") + 1] = self.conf
        return argv


class JsonLogTest(unittest.TestCase):
    def serve_traffic(self, log_format):
        """A full run in log_format: the log's bytes, and the probe's answer."""
        tmp = tempfile.mkdtemp(prefix="chatd-ops-log-")
        self.addCleanup(shutil.rmtree, tmp, True)
        srv = ProbeServer(tmp, ['log.level="debug"', 'log.format="%s"' % log_format,
                                "plugins.auth.login_max_failures_per_addr=1000"])
        with srv:
            users = [srv.new_user("lg") for _ in range(2)]
            status, _, _ = srv.login_response(ODD_NAME, "wrong password")
            self.assertEqual(status, 401)
            status, _, _ = srv.login_response(users[0].username, "wrong password")
            self.assertEqual(status, 401)

            async def ws_traffic():
                ws = await ws_connect(srv, users[0].token)
                await ws_request(ws, {"type": "FETCH_USER_INVITECODE_REQUEST",
                                      "requestId": 'a "quoted"\nid'})
                await ws_send(ws, {"type": "NO_SUCH_TYPE", "requestId": "x"})
                await ws_recv(ws)
                await ws.send('{"type": "broken')
                await ws_recv(ws)
                await ws.close()
            run(ws_traffic())

            conn = http.client.HTTPConnection(harness.HOST, srv.port, timeout=10)
            conn.putrequest("POST", "/probe/internal")
            conn.putheader("X-Request-Id", ODD_REQUEST)
            conn.putheader("Content-Length", "0")
            conn.endheaders()
            resp = conn.getresponse()
            answer = (resp.status, json.loads(resp.read()))
            conn.close()
        with open(srv.log_path, "rb") as f:
            return f.read(), answer

    def test_every_line_is_a_json_object(self):
        data, (status, body) = self.serve_traffic("json")
        self.assertEqual(status, 500, body)
        text = data.decode("utf-8")  # strict: no byte that is not UTF-8
        self.assertTrue(text.endswith("\n"), "the last line is not whole")
        lines = text.split("\n")[:-1]
        self.assertGreater(len(lines), 10)
        objs = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError as e:
                self.fail("not JSON (%s): %r" % (e, line))
            self.assertIsInstance(obj, dict, line)
            for key in ("time", "level", "module", "message"):
                self.assertIsInstance(obj.get(key), str, "%s in %r" % (key, line))
            self.assertRegex(obj["time"], TIME_RE)
            self.assertIn(obj["level"], LEVELS, line)
            self.assertLessEqual(set(obj) - {"time", "level", "module", "message"},
                                 {"conn", "request"}, line)
            if "conn" in obj:
                self.assertIsInstance(obj["conn"], int, line)
                self.assertGreater(obj["conn"], 0, line)
            if "request" in obj:
                self.assertIsInstance(obj["request"], str, line)
            objs.append(obj)

        self.assertIn({"module": "core", "message": "ready"},
                      [{"module": o["module"], "message": o["message"]} for o in objs])
        failed = [o for o in objs if o["module"] == "auth" and "login failed" in o["message"]]
        self.assertTrue(any(("'%s'" % ODD_NAME) in o["message"] for o in failed),
                        "the odd username is not in a login failure: %r" % failed)
        ref = re.search(r"ref ([0-9a-f]{8})", body["message"]).group(1)
        internal = [o for o in objs if o["message"].startswith("ref %s:" % ref)]
        self.assertEqual(len(internal), 1, "no line for ref %s" % ref)
        self.assertEqual(internal[0]["level"], "error")
        self.assertIn("probe detail for the log", internal[0]["message"])
        self.assertEqual(internal[0].get("request"), ODD_REQUEST.decode("utf-8", "replace"))
        self.assertIsInstance(internal[0].get("conn"), int)

    def test_format_changes_on_reload(self):
        tmp = tempfile.mkdtemp(prefix="chatd-ops-log-")
        self.addCleanup(shutil.rmtree, tmp, True)
        srv = ProbeServer(tmp, [], log_format="text")
        with srv:
            srv.write_conf("json")
            srv.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while "applied log.format" not in srv.log_text():
                self.assertLess(time.monotonic(), deadline, srv.log_text())
                time.sleep(0.05)
            srv.new_user("rl")  # something logged after the reload
        lines = srv.log_text().splitlines()
        at = next(i for i, line in enumerate(lines) if "applied log.format" in line)
        self.assertFalse(any(line.startswith("{") for line in lines[:at]), lines[:at])
        after = [json.loads(line) for line in lines[at:]]  # every line after is JSON
        self.assertIn("reload: applied log.format", after[0]["message"])
        self.assertTrue(any(o["message"] == "stopped" for o in after), after)

    def test_text_format_is_not_json(self):
        data, _ = self.serve_traffic("text")
        lines = data.decode("utf-8", "replace").splitlines()
        self.assertTrue(lines)
        self.assertTrue(all(not line.startswith("{") for line in lines), lines[:3])
        ref_lines = [line for line in lines if " ref " in line and "probe detail" in line]
        self.assertEqual(len(ref_lines), 1, lines)
        self.assertRegex(ref_lines[0], r" error core: conn \d+ request req \"7\" .* end: ref ")


if __name__ == "__main__":
    unittest.main(verbosity=2)
