#!/usr/bin/python3
"""End-to-end tests of TLS on chatd's listener (docs/PROTOCOL.md section 7).

With tls.cert and tls.key set, the listener speaks only https and wss, TLS 1.2
and later: requests and WebSockets work as over plain TCP (python's ssl,
curl, websockets); TLS 1.1, plain HTTP and garbage fail the handshake, are
counted in /metrics and leave the server up; a stalled handshake is closed
after ws.handshake_timeout; SIGHUP reloads the certificate for new
connections while the open ones go on, and keeps the old one when the new
files do not load; --check-config names what is wrong with the tls.* settings.

The certificates are self-signed, made by the openssl command line (package
openssl) in a temporary directory; curl is the package curl.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.pop("CHATD_E2E_TLS", None)  # these servers have certificates of their own

import harness  # noqa: E402
from harness import (  # noqa: E402
    HOST,
    ServerTestCase,
    make_cert,
    recv_until_close,
    tls_client_context,
    run,
    ws_connect,
    ws_request,
    ws_wait_close,
)

INVITE_REQ = "FETCH_USER_INVITECODE_REQUEST"
INVITE_RESP = "FETCH_USER_INVITECODE_RESPONSE"
RELAXED_ADDR_LIMIT = "plugins.auth.login_max_failures_per_addr=1000"
HANDSHAKE_TIMEOUT = 2  # ws.handshake_timeout of the servers here: a stalled handshake's bound


def need(program):
    path = shutil.which(program)
    if not path:
        raise RuntimeError("%s is not installed (Debian package %s; contrib/chatd-dev "
                           "TEST_PACKAGES)" % (program, program))
    return path


def fingerprint_of_file(cert):
    with open(cert) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def fingerprint_of(ssl_object):
    return hashlib.sha256(ssl_object.getpeercert(binary_form=True)).hexdigest()


def unverified(**versions):
    """A client context that takes any certificate (for fingerprints), with optional
    minimum_version / maximum_version; old versions are allowed on our side, so a
    refusal is the server's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if versions:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 and 1.1, on purpose
        for attr, value in versions.items():
            setattr(ctx, attr, value)
    return ctx


def tls_socket(port, ctx, timeout=5.0):
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=HOST, suppress_ragged_eofs=False)
    except BaseException:
        raw.close()
        raise


def served_fingerprint(port):
    with tls_socket(port, unverified()) as s:
        return fingerprint_of(s)


def replace_file(path, data):
    """Write path anew in one step (a rename), as a certificate renewal does."""
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


class TlsServer(harness.Server):
    """A chatd with tls.cert and tls.key set, reached over https and wss."""

    def __init__(self, cert, key, ca=None, extra_sets=None, data_dir=None):
        sets = ['tls.cert="%s"' % cert, 'tls.key="%s"' % key, 'log.level="debug"',
                "ws.handshake_timeout=%d" % HANDSHAKE_TIMEOUT, RELAXED_ADDR_LIMIT]
        super().__init__(sets + list(extra_sets or []), data_dir=data_dir)
        self.client_ssl = tls_client_context(ca or cert)  # https and wss, trusting it

    def metric(self, name):
        status, _, body = self.request("GET", "/metrics")
        m = re.search(r"^%s (\d+)$" % re.escape(name), body.decode(), re.MULTILINE)
        return int(m.group(1)) if m else None

    def wait_log(self, pattern, after=0, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log_text()[after:]):
                return
            time.sleep(0.05)
        raise AssertionError("no log line %r; log:\n%s" % (pattern, self.log_tail()))


class TlsCase(ServerTestCase):
    """One TLS server per class, its certificate in a temporary directory."""

    extra = []

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-tls-")
        cls.cert, cls.key = make_cert(cls.tmp, "a")
        cls.server = TlsServer(cls.cert, cls.key, extra_sets=cls.extra).start()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def failures(self):
        return self.server.metric("chatd_tls_handshake_failures_total")

    def assertFailureCounted(self, before):
        deadline = time.monotonic() + 3
        while self.failures() <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreater(self.failures(), before, "handshake failure not counted")

    async def wss(self, user, ctx=None):
        return await ws_connect(self.server, user.token, ssl=ctx or self.server.client_ssl)


class HttpsTests(TlsCase):

    def test_register_login_healthz(self):
        user = self.server.new_user("th")  # register and login, over https
        self.assertTrue(user.token)
        self.assertServerUp()
        with tls_socket(self.server.port, self.server.client_ssl) as s:
            self.assertEqual(fingerprint_of(s), fingerprint_of_file(self.cert))
            self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))

    def test_keep_alive_over_tls(self):
        conn = self.server.connection()
        try:
            for _ in range(3):
                status, _, body = self.server.request("GET", "/healthz", conn=conn)
                self.assertEqual((status, body), (200, {"status": "ok"}))
        finally:
            conn.close()

    def test_connection_close_ends_with_close_notify(self):
        """An answer then a close (close after write, lingering): the whole answer
        arrives, then TLS's own end of stream, not a bare TCP close."""
        with tls_socket(self.server.port, self.server.client_ssl) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)  # SSLEOFError on a close without close_notify
                if not chunk:
                    break
                data += chunk
        resp = harness.parse_http_response(data)
        self.assertEqual((resp.status, resp.json()), (200, {"status": "ok"}))

    def test_half_closed_client_gets_its_answer(self):
        """A request, then TCP's FIN with no close_notify (a client done sending, as
        without TLS): answered, then closed."""
        for _ in range(10):
            with tls_socket(self.server.port, self.server.client_ssl) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                socket.socket.shutdown(s, socket.SHUT_WR)  # TCP's shutdown: TLS reads on
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:100])

    def test_curl(self):
        curl = need("curl")
        base = "https://%s:%d" % (HOST, self.server.port)
        name = harness.unique_name("tc")
        body = json.dumps({"username": name, "password": harness.DEFAULT_PASSWORD})

        def call(path, data=None):
            argv = [curl, "-sS", "--cacert", self.cert, "-w", "\n%{http_code}", base + path]
            if data is not None:
                argv += ["-H", "Content-Type: application/json", "--data-binary", data]
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
            self.assertEqual(p.returncode, 0, p.stderr)
            text, _, code = p.stdout.decode().rpartition("\n")
            return int(code), json.loads(text)

        self.assertEqual(call("/healthz"), (200, {"status": "ok"}))
        status, reg = call("/api/v1/auth/register", body)
        self.assertEqual(status, 201, reg)
        status, login = call("/api/v1/auth/login", body)
        self.assertEqual(status, 200, login)
        self.assertIsInstance(login.get("token"), str)
        self.server.tokens.append(login["token"])


class WssTests(TlsCase):
    extra = ["ws.max_outbuf=4096", "ws.rate_limit=1000000", "ws.rate_burst=1000000"]

    def test_authenticated_socket_sends_and_receives(self):
        user = self.server.new_user("tw")

        async def go():
            ws = await self.wss(user)
            try:
                for i in range(20):
                    resp = await ws_request(ws, {"type": INVITE_REQ, "requestId": "r%d" % i})
                    self.assertEqual(resp, {"type": INVITE_RESP, "inviteCode": user.invite_code,
                                            "requestId": "r%d" % i})
                # a message of several TLS records, answered with an error frame
                resp = await ws_request(ws, '{"type": "NO_SUCH_TYPE", "pad": "%s"}' % ("x" * 60000))
                self.assertEqual(resp.get("type"), "ERROR", resp)
                resp = await ws_request(ws, {"type": INVITE_REQ, "requestId": "after"})
                self.assertEqual(resp.get("requestId"), "after")
            finally:
                await ws.close()

        run(go())

    def test_slow_reader_closed_1008(self):
        """A client that sends requests and reads no answer: past ws.max_outbuf queued
        (what OpenSSL has not taken yet), closed with 1008, as without TLS."""
        user = self.server.new_user("ts")
        before = self.server.metric("chatd_ws_slow_reader_closed_total") or 0
        with harness.RawWebSocket(self.server.port, rcvbuf=4096,
                                  context=self.server.client_ssl) as sock:
            self.assertEqual(sock.handshake(user.token, "bearer"), 101)
            frame = harness.build_frame(harness.OP_TEXT, json.dumps(
                {"type": INVITE_REQ, "requestId": "r" * 200}))
            for _ in range(60):
                if not sock.send_raw(frame * 50):
                    break
            self.assertEqual(sock.recv_close_code(timeout=10), 1008)
        self.assertEqual(self.server.metric("chatd_ws_slow_reader_closed_total"), before + 1)
        self.assertServerUp()

    def test_unauthenticated_upgrade_refused_over_tls(self):
        async def go():
            with self.assertRaises(harness.websockets.exceptions.InvalidStatusCode) as cm:
                await ws_connect(self.server, None, None, ssl=self.server.client_ssl)
            self.assertEqual(cm.exception.status_code, 401)

        run(go())


class RefusalTests(TlsCase):

    def test_tls_1_1_refused(self):
        before = self.failures()
        ctx = unverified(minimum_version=ssl.TLSVersion.TLSv1,
                         maximum_version=ssl.TLSVersion.TLSv1_1)
        with self.assertRaises(ssl.SSLError) as cm:
            tls_socket(self.server.port, ctx).close()
        # the server's alert, not a client that refused to offer TLS 1.1
        self.assertIn("PROTOCOL_VERSION", str(cm.exception).upper())
        self.assertFailureCounted(before)
        p = subprocess.run([need("curl"), "-sS", "-k", "--tlsv1.0", "--tls-max", "1.1",
                            "--ciphers", "DEFAULT@SECLEVEL=0",
                            "https://%s:%d/healthz" % (HOST, self.server.port)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertNotIn(b"ok", p.stdout)
        self.assertServerUp()

    def test_plain_http_refused(self):
        before = self.failures()
        data, eof = harness.raw_exchange(self.server.port,
                                         b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(eof, "plain HTTP not closed")
        self.assertFalse(data.startswith(b"HTTP/"), data[:100])
        self.assertFailureCounted(before)
        self.assertServerUp()
        log = self.server.log_text()
        self.assertRegex(log, r"debug core: conn \d+ from 127\.0\.0\.1: TLS handshake failed: \S")

    def test_garbage_refused(self):
        before = self.failures()
        data, eof = harness.raw_exchange(self.server.port, os.urandom(2048))
        self.assertTrue(eof)
        self.assertFalse(data.startswith(b"HTTP/"))
        self.assertFailureCounted(before)
        self.assertServerUp()

    def test_stalled_handshake_closed_after_timeout(self):
        """Half a real ClientHello, then nothing: closed after ws.handshake_timeout."""
        before = self.failures()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = unverified().wrap_bio(incoming, outgoing, server_hostname=HOST)
        with self.assertRaises(ssl.SSLWantReadError):
            obj.do_handshake()
        hello = outgoing.read()
        self.assertGreater(len(hello), 40)
        with socket.create_connection((HOST, self.server.port), timeout=5) as sock:
            sock.sendall(hello[: len(hello) // 2])
            start = time.monotonic()
            data, eof = recv_until_close(sock, timeout=HANDSHAKE_TIMEOUT + 5)
            waited = time.monotonic() - start
        self.assertTrue(eof, "a stalled handshake was not closed")
        self.assertEqual(data, b"")
        self.assertGreater(waited, HANDSHAKE_TIMEOUT - 0.5)
        self.assertLess(waited, HANDSHAKE_TIMEOUT + 2.5)
        self.assertFailureCounted(before)
        self.assertServerUp()

    def test_silent_client_closed_after_timeout(self):
        with socket.create_connection((HOST, self.server.port), timeout=5) as sock:
            start = time.monotonic()
            _, eof = recv_until_close(sock, timeout=HANDSHAKE_TIMEOUT + 5)
            self.assertTrue(eof)
            self.assertLess(time.monotonic() - start, HANDSHAKE_TIMEOUT + 2.5)

    def test_handshakes_counted(self):
        before = self.server.metric("chatd_tls_handshakes_total")
        for _ in range(3):
            self.assertServerUp()
        self.assertGreaterEqual(self.server.metric("chatd_tls_handshakes_total"), before + 3)


class MinVersionTests(TlsCase):
    extra = ['tls.min_version="1.3"']

    def test_tls_1_2_refused_when_1_3_is_the_minimum(self):
        ctx = unverified(maximum_version=ssl.TLSVersion.TLSv1_2)
        with self.assertRaises(ssl.SSLError):
            tls_socket(self.server.port, ctx).close()
        with tls_socket(self.server.port, self.server.client_ssl) as s:
            self.assertEqual(s.version(), "TLSv1.3")
        self.assertServerUp()


class CiphersTests(TlsCase):
    extra = ['tls.ciphers="ECDHE-ECDSA-CHACHA20-POLY1305"']

    def test_the_cipher_list_is_used_for_tls_1_2(self):
        ctx = unverified(maximum_version=ssl.TLSVersion.TLSv1_2)
        with tls_socket(self.server.port, ctx) as s:
            self.assertEqual(s.cipher()[0], "ECDHE-ECDSA-CHACHA20-POLY1305")
        ctx = unverified(maximum_version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with self.assertRaises(ssl.SSLError):
            tls_socket(self.server.port, ctx).close()
        self.assertServerUp()


class ReloadTests(unittest.TestCase):
    """SIGHUP: new connections get the new certificate, open ones go on."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="chatd-tls-reload-")
        self.a = make_cert(self.tmp, "a")
        self.b = make_cert(self.tmp, "b")
        self.cert = os.path.join(self.tmp, "server.crt")
        self.key = os.path.join(self.tmp, "server.key")
        replace_file(self.cert, read(self.a[0]))
        replace_file(self.key, read(self.a[1]))
        self.server = TlsServer(self.cert, self.key, ca=self.a[0]).start()

    def tearDown(self):
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def hup(self, expect):
        mark = len(self.server.log_text())
        self.server.proc.send_signal(signal.SIGHUP)
        self.server.wait_log(expect, after=mark)
        self.assertIn("log reopened", self.server.log_text()[mark:])

    def test_reload_switches_new_connections_and_keeps_old_ones(self):
        fa, fb = fingerprint_of_file(self.a[0]), fingerprint_of_file(self.b[0])
        self.assertEqual(served_fingerprint(self.server.port), fa)
        user = self.server.new_user("tr")

        async def go():
            old = await ws_connect(self.server, user.token, ssl=unverified())
            old_fp = fingerprint_of(old.transport.get_extra_info("ssl_object"))
            self.assertEqual(old_fp, fa)
            self.assertEqual((await ws_request(old, {"type": INVITE_REQ}))["type"], INVITE_RESP)

            replace_file(self.cert, read(self.b[0]))
            replace_file(self.key, read(self.b[1]))
            self.hup(r"TLS certificate reloaded")
            self.assertEqual(served_fingerprint(self.server.port), fb)
            new = await ws_connect(self.server, user.token, ssl=unverified())
            self.assertEqual(fingerprint_of(new.transport.get_extra_info("ssl_object")), fb)
            for ws in (old, new):
                resp = await ws_request(ws, {"type": INVITE_REQ, "requestId": "x"})
                self.assertEqual(resp.get("inviteCode"), user.invite_code)

            # broken files: the certificate in use stays, and the reason is logged
            replace_file(self.cert, b"-----BEGIN CERTIFICATE-----\nnot base64\n")
            self.hup(r"TLS reload failed, the certificate in use stays: setting 'tls.cert'")
            self.assertEqual(served_fingerprint(self.server.port), fb)
            replace_file(self.cert, read(self.a[0]))  # a's certificate with b's key
            self.hup(r"TLS reload failed.*not the one of the certificate")
            self.assertEqual(served_fingerprint(self.server.port), fb)
            for ws in (old, new):
                resp = await ws_request(ws, {"type": INVITE_REQ, "requestId": "y"})
                self.assertEqual(resp.get("inviteCode"), user.invite_code)
            await old.close()
            await new.close()

        run(go())
        self.assertTrue(self.server.alive())

    def test_sigterm_drains_tls_websockets(self):
        user = self.server.new_user("td")

        async def go():
            ws = await ws_connect(self.server, user.token, ssl=unverified())
            self.assertEqual((await ws_request(ws, {"type": INVITE_REQ}))["type"], INVITE_RESP)
            self.server.proc.send_signal(signal.SIGTERM)
            self.assertEqual(await ws_wait_close(ws), 1001)

        run(go())
        code = self.server.proc.wait(timeout=10)
        self.assertEqual(code, 0, self.server.log_tail())
        self.server._stopped = True
        self.server._close_log()


class CheckConfigTests(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="chatd-tls-check-")
        cls.cert, cls.key = make_cert(cls.tmp, "a")
        cls.other_cert, cls.other_key = make_cert(cls.tmp, "b")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, *sets, serve=False):
        argv = [harness.chatd_bin(), "-c", harness.chatd_conf(), "--data-dir",
                os.path.join(self.tmp, "data"), "--listen", "%s:0" % HOST]
        if not serve:
            argv.append("--check-config")
        for s in sets:
            argv += ["--set", s]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        return p.returncode, p.stdout.decode(errors="replace")

    def test_valid(self):
        code, out = self.check('tls.cert="%s"' % self.cert, 'tls.key="%s"' % self.key)
        self.assertEqual(code, 0, out)

    def test_cert_without_key(self):
        code, out = self.check('tls.cert="%s"' % self.cert)
        self.assertEqual(code, 1, out)
        self.assertIn("'tls.cert'", out)
        self.assertIn("tls.key is not set", out)
        code, out = self.check('tls.key="%s"' % self.key)
        self.assertEqual(code, 1, out)
        self.assertIn("tls.cert is not set", out)

    def test_missing_file(self):
        missing = os.path.join(self.tmp, "missing.pem")
        code, out = self.check('tls.cert="%s"' % missing, 'tls.key="%s"' % self.key)
        self.assertEqual(code, 1, out)
        self.assertIn("setting 'tls.cert': cannot read %s: No such file" % missing, out)
        code, out = self.check('tls.cert="%s"' % self.cert, 'tls.key="%s"' % self.tmp)
        self.assertEqual(code, 1, out)
        self.assertIn("setting 'tls.key': cannot read %s: not a file" % self.tmp, out)

    def test_files_that_do_not_load(self):
        junk = os.path.join(self.tmp, "junk.pem")
        replace_file(junk, b"not a certificate\n")
        code, out = self.check('tls.cert="%s"' % junk, 'tls.key="%s"' % self.key)
        self.assertEqual(code, 1, out)
        self.assertIn("setting 'tls.cert': cannot load a certificate from %s" % junk, out)
        code, out = self.check('tls.cert="%s"' % self.cert, 'tls.key="%s"' % self.other_key)
        self.assertEqual(code, 1, out)
        self.assertIn("setting 'tls.key'", out)
        self.assertIn("not the one of the certificate", out)
        code, out = self.check('tls.cert="%s"' % self.cert, 'tls.key="%s"' % self.key,
                               'tls.ciphers="NO-SUCH-CIPHER"')
        self.assertEqual(code, 1, out)
        self.assertIn("setting 'tls.ciphers'", out)
        code, out = self.check('tls.cert="%s"' % self.cert, 'tls.key="%s"' % self.key,
                               'tls.min_version="1.1"')
        self.assertEqual(code, 1, out)
        self.assertIn("setting 'tls.min_version'", out)

    def test_start_refused_with_a_broken_certificate(self):
        junk = os.path.join(self.tmp, "junk2.pem")
        replace_file(junk, b"-----BEGIN CERTIFICATE-----\n")
        code, out = self.check('tls.cert="%s"' % junk, 'tls.key="%s"' % self.key, serve=True)
        self.assertEqual(code, 1, out)
        self.assertIn("setting 'tls.cert': cannot load a certificate", out)
        self.assertNotIn("listening on", out)

    def test_help_lists_the_settings(self):
        p = subprocess.run([harness.chatd_bin(), "--help"], stdout=subprocess.PIPE, timeout=10)
        for name in ("tls.cert", "tls.key", "tls.ciphers", "tls.min_version"):
            self.assertIn(name.encode(), p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
