#!/usr/bin/python3
"""End-to-end tests of SIGHUP: the configuration file is read again; what can
change live takes effect without dropping a connection, what needs a restart
is named in one log line, and a broken file changes nothing."""

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import ServerTestCase, auth_headers, chatd_conf, run, ws_connect  # noqa: E402

REGISTER = "/api/v1/auth/register"


class FileServer(harness.Server):
    """A Server on a config file of its own, which the test rewrites."""

    def __init__(self, conf, extra_sets=None):
        super().__init__(extra_sets)
        self.conf = conf

    def args(self):
        argv = super().args()
        argv[argv.index("-c") + 1] = self.conf
        return argv


class ReloadTests(ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-reload-")
        cls.conf = os.path.join(cls.tmp, "chatd.conf")
        with open(chatd_conf()) as f:
            cls.base = f.read()
        cls.write_conf("")
        cls.server = FileServer(cls.conf, ["plugins.auth.login_max_failures_per_addr=1000"])
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def write_conf(cls, extra):
        """The shipped config with each "group = key = value;" line of extra set
        in it (replacing the key's line in the group, or added to it)."""
        text = cls.base
        for line in extra.strip().splitlines():
            group, key, value = (part.strip() for part in line.rstrip(";").split("=", 2))
            start = text.find("\n%s = {" % group)
            if start < 0:
                text += "\n%s = { %s = %s; };\n" % (group, key, value)
                continue
            end = text.index("\n};", start)
            block = text[start:end]
            new_line = "  %s = %s;" % (key, value)
            replaced = re.sub(r"(?m)^\s*%s\s*=.*$" % re.escape(key), new_line, block, count=1)
            if replaced == block:
                replaced = block.replace("%s = {" % group, "%s = {\n%s" % (group, new_line), 1)
            text = text[:start] + replaced + text[end:]
        with open(cls.conf, "w") as f:
            f.write(text)

    def hup(self):
        """SIGHUP, and the reload's log line."""
        before = self.server.log_text().count("reload:")
        self.server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            lines = [ln for ln in self.server.log_text().splitlines() if "reload:" in ln]
            if len(lines) > before:
                return lines[-1]
            time.sleep(0.02)
        self.fail("no reload line in the log")

    def big_register(self, size):
        body = json.dumps({"username": "x", "password": "p" * size})
        return self.server.request("POST", REGISTER, body=body.encode())[0]

    def test_live_settings_apply_without_dropping_connections(self):
        user = self.server.new_user("rl")

        async def go():
            import asyncio
            loop = asyncio.get_running_loop()
            ws = await ws_connect(self.server, user.token)
            try:
                self.assertNotEqual(await loop.run_in_executor(None, self.big_register, 3000),
                                    413)
                self.write_conf("http = max_body_size = 1024;\nws = rate_burst = 7;")
                line = await loop.run_in_executor(None, self.hup)
                self.assertIn("applied", line)
                self.assertIn("http.max_body_size", line)
                self.assertIn("ws.rate_burst", line)
                self.assertNotIn("needs a restart", line)
                # the new limit holds for new requests
                self.assertEqual(await loop.run_in_executor(None, self.big_register, 3000), 413)
                # and the WebSocket opened before the reload still answers
                await ws.send(json.dumps({"type": "FETCH_USER_INVITECODE_REQUEST",
                                          "requestId": "r"}))
                resp = json.loads(await ws.recv())
                self.assertEqual(resp.get("inviteCode"), user.invite_code)
            finally:
                await ws.close()
        try:
            run(go())
        finally:
            self.write_conf("")
            self.hup()

    def test_settings_that_need_a_restart_are_named(self):
        self.write_conf("storage = readers = 3;")
        try:
            line = self.hup()
            self.assertIn("needs a restart to take effect: storage.readers", line)
        finally:
            self.write_conf("")
            self.hup()

    def test_admin_listen_needs_a_restart(self):
        self.write_conf('admin = listen = "127.0.0.1:0";')
        try:
            line = self.hup()
            self.assertIn("needs a restart to take effect: admin.listen", line)
            self.assertNotIn("(admin", self.server.log_text())  # no listener was started
        finally:
            self.write_conf("")
            self.hup()

    def test_a_broken_file_changes_nothing(self):
        self.write_conf("http = max_body_size = 1024;")
        with open(self.conf, "a") as f:
            f.write("\nthis is not a setting\n")
        try:
            line = self.hup()
            self.assertIn("nothing changed", line)
            self.assertIn(self.conf, line)
            self.assertNotEqual(self.big_register(3000), 413, "a broken file changed a limit")
            self.assertEqual(self.server.request("GET", "/healthz")[0], 200)
        finally:
            self.write_conf("")
            self.hup()

    def test_a_bad_plugin_setting_changes_nothing(self):
        self.write_conf("http = max_body_size = 1024;")
        with open(self.conf) as f:
            text = f.read().replace('name = "messaging";', 'name = "messaging"; max_content_byts = 1;')
        with open(self.conf, "w") as f:
            f.write(text)
        try:
            line = self.hup()
            self.assertIn("plugins.messaging.max_content_byts", line)
            self.assertIn("nothing changed", line)
            self.assertNotEqual(self.big_register(3000), 413)
        finally:
            self.write_conf("")
            self.hup()

    def test_log_level_follows(self):
        self.write_conf('log = level = "debug";')
        try:
            line = self.hup()
            self.assertIn("log.level", line)
            self.server.request("GET", "/healthz")
        finally:
            self.write_conf("")
            self.hup()


if __name__ == "__main__":
    unittest.main()
