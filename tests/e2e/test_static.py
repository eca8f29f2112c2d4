#!/usr/bin/python3
"""End-to-end tests of the files chatd serves from http.web_root (the web
client): types, caching and revalidation, the browser security headers, and
paths that try to leave the web root."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ServerTestCase, parse_http_response, raw_exchange  # noqa: E402

CSP = ("default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
       "script-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
IMMUTABLE = "public, max-age=31536000, immutable"
INDEX = b"<!doctype html><title>chat</title><script type=module src=/assets/app-1a2b3c.js></script>"


def raw_get(port, path, extra=b""):
    """One GET of the raw path (sent as is, nothing normalised), its answer."""
    data, _ = raw_exchange(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra
                           + b"Connection: close\r\n\r\n")
    resp = parse_http_response(data)
    if resp is None:
        raise AssertionError("no HTTP answer to %r: %r" % (path, data[:200]))
    return resp


class StaticFileTests(ServerTestCase):

    @classmethod
    def setUpClass(cls):
        # top/web is the web root; top/secret.txt and top/private/ lie outside it
        cls.top = tempfile.mkdtemp(prefix="chatd-static-")
        cls.web_root = os.path.join(cls.top, "web")
        os.makedirs(os.path.join(cls.web_root, "assets"))
        os.makedirs(os.path.join(cls.web_root, "empty-dir"))
        os.makedirs(os.path.join(cls.top, "private"))
        files = {
            "web/index.html": INDEX,
            "web/assets/app-1a2b3c.js": b"console.log('chat');\n",
            "web/assets/app-1a2b3c.css": b"body { margin: 0 }\n",
            "web/favicon.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            "web/.hidden": b"not for you\n",
            "secret.txt": b"outside the web root\n",
            "private/key.txt": b"outside too\n",
        }
        for name, body in files.items():
            with open(os.path.join(cls.top, name), "wb") as f:
                f.write(body)
        os.symlink(os.path.join(cls.top, "secret.txt"), os.path.join(cls.web_root, "leak.txt"))
        os.symlink(os.path.join(cls.top, "private"), os.path.join(cls.web_root, "private"))
        os.symlink("index.html", os.path.join(cls.web_root, "home.html"))  # stays inside
        cls.server_sets = ['http.web_root="%s"' % cls.web_root]
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.top, ignore_errors=True)

    def get(self, path, headers=None):
        status, hdrs, body = self.server.request("GET", path, headers=headers)
        return status, hdrs, body

    def assertBrowserHeaders(self, hdrs):
        self.assertEqual(hdrs.get("Content-Security-Policy"), CSP)
        self.assertEqual(hdrs.get("X-Content-Type-Options"), "nosniff")
        self.assertEqual(hdrs.get("Referrer-Policy"), "no-referrer")

    def test_index_is_revalidated_every_time(self):
        for path in ("/", "/index.html", "/index.html?v=2"):
            with self.subTest(path=path):
                status, hdrs, body = self.get(path)
                self.assertEqual(status, 200)
                self.assertEqual(body, INDEX)
                self.assertEqual(hdrs.get("Content-Type"), "text/html; charset=utf-8")
                self.assertEqual(hdrs.get_all("Cache-Control"), ["no-cache"])
                self.assertRegex(hdrs.get("ETag") or "", r'^"[0-9a-f]+-[0-9a-f]+"$')
                self.assertBrowserHeaders(hdrs)

    def test_hashed_assets_are_kept_for_a_year(self):
        for path, ctype in (("/assets/app-1a2b3c.js", "text/javascript; charset=utf-8"),
                            ("/assets/app-1a2b3c.css", "text/css; charset=utf-8")):
            with self.subTest(path=path):
                status, hdrs, _ = self.get(path)
                self.assertEqual(status, 200)
                self.assertEqual(hdrs.get("Content-Type"), ctype)
                self.assertEqual(hdrs.get_all("Cache-Control"), [IMMUTABLE])
                self.assertBrowserHeaders(hdrs)
        status, hdrs, _ = self.get("/favicon.svg")
        self.assertEqual((status, hdrs.get("Content-Type")), (200, "image/svg+xml"))
        self.assertEqual(hdrs.get_all("Cache-Control"), ["no-cache"])

    def test_if_none_match_answers_304_until_the_file_changes(self):
        status, hdrs, _ = self.get("/index.html")
        etag = hdrs.get("ETag")
        # 304 has no body, so the next answer on the connection is framed right
        conn = self.server.connection()
        try:
            conn.request("GET", "/index.html", headers={"If-None-Match": etag})
            resp = conn.getresponse()
            self.assertEqual((resp.status, resp.read()), (304, b""))
            self.assertEqual(resp.headers.get("ETag"), etag)
            self.assertEqual(resp.headers.get_all("Cache-Control"), ["no-cache"])
            self.assertIsNone(resp.headers.get("Content-Length"))
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            resp.read()
        finally:
            conn.close()
        status, _, _ = self.get("/index.html", {"If-None-Match": '"0-0", ' + etag})
        self.assertEqual(status, 304)
        status, _, body = self.get("/index.html", {"If-None-Match": '"0-0"'})
        self.assertEqual((status, body), (200, INDEX))
        # a new build of the file is a new tag, and a full answer
        path = os.path.join(self.web_root, "index.html")
        with open(path, "wb") as f:
            f.write(INDEX + b"<!-- v2 -->")
        try:
            status, hdrs, body = self.get("/index.html", {"If-None-Match": etag})
            self.assertEqual((status, body), (200, INDEX + b"<!-- v2 -->"))
            self.assertNotEqual(hdrs.get("ETag"), etag)
        finally:
            with open(path, "wb") as f:
                f.write(INDEX)

    def test_paths_out_of_the_web_root_are_404(self):
        for raw in (b"/../secret.txt", b"/%2e%2e/secret.txt", b"/%2E%2E/secret.txt",
                    b"/assets/../../secret.txt", b"/assets/%2e%2e/%2e%2e/secret.txt",
                    b"/..%2fsecret.txt", b"/..%5csecret.txt", b"/assets\\..\\..\\secret.txt",
                    b"/.hidden", b"/%2ehidden", b"/assets/./app-1a2b3c.js",
                    b"/leak.txt", b"/private/key.txt", b"/empty-dir/", b"/empty-dir",
                    b"/assets", b"/no-such-file.js"):
            with self.subTest(path=raw):
                resp = raw_get(self.server.port, raw)
                self.assertEqual(resp.status, 404, resp)
                self.assertNotIn(b"outside", resp.body)
        # a link that stays inside the root is served
        status, _, body = self.get("/home.html")
        self.assertEqual((status, body), (200, INDEX))

    def test_malformed_escapes_are_400(self):
        for raw in (b"/index.html%00", b"/%zz", b"/index.html%"):
            with self.subTest(path=raw):
                self.assertEqual(raw_get(self.server.port, raw).status, 400)
        self.assertServerUp()

    def test_api_answers_are_never_cached(self):
        status, hdrs, _ = self.get("/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(hdrs.get_all("Cache-Control"), ["no-store"])
        self.assertIsNone(hdrs.get("ETag"))


if __name__ == "__main__":
    unittest.main()
