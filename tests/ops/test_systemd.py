#!/usr/bin/python3
"""Operations: chatd as a systemd service.

* The unit meson generates (contrib/systemd/chatd.service.in) has the keys a
  hardened Type=notify service needs, the installed paths of this build in
  ExecStart, a LimitNOFILE above server.max_connections' default (read from
  ``chatd --help``), and is installed to systemd's unit directory.
* ``systemd-analyze verify`` accepts it without a word (a copy whose ExecStart
  names the built binary, since the installed one need not exist here).
  Skipped when systemd-analyze is absent: the process exits 77 if that is all
  that was skipped.
* sd_notify: chatd started with NOTIFY_SOCKET on a datagram socket the test
  binds sends READY=1 once, when /healthz already answers; RELOADING=1 and
  then READY=1 for a SIGHUP reload; and STOPPING=1 when SIGTERM starts the
  drain, before it exits 0. Skipped in a build without
  libsystemd (CHATD_HAVE_SYSTEMD=0), where chatd tells nothing.

Environment (set by tests/meson.build): CHATD_BIN, CHATD_CONF, CHATD_UNIT (the
generated unit), CHATD_BINDIR, CHATD_CONF_FILE (installed paths),
CHATD_BUILD_ROOT, CHATD_PREFIX, CHATD_SYSTEMD_UNIT (true/false: installed),
CHATD_SYSTEMD_UNIT_DIR (the option, "" for the default), CHATD_HAVE_SYSTEMD.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import harness  # noqa: E402

START_TIMEOUT = 20.0


def parse_unit(text):
    """{section: {key: [values]}} of a unit file (keys may repeat)."""
    out, section = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def schema_default(name):
    """The default of a setting as ``chatd --help`` prints it."""
    out = subprocess.run([harness.chatd_bin(), "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == name:
            return parts[1]
    raise AssertionError("%s not in chatd --help:\n%s" % (name, out))


class UnitFileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.environ["CHATD_UNIT"], encoding="utf-8") as f:
            cls.text = f.read()
        cls.unit = parse_unit(cls.text)
        cls.service = cls.unit.get("Service", {})

    def one(self, key):
        values = self.service.get(key)
        self.assertTrue(values, "[Service] has no %s=" % key)
        self.assertEqual(len(values), 1, "%s= given %d times" % (key, len(values)))
        return values[0]

    def test_notify_with_reload_and_restart(self):
        self.assertEqual(self.one("Type"), "notify")
        self.assertEqual(self.one("ExecReload"), "/bin/kill -HUP $MAINPID")
        self.assertEqual(self.one("Restart"), "on-failure")
        self.assertIn("multi-user.target", self.unit.get("Install", {}).get("WantedBy", []))

    def test_exec_start_uses_the_installed_paths(self):
        argv = self.one("ExecStart").split()
        self.assertEqual(argv[0], os.path.join(os.environ["CHATD_BINDIR"], "chatd"))
        self.assertIn("-c", argv)
        self.assertEqual(argv[argv.index("-c") + 1], os.environ["CHATD_CONF_FILE"])
        self.assertIn("--data-dir", argv)
        self.assertEqual(argv[argv.index("--data-dir") + 1], "/var/lib/chatd")
        self.assertNotIn("@", self.text, "a placeholder left unreplaced")

    def test_own_user_and_directories(self):
        dynamic = self.service.get("DynamicUser", ["no"])[-1]
        user = self.service.get("User", [""])[-1]
        self.assertTrue(dynamic == "yes" or user not in ("", "root"),
                        "neither DynamicUser=yes nor a dedicated User=")
        self.assertEqual(self.one("StateDirectory"), "chatd")
        self.assertEqual(self.one("ConfigurationDirectory"), "chatd")

    def test_sandboxing(self):
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                           ("ProtectHome", "yes"), ("PrivateTmp", "yes")):
            self.assertEqual(self.one(key), value, key)

    def test_limit_nofile_covers_max_connections(self):
        limit = int(self.one("LimitNOFILE"))
        max_conn = int(schema_default("server.max_connections"))
        self.assertGreaterEqual(limit - max_conn, 1024,
                                "LimitNOFILE=%d leaves fewer than 1024 descriptors beyond "
                                "server.max_connections=%d" % (limit, max_conn))

    def expected_unit_dir(self):
        configured = os.environ.get("CHATD_SYSTEMD_UNIT_DIR", "")
        if configured:
            return configured
        if shutil.which("pkg-config"):
            r = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
                               capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.strip():
                return r.stdout.strip()
        return os.path.join(os.environ["CHATD_PREFIX"], "lib", "systemd", "system")

    def test_installed_to_the_unit_dir(self):
        path = os.path.join(os.environ["CHATD_BUILD_ROOT"], "meson-info", "intro-installed.json")
        with open(path) as f:
            installed = json.load(f)
        where = installed.get(os.environ["CHATD_UNIT"])
        if os.environ.get("CHATD_SYSTEMD_UNIT") == "false":
            self.assertIsNone(where, "installed with -Dsystemd_unit=false")
            return
        self.assertEqual(where, os.path.join(self.expected_unit_dir(), "chatd.service"))

    def test_systemd_analyze_verify(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze not installed")
        d = tempfile.mkdtemp(prefix="chatd-unit-")
        try:
            # The installed binary need not exist here: verify names the built one.
            installed = os.path.join(os.environ["CHATD_BINDIR"], "chatd")
            copy = os.path.join(d, "chatd.service")
            with open(copy, "w", encoding="utf-8") as f:
                f.write(self.text.replace("ExecStart=%s " % installed,
                                          "ExecStart=%s " % harness.chatd_bin()))
            r = subprocess.run([analyze, "verify", "--man=no", copy], capture_output=True,
                               text=True, timeout=60)
            said = (r.stdout + r.stderr).strip()
            self.assertEqual((r.returncode, said), (0, ""), "systemd-analyze verify: " + said)
        finally:
            shutil.rmtree(d, ignore_errors=True)


class NotifyTest(unittest.TestCase):
    def setUp(self):
        if os.environ.get("CHATD_HAVE_SYSTEMD", "1") != "1":
            self.skipTest("built without libsystemd: chatd sends no notifications")
        self.dir = tempfile.mkdtemp(prefix="chatd-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock_path = os.path.join(self.dir, "notify")
        self.sock.bind(self.sock_path)
        self.proc = None
        self.log = None

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log:
            self.log.close()
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        with open(os.path.join(self.dir, "chatd.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def next_notification(self, timeout):
        """The next datagram's text, or None when the time runs out or chatd exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(0.1)
            try:
                return self.sock.recv(4096).decode()
            except socket.timeout:
                pass
            if self.proc.poll() is not None:
                self.sock.settimeout(0)
                try:
                    return self.sock.recv(4096).decode()
                except BlockingIOError:
                    return None
        return None

    def healthz(self, port):
        conn = http.client.HTTPConnection(harness.HOST, port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status
        finally:
            conn.close()

    def test_ready_then_stopping(self):
        data_dir = os.path.join(self.dir, "data")
        os.mkdir(data_dir)
        argv = harness.Server(data_dir=data_dir).args()
        env = dict(os.environ, NOTIFY_SOCKET=self.sock_path)
        self.log = open(os.path.join(self.dir, "chatd.log"), "wb")
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, cwd=data_dir)
        note = self.next_notification(START_TIMEOUT)
        self.assertIsNotNone(note, "no notification within %.0f s; log:\n%s"
                             % (START_TIMEOUT, self.log_text()))
        self.assertIn("READY=1", note.split("\n"), "first notification: %r" % note)
        # Ready means serving: the port is known and /healthz answers now.
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log_text())
        self.assertIsNotNone(m, "READY=1 before the listener: " + self.log_text())
        self.assertEqual(self.healthz(int(m.group(1))), 200)
        self.assertIsNone(self.next_notification(0.3), "a second notification while serving")

        # a reload is bracketed: RELOADING=1, then READY=1 once it is done
        self.proc.send_signal(signal.SIGHUP)
        note = self.next_notification(harness.STOP_TIMEOUT)
        self.assertIn("RELOADING=1", (note or "").split("\n"), "after SIGHUP: %r" % note)
        note = self.next_notification(harness.STOP_TIMEOUT)
        self.assertIn("READY=1", (note or "").split("\n"), "after the reload: %r" % note)
        self.assertIn("reload: ", self.log_text())
        self.assertEqual(self.healthz(int(m.group(1))), 200)

        self.proc.send_signal(signal.SIGTERM)
        note = self.next_notification(harness.STOP_TIMEOUT)
        self.assertIsNotNone(note, "no notification after SIGTERM; log:\n" + self.log_text())
        self.assertIn("STOPPING=1", note.split("\n"), "after SIGTERM: %r" % note)
        self.assertEqual(self.proc.wait(timeout=harness.STOP_TIMEOUT), 0, self.log_text())
        self.assertNotIn("READY=1", (self.next_notification(0.2) or "").split("\n"))


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    if not result.wasSuccessful():
        sys.exit(1)
    no_analyze = shutil.which("systemd-analyze") is None
    sys.exit(77 if no_analyze and result.skipped else 0)
