#!/usr/bin/python3
"""Plugin ABI tests: an out-of-tree plugin built against the installed header
and chatd-plugin.pc, purpose-built test plugins, refusal of another ABI major
and of a missing file, and the configuration checks of start-up."""

import asyncio
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402
from harness import run, ws_connect, ws_request, ws_expect_silence  # noqa: E402

BUILD = os.environ.get("CHATD_BUILD_ROOT", os.path.join(harness.REPO_ROOT, "build"))
SOURCE = harness.REPO_ROOT
TEST_PLUGINS = os.path.join(BUILD, "tests", "plugins")


def sh(cmd, env=None, cwd=None):
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode,
                                                      p.stdout.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


class ConfServer(harness.Server):
    """A Server with its own binary and config file."""

    def __init__(self, binary, conf, extra_sets=None, data_dir=None):
        super().__init__(extra_sets, data_dir)
        self.binary, self.conf = binary, conf

    def args(self):
        argv = super().args()
        argv[0] = self.binary
        argv[2] = self.conf
        return argv


def write_conf(dirname, plugins):
    path = os.path.join(dirname, "chatd-%d.conf" % len(os.listdir(dirname)))
    with open(path, "w") as f:
        f.write("plugins = (\n%s\n);\n" % ",\n".join(plugins))
    return path


AUTH = '{ name = "auth"; backend = "sqlite"; login_max_failures_per_addr = 1000; }'
# What it takes to write messages, with generous write limits.
MESSAGE_PLUGINS = [
    AUTH,
    '{ name = "connection"; backend = "sqlite"; }',
    '{ name = "channel"; backend = "sqlite"; }',
    '{ name = "messaging"; backend = "sqlite"; max_writes_per_second = 100000;'
    ' write_burst = 100000; }',
]


def start_fails(binary, conf, sets=(), listen="127.0.0.1:0"):
    """Start chatd expecting it to stop during start-up; returns (code, output)."""
    data = tempfile.mkdtemp(prefix="chatd-plug-")
    argv = [binary, "-c", conf, "--listen", listen, "--data-dir", data]
    for s in sets:
        argv += ["--set", s]
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return p.returncode, p.stdout.decode(errors="replace")


def build_example(tmp, dest, pc, name):
    """Copy contrib/plugins/<name> out of the tree and build it with its Makefile against
    the install under dest (pc: its chatd-plugin.pc); returns the path of <name>.so."""
    src = os.path.join(tmp, name)
    shutil.copytree(os.path.join(SOURCE, "contrib", "plugins", name), src)
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pc))
    with open(pc) as f:
        prefix = [l.split("=", 1)[1].strip() for l in f if l.startswith("prefix=")][0]
    # The .pc file sits under DESTDIR: point its prefix there.
    sh(["make", "-s", "CFLAGS=-O2 -g -Wall -Wextra -Werror",
        "PKG_CONFIG=pkg-config --define-variable=prefix=%s%s" % (dest, prefix)],
       env=env, cwd=src)
    so = os.path.join(src, name + ".so")
    if not os.path.isfile(so):
        raise AssertionError("make in contrib/plugins/%s made no %s.so" % (name, name))
    return so


class Installed:
    """chatd installed by meson into tmp/root (a DESTDIR): its binary, plugin folder,
    SQL, config, chatd-plugin.pc, and the settings that run it from there."""

    def __init__(self, tmp):
        self.dest = os.path.join(tmp, "root")
        sh(["meson", "install", "-C", BUILD, "--destdir", self.dest, "--no-rebuild", "--quiet"])
        found = {}
        for what, pattern in (("chatd-plugin.pc", "**/pkgconfig/chatd-plugin.pc"),
                              ("auth.so", "**/chatd/auth.so"), ("bin/chatd", "**/bin/chatd"),
                              ("sql", "**/chatd/sql"), ("plugin.h", "**/include/chatd/plugin.h"),
                              ("chatd.conf", "**/chatd/chatd.conf")):
            found[what] = glob.glob(os.path.join(self.dest, pattern), recursive=True)
            if len(found[what]) != 1:
                raise AssertionError("install did not put exactly one %s: %r"
                                     % (what, found[what]))
        self.pc = found["chatd-plugin.pc"][0]
        self.binary, self.sql_dir = found["bin/chatd"][0], found["sql"][0]
        self.plugin_dir = os.path.dirname(found["auth.so"][0])
        self.conf = found["chatd.conf"][0]
        self.sets = ["server.plugin_dir=" + self.plugin_dir, "server.sql_dir=" + self.sql_dir]

    def build(self, tmp, name):
        """contrib/plugins/<name> built out of the tree against this install."""
        return build_example(tmp, self.dest, self.pc, name)


class InstalledPluginTests(unittest.TestCase):
    """meson install into a DESTDIR, then build the examples of contrib/plugins/ against
    it, each with its own Makefile, out of the tree."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-install-")
        inst = Installed(cls.tmp)
        cls.binary, cls.plugin_dir, cls.sql_dir = inst.binary, inst.plugin_dir, inst.sql_dir
        cls.installed_conf = inst.conf
        cls.echo = inst.build(cls.tmp, "echo")
        cls.sets = list(inst.sets)
        # the installed config's web root, moved under DESTDIR like the rest
        with open(cls.installed_conf) as f:
            m = re.search(r'web_root = "([^"]+)"', f.read())
        cls.web_root = inst.dest + m.group(1) if m else None
        if cls.web_root:
            cls.sets.append('http.web_root="%s"' % cls.web_root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_installed_config_serves_the_web_client(self):
        if not os.path.exists(os.path.join(SOURCE, "contrib", "web", "dist", "index.html")):
            raise unittest.SkipTest("the web client was not built before meson setup")
        self.assertIsNotNone(self.web_root, "the installed chatd.conf sets no http.web_root")
        self.assertTrue(self.web_root.endswith(os.path.join("share", "chatd", "web")),
                        self.web_root)
        self.assertTrue(os.path.isfile(os.path.join(self.web_root, "index.html")))
        self.assertTrue(glob.glob(os.path.join(self.web_root, "assets", "*.js")))
        # the installed binary on the installed config answers / with the page
        with ConfServer(self.binary, self.installed_conf, self.sets) as srv:
            status, headers, body = srv.request("GET", "/")
            self.assertEqual(status, 200)
            self.assertEqual(headers.get("Content-Type"), "text/html; charset=utf-8")
            self.assertIn(b'<div id="app">', body)

    def test_out_of_tree_plugin_settings_are_checked(self):
        conf = write_conf(self.tmp, [AUTH, '{ name = "echo"; path = "%s"; prefx = "x"; }'
                                     % self.echo])
        code, out = start_fails(self.binary, conf, self.sets)
        self.assertNotEqual(code, 0)
        self.assertIn("setting 'plugins.echo.prefx': unknown setting (plugin echo takes: prefix)",
                      out)

    def test_example_exports_only_its_entry(self):
        out = sh(["nm", "-D", "--defined-only", self.echo])
        names = [line.split()[-1] for line in out.splitlines() if line.strip()]
        self.assertEqual([n for n in names if not n.startswith("_")], ["chatd_plugin_entry"])

    def test_out_of_tree_plugin_answers_its_message_type(self):
        conf = write_conf(self.tmp, [AUTH, '{ name = "echo"; path = "%s"; prefix = "echo: "; }'
                                     % self.echo])
        with ConfServer(self.binary, conf, self.sets) as srv:
            self.assertIn("echo plugin ready", srv.log_text())
            user = srv.new_user("oot")

            async def go():
                ws = await ws_connect(srv, user.token)
                resp = await ws_request(ws, {"type": "ECHO_REQUEST", "text": "hi",
                                             "requestId": "e1"})
                self.assertEqual(resp, {"type": "ECHO_RESPONSE", "text": "echo: hi",
                                        "from": user.username, "requestId": "e1"})
                bad = await ws_request(ws, {"type": "ECHO_REQUEST", "text": 5})
                self.assertEqual((bad["type"], bad["code"]), ("ERROR", "BAD_REQUEST"))
                # the installed auth plugin serves its WebSocket type too
                inv = await ws_request(ws, {"type": "FETCH_USER_INVITECODE_REQUEST"})
                self.assertEqual(inv["inviteCode"], user.invite_code)
                await ws.close()
            run(go())
            status, _, body = srv.request("GET", "/metrics")
            self.assertIn(b"chatd_echo_messages_total 1", body)

    def test_installed_default_config_is_valid(self):
        out = sh([self.binary, "--check-config", "-c", self.installed_conf] +
                 sum([["--set", s] for s in self.sets], []))
        self.assertIn("configuration is valid", out)


class TestPluginTests(unittest.TestCase):
    """The in-tree probe plugin exercises PENDING, DECLINED, CPU jobs and events."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-probe-")
        conf = write_conf(cls.tmp, [AUTH, '{ name = "probe"; path = "%s"; }'
                                    % os.path.join(TEST_PLUGINS, "probe.so")])
        cls.srv = ConfServer(harness.chatd_bin(), conf).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_pending_reply_from_another_thread(self):
        user = self.srv.new_user("pend")

        async def go():
            ws = await ws_connect(self.srv, user.token)
            # two pending requests complete out of order, each with its own requestId
            await harness.ws_send(ws, {"type": "PROBE_PENDING", "delayMs": 400,
                                       "requestId": "slow"})
            await harness.ws_send(ws, {"type": "PROBE_PENDING", "delayMs": 10,
                                       "requestId": "fast"})
            first = await harness.ws_recv(ws)
            second = await harness.ws_recv(ws)
            self.assertEqual([first["requestId"], second["requestId"]], ["fast", "slow"])
            self.assertEqual(first["type"], "PROBE_PENDING_RESPONSE")
            await ws.close()
        run(go())

    def test_pending_reply_after_client_left_goes_nowhere(self):
        user = self.srv.new_user("gone")

        async def go():
            ws = await ws_connect(self.srv, user.token)
            await harness.ws_send(ws, {"type": "PROBE_PENDING", "delayMs": 300})
            await ws.close()
        run(go())
        import time
        time.sleep(0.6)
        self.assertEqual(self.srv.healthz()[0], 200)

    def test_declined_everywhere_is_unknown_type(self):
        user = self.srv.new_user("decl")

        async def go():
            ws = await ws_connect(self.srv, user.token)
            resp = await ws_request(ws, {"type": "PROBE_DECLINE", "requestId": "d"})
            self.assertEqual((resp["type"], resp["code"], resp["messageType"]),
                             ("ERROR", "BAD_REQUEST", "PROBE_DECLINE"))
            await ws.close()
        run(go())

    def test_silent_ok_sends_nothing(self):
        user = self.srv.new_user("sil")

        async def go():
            ws = await ws_connect(self.srv, user.token)
            await harness.ws_send(ws, {"type": "PROBE_SILENT"})
            await ws_expect_silence(ws, 0.4)
            await ws.close()
        run(go())

    def test_cpu_job_runs_off_the_loop(self):
        user = self.srv.new_user("cpu")

        async def go():
            ws = await ws_connect(self.srv, user.token)
            resp = await ws_request(ws, {"type": "PROBE_CPU", "n": 100000})
            self.assertEqual(resp, {"type": "PROBE_CPU_RESPONSE", "sum": 100000 * 100001 // 2})
            await ws.close()
        run(go())

    def test_http_internal_error_carries_its_reference(self):
        status, _, body = self.srv.request("POST", "/probe/internal")
        self.assertEqual((status, body.get("error")), (500, "INTERNAL"), body)
        m = re.fullmatch(r"internal error \(ref ([0-9a-f]{8})\)", body.get("message", ""))
        self.assertIsNotNone(m, body)
        self.assertNotIn("probe detail", body["message"])
        self.assertIn("ref %s: probe detail for the log" % m.group(1), self.srv.log_text())

    def test_plugin_http_route_get_and_head(self):
        status, _, body = self.srv.request("GET", "/probe/hello")
        self.assertEqual((status, body), (200, {"hello": "probe"}))
        conn = self.srv.connection()
        try:
            conn.request("HEAD", "/probe/hello")
            resp = conn.getresponse()
            self.assertEqual((resp.status, resp.read()), (200, b""))
            self.assertEqual(resp.headers.get("Content-Length"), str(len('{"hello":"probe"}')))
        finally:
            conn.close()

    def test_event_table_holds_every_type_and_no_more(self):
        user = self.srv.new_user("evt")

        async def go():
            ws = await ws_connect(self.srv, user.token)
            resp = await ws_request(ws, {"type": "PROBE_EVENTS"})
            await ws.close()
            return resp
        self.assertEqual(run(go())["badEventRefused"], 1)

    def test_redis_command_without_redis_is_unavailable(self):
        user = self.srv.new_user("rdn")

        async def go():
            ws = await ws_connect(self.srv, user.token)
            resp = await ws_request(ws, {"type": "PROBE_REDIS", "args": ["PING"]})
            await ws.close()
            return resp
        self.assertEqual(run(go()), {"type": "PROBE_REDIS_RESPONSE", "status": -7})

    def test_user_removal_hook_runs_inside_the_removal(self):
        async def probe(user, msg):
            ws = await ws_connect(self.srv, user.token)
            resp = await ws_request(ws, msg)
            await ws.close()
            return resp
        watcher = self.srv.new_user("rmw")
        before = run(probe(watcher, {"type": "PROBE_EVENTS"}))["removed"]
        gone = self.srv.new_user("rmg")
        self.assertEqual(self.srv.unregister(gone.token)[0], 204)
        self.assertEqual(run(probe(watcher, {"type": "PROBE_EVENTS"}))["removed"], before + 1)
        # a hook that fails rolls the whole removal back: the user is still there
        kept = self.srv.new_user("rmk")
        run(probe(watcher, {"type": "PROBE_FAIL_REMOVAL", "on": True}))
        try:
            status, _, body = self.srv.unregister(kept.token)
            self.assertEqual(status // 100, 5, body)
        finally:
            run(probe(watcher, {"type": "PROBE_FAIL_REMOVAL", "on": False}))
        self.assertEqual(self.srv.login_response(kept.username, kept.password)[0], 200)
        self.assertEqual(run(probe(watcher, {"type": "PROBE_EVENTS"}))["removed"], before + 1)

    def test_events_reach_plugins(self):
        async def events(user):
            ws = await ws_connect(self.srv, user.token)
            resp = await ws_request(ws, {"type": "PROBE_EVENTS"})
            await ws.close()
            return resp
        a = self.srv.new_user("eva")
        before = run(events(a))
        self.srv.new_user("evb")
        import time
        time.sleep(0.2)  # the previous socket's close reaches the server
        after = run(events(a))
        self.assertEqual(after["registered"], before["registered"] + 1)
        self.assertEqual(after["opened"], before["opened"] + 1)
        self.assertGreaterEqual(after["closed"], before["closed"] + 1)



class CompatibilityTests(unittest.TestCase):
    """Plugins of older minors keep loading: one built against a frozen copy of
    the ABI 1.0 header, one whose descriptor ends before cleanup."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-compat-")
        conf = write_conf(cls.tmp, [
            AUTH,
            # a setting it never declared (ABI 1.0 declares none): passed unchecked
            '{ name = "abi10"; path = "%s"; anything = 1; }' % os.path.join(TEST_PLUGINS,
                                                                              "abi10.so"),
            '{ name = "short_desc"; path = "%s"; }' % os.path.join(TEST_PLUGINS, "short_desc.so")])
        cls.srv = ConfServer(harness.chatd_bin(), conf).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()  # a clean exit: the short descriptor's missing cleanup is not called
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_abi_1_0_plugin_answers(self):
        user = self.srv.new_user("a10")

        async def go():
            ws = await ws_connect(self.srv, user.token)
            resp = await ws_request(ws, {"type": "ABI10_PING", "requestId": "p"})
            await ws.close()
            return resp
        resp = run(go())
        self.assertEqual(resp["type"], "ABI10_PONG")
        self.assertGreaterEqual(resp["hostMinor"], 1)
        self.assertIn("loaded plugin abi10 1.0", self.srv.log_text())
        self.assertIn("plugin 'abi10' declares no settings (ABI 1.0): its settings are not "
                      "checked", self.srv.log_text())

    def test_short_descriptor_plugin_answers(self):
        user = self.srv.new_user("shd")

        async def go():
            ws = await ws_connect(self.srv, user.token)
            resp = await ws_request(ws, {"type": "SHORT_PING", "requestId": "s"})
            await ws.close()
            return resp
        self.assertEqual(run(go()), {"type": "SHORT_PONG", "requestId": "s"})


class RedisCommandTests(unittest.TestCase):
    """host->redis_command against a real Redis."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, os.path.join(SOURCE, "tests", "cluster"))
        from backends import Redis
        if not shutil.which("redis-server"):
            raise unittest.SkipTest("redis-server not installed")
        cls.redis = Redis().start()
        cls.tmp = tempfile.mkdtemp(prefix="chatd-redis-")
        conf = write_conf(cls.tmp, [AUTH, '{ name = "probe"; path = "%s"; }'
                                    % os.path.join(TEST_PLUGINS, "probe.so")])
        cls.srv = ConfServer(harness.chatd_bin(), conf, extra_sets=[
            'redis.host="127.0.0.1"', "redis.port=%d" % cls.redis.port]).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.redis.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_command_answered_and_refused(self):
        user = self.srv.new_user("rdc")

        async def go():
            ws = await ws_connect(self.srv, user.token)
            for _ in range(50):  # the node connects to Redis just after it is ready
                ok = await ws_request(ws, {"type": "PROBE_REDIS", "args": ["SET", "k", "v"]})
                if ok["status"] == 0:
                    break
                await asyncio.sleep(0.1)
            bad = await ws_request(ws, {"type": "PROBE_REDIS", "args": ["NO_SUCH_COMMAND"]})
            await ws.close()
            return ok, bad
        ok, bad = run(go())
        self.assertEqual(ok["status"], 0)
        self.assertEqual(bad["status"], -7)  # an error reply is a failure: CHATD_EUNAVAIL
        self.assertEqual(subprocess.run(["redis-cli", "-p", str(self.redis.port), "GET", "k"],
                                        stdout=subprocess.PIPE).stdout.strip(), b"v")


class ReentrancyTests(unittest.TestCase):
    """A slow reader closed in the middle of a fan-out is told to the plugins
    afterwards, not inside the fan-out's loop: the probe sends PROBE_GONE to
    the channel from its CONN_CLOSED handler, and every reader gets it after
    the same messages (inside the loop, the readers after the slow one in the
    list would get it first)."""

    PLUGINS = MESSAGE_PLUGINS

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-reent-")
        conf = write_conf(cls.tmp, cls.PLUGINS + ['{ name = "probe"; path = "%s"; }'
                                                  % os.path.join(TEST_PLUGINS, "probe.so")])
        cls.srv = ConfServer(harness.chatd_bin(), conf, extra_sets=[
            "ws.max_outbuf=131072", "ws.rate_limit=100000", "ws.rate_burst=100000"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_conn_closed_is_told_outside_the_fan_out(self):
        sys.path.insert(0, os.path.join(SOURCE, "tests", "e2e"))
        from domain import Client

        srv = self.srv
        owner = srv.new_user("own")
        slow = srv.new_user("slw")
        readers = [srv.new_user("rd%d" % i) for i in range(6)]

        async def go():
            clients = {}

            async def client(user):
                c = Client(await ws_connect(srv, user.token), user, user.username)
                clients[user.username] = c
                return c
            co = await client(owner)
            for u in [slow] + readers:  # friends of the owner
                cu = await client(u)
                await co.request("INVITE_REQUEST", {"userInviteCode": u.invite_code})
                await cu.request("ACCEPT_REQUEST", {"username": owner.username})
            resp = await co.request("CREATE_REQUEST", {"title": "fan", "participantUsernames":
                                                       [u.username for u in [slow] + readers]})
            cid = resp["channelId"]
            # entered in this order, listed newest first: three readers come after the
            # slow one in the fan-out's walk, three before it
            for u in readers[:3]:
                await clients[u.username].request("ENTER_REQUEST", {"channelId": cid})
            raw = harness.RawWebSocket(srv.port, rcvbuf=4096)
            self.assertEqual(raw.handshake(slow.token, "bearer"), 101)
            raw.send_json({"type": "ENTER_REQUEST", "channelId": cid, "requestId": "e"})
            for u in readers[3:]:
                await clients[u.username].request("ENTER_REQUEST", {"channelId": cid})
            await co.request("PROBE_WATCH", {"channelId": cid})
            # the slow one never reads: write until its output passes ws.max_outbuf
            content = "x" * 3000
            got = {u.username: [] for u in readers}
            for burst in range(300):
                rids = []
                for i in range(25):  # 75 KB, under the readers' ws.max_outbuf
                    rid = "w%d-%d" % (burst, i)
                    rids.append(rid)
                    await co.send({"type": "WRITE_MESSAGE", "channelId": cid, "content": content,
                                   "requestId": rid})
                for rid in rids:
                    ack = await co.reply(rid)
                    self.assertEqual(ack["type"], "WRITE_MESSAGE_ACK", ack)
                for u in readers:
                    got[u.username] += await clients[u.username].collect(None, 0.0)
                if all(any(m["type"] == "PROBE_GONE" for m in got[u.username])
                       for u in readers):
                    break
            for u in readers:  # what is still on its way
                got[u.username] += await clients[u.username].collect(None, 0.5)
            raw.close()
            for c in clients.values():
                await c.close()
            return got
        got = run(go())
        before = {}
        for name, msgs in got.items():
            types = [m["type"] for m in msgs]
            self.assertEqual(types.count("PROBE_GONE"), 1, (name, types[-5:]))
            before[name] = types.index("PROBE_GONE")
            seqs = [m["messageSequence"] for m in msgs if m["type"] == "NOTIFY_MESSAGE"]
            self.assertEqual(seqs, list(range(1, len(seqs) + 1)), name)
        self.assertEqual(len(set(before.values())), 1,
                         "NOTIFY_MESSAGEs before PROBE_GONE, per reader: %r" % before)
        self.assertTrue(srv.alive())

class StartupRefusalTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-refuse-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_other_abi_major_is_refused(self):
        path = os.path.join(TEST_PLUGINS, "bad_abi.so")
        conf = write_conf(self.tmp, [AUTH, '{ name = "bad_abi"; path = "%s"; }' % path])
        code, out = start_fails(harness.chatd_bin(), conf)
        self.assertNotEqual(code, 0)
        self.assertIn(path, out)
        self.assertRegex(out, r"built for plugin ABI 2\.0; this chatd speaks 1\.\d+")
        self.assertNotIn("core: ready", out)

    def test_missing_plugin_file_names_the_path(self):
        conf = write_conf(self.tmp, [AUTH, '{ name = "ghost"; path = "/nonexistent/ghost.so"; }'])
        code, out = start_fails(harness.chatd_bin(), conf)
        self.assertNotEqual(code, 0)
        self.assertIn("/nonexistent/ghost.so", out)
        self.assertNotIn("core: ready", out)

    def test_plugin_init_failure_stops_startup(self):
        # valid settings, but no store: the plugin's init refuses
        conf = write_conf(self.tmp, ['{ name = "auth"; }'])
        code, out = start_fails(harness.chatd_bin(), conf)
        self.assertNotEqual(code, 0)
        self.assertIn("needs a SQL storage backend", out)
        self.assertIn("plugin 'auth': init failed", out)

    def test_plugin_setting_of_the_wrong_type_stops_startup(self):
        conf = write_conf(self.tmp, ['{ name = "auth"; backend = "sqlite"; argon2_t_cost = "x"; }'])
        code, out = start_fails(harness.chatd_bin(), conf)
        self.assertNotEqual(code, 0)
        self.assertIn("%s:2: setting 'plugins.auth.argon2_t_cost': expected an integer" % conf,
                      out)

    def test_address_in_use_stops_startup(self):
        # A second server on a busy address must not start beside the first
        # (sharing the port would split clients between two session caches).
        with harness.Server() as first:
            code, out = start_fails(harness.chatd_bin(), harness.chatd_conf(),
                                    listen="127.0.0.1:%d" % first.port)
            self.assertNotEqual(code, 0)
            self.assertIn("cannot listen on 127.0.0.1:%d" % first.port, out)
            self.assertIn("Address already in use", out)
            self.assertNotIn("core: ready", out)
            self.assertEqual(first.healthz()[0], 200)

    def test_unknown_backend_is_named(self):
        conf = write_conf(self.tmp, ['{ name = "auth"; backend = "oracle"; }'])
        code, out = start_fails(harness.chatd_bin(), conf)
        self.assertNotEqual(code, 0)
        self.assertIn("setting 'plugins.auth.backend': \"oracle\" is not sqlite or mariadb", out)


class CheckConfigTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-check-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, text, *sets):
        path = os.path.join(self.tmp, "c%d.conf" % len(os.listdir(self.tmp)))
        with open(path, "w") as f:
            f.write(text)
        argv = [harness.chatd_bin(), "--check-config", "-c", path]
        for s in sets:
            argv += ["--set", s]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        return p.returncode, p.stdout.decode(errors="replace"), path

    def test_shipped_config_is_valid(self):
        p = subprocess.run([harness.chatd_bin(), "--check-config", "-c", harness.chatd_conf()],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        self.assertEqual(p.returncode, 0, p.stdout)

    def test_syntax_error_names_file_and_line(self):
        code, out, path = self.check('server = {\n  listen = "x"\n  oops;\n};\n')
        self.assertEqual(code, 1)
        self.assertRegex(out, re_escape(path) + r":3\b")

    def test_unknown_setting_names_file_line_and_setting(self):
        code, out, path = self.check('http = {\n  max_head_size = 9000;\n  max_hed = 1;\n};\n')
        self.assertEqual(code, 1)
        self.assertIn("%s:3" % path, out)
        self.assertIn("'http.max_hed'", out)

    def test_wrong_type_and_range(self):
        code, out, path = self.check('ws = { ping_interval = "often"; };\n')
        self.assertEqual(code, 1)
        self.assertIn("%s:1" % path, out)
        self.assertIn("'ws.ping_interval'", out)
        code, out, _ = self.check('http = { max_head_size = 1; };\n')
        self.assertEqual(code, 1)
        self.assertIn("out of range", out)

    def test_bad_override_is_named(self):
        code, out, _ = self.check("", "ws.max_message_size=oops")
        self.assertEqual(code, 1)
        self.assertIn("ws.max_message_size", out)
        code, out, _ = self.check("", "nonsense")
        self.assertEqual(code, 1)
        self.assertIn("PATH=VALUE", out)

    def test_plugin_setting_typos_name_file_line_and_setting(self):
        # an unknown key, a value out of range, a store that is not one
        for line, want in (
                ('{ name = "messaging"; backend = "sqlite"; max_content_byts = 10; }',
                 "setting 'plugins.messaging.max_content_byts': unknown setting"),
                ('{ name = "auth"; backend = "sqlite"; login_window = -5; }',
                 "setting 'plugins.auth.login_window': -5 is out of range 1..604800"),
                ('{ name = "channel"; backend = "webhook"; }',
                 "setting 'plugins.channel.backend': \"webhook\" is not sqlite or mariadb"),
                ('{ name = "push"; backend = "webhok"; }',
                 "setting 'plugins.push.backend': \"webhok\" is not log, redis or webhook"),
                ('{ name = "push"; max_attempts = "ten"; }',
                 "setting 'plugins.push.max_attempts': expected an integer")):
            with self.subTest(line=line):
                code, out, path = self.check("plugins = (\n  %s\n);\n" % line)
                self.assertEqual(code, 1, out)
                self.assertIn("%s:2: %s" % (path, want), out)
        # an override is named as one
        code, out, path = self.check('plugins = ( { name = "push"; } );\n',
                                     "plugins.push.lease_ms=1")
        self.assertEqual(code, 1, out)
        self.assertIn("%s (--set): setting 'plugins.push.lease_ms': 1 is out of range" % path, out)

    def test_help_lists_plugin_settings_as_docs_config_does(self):
        p = subprocess.run([harness.chatd_bin(), "--help", "-c", harness.chatd_conf()],
                           stdout=subprocess.PIPE, timeout=10)
        self.assertEqual(p.returncode, 0)
        listed = {}
        for line in p.stdout.decode().splitlines():
            m = re.match(r"\s+plugins\.(\w+)\.(\w+)\s+(\S+)", line)
            if m:
                listed.setdefault(m.group(1), {})[m.group(2)] = m.group(3)
        self.assertEqual(set(listed), {"auth", "connection", "channel", "messaging", "admin",
                                       "push"})
        with open(os.path.join(SOURCE, "docs", "CONFIG.md")) as f:
            doc = f.read()
        documented = {}
        for section in re.split(r"^### plugins\.", doc, flags=re.M)[1:]:
            name = section.split("\n", 1)[0].strip()
            for m in re.finditer(r"^\| `(\w+)` \| ([^|]*) \|", section, re.M):
                documented.setdefault(name, {})[m.group(1)] = m.group(2).strip().strip("`")
        for plugin, keys in listed.items():
            with self.subTest(plugin=plugin):
                doc_keys = documented.get(plugin, {})
                self.assertEqual(sorted(set(keys)), sorted(set(doc_keys) - {"store"}),
                                 "docs/CONFIG.md and the plugin's declared settings differ")
                for key, default in keys.items():
                    if default != "-":
                        self.assertEqual(doc_keys[key], default,
                                         "default of plugins.%s.%s" % (plugin, key))

    def test_help_lists_core_settings_as_docs_config_does(self):
        p = subprocess.run([harness.chatd_bin(), "--help"], stdout=subprocess.PIPE, timeout=10)
        self.assertEqual(p.returncode, 0)
        core = p.stdout.decode().split("plugin settings and defaults")[0]
        listed = {}
        for line in core.splitlines():
            m = re.match(r"  ([a-z_]+(?:\.[a-z_]+)+)\s+(\S+)", line)
            if m:
                listed[m.group(1)] = m.group(2)
        self.assertIn("admin.listen", listed)
        with open(os.path.join(SOURCE, "docs", "CONFIG.md")) as f:
            doc = f.read().split("\n## plugins")[0]
        documented = {m.group(1): m.group(2).strip().strip("`") for m in re.finditer(
            r"^\| `([a-z_]+(?:\.[a-z_]+)+)` \| ([^|]*) \|", doc, re.M)}
        self.assertEqual(sorted(listed), sorted(documented),
                         "docs/CONFIG.md and the core's settings differ")
        for name, default in listed.items():
            self.assertEqual(documented[name], default, "default of " + name)

    def test_version_and_help(self):
        p = subprocess.run([harness.chatd_bin(), "--version"], stdout=subprocess.PIPE, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout.decode(), r"^chatd \d+\.\d+\.\d+ \(plugin ABI 1\.\d+\)")
        p = subprocess.run([harness.chatd_bin(), "--help"], stdout=subprocess.PIPE, timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"--check-config", p.stdout)
        p = subprocess.run([harness.chatd_bin(), "--bogus"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        self.assertEqual(p.returncode, 2)


def re_escape(s):
    import re
    return re.escape(s)


if __name__ == "__main__":
    unittest.main(verbosity=2)
