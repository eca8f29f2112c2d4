#!/usr/bin/python3
"""Hardening: secrets, SQL construction, data removal and access control.

* Session tokens are stored hashed: after a login the token is in no table of
  <data_dir>/chatd.db (opened read-only) nor anywhere in the database files'
  bytes, while sha256(token) is in user_session.token_hash.
* Secrets never reach the logs: a full run (several users log in, use their
  tokens as cookie, Bearer and query parameter, fail logins, try near-miss
  tokens, log out, SIGTERM) leaves no token and no password in any file of the
  data directory but the hashed forms in the database; passwords are nowhere in
  the database either. Once with log.format "text" and once with "json", where
  the decoded strings of every line are searched too.
* No SQL is built from strings: a static lint over core/*.c and plugins/**/*.c
  (see SqlConstructionLint).
* Unregister leaves nothing of the user behind, and the counters of the users
  and channels it touched are right afterwards.
* One user cannot read or write another's channels by id.
* Token checks: chatd never compares tokens -- it hashes the presented token
  (SHA-256) and looks the hash up in a hash map, so the comparison cannot leak
  timing about a valid token. What is asserted is the behaviour that follows:
  a token differing in one character, a token of the right length with
  characters outside base64url, the stored hash itself, and tokens of other
  lengths are all refused with 401, and none of them disturbs the real one.
"""

import asyncio
import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hardening_util import (  # noqa: E402
    HERE,
    RELAXED_LOGIN,
    Server,
    raw_ws_open,
)
import harness  # noqa: E402
from harness import error_code, ws_connect, ws_handshake_status  # noqa: E402
from domain import (  # noqa: E402
    ADDR_LIMIT_SET,
    UNKNOWN_CHANNEL,
    DomainTestCase,
    async_test,
    chan,
)

REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
INVITE_REQ = "FETCH_USER_INVITECODE_REQUEST"


def db_path(server):
    return os.path.join(server.data_dir, "chatd.db")


def db_open(server):
    """The server's SQLite database, read-only."""
    uri = "file:%s?mode=ro" % urllib.parse.quote(db_path(server))
    return sqlite3.connect(uri, uri=True, timeout=5)


def all_cells(conn):
    """(table, column, value) of every cell of every table."""
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")]
    for t in tables:
        cur = conn.execute('SELECT * FROM "%s"' % t.replace('"', '""'))
        cols = [d[0] for d in cur.description]
        for row in cur:
            for col, value in zip(cols, row):
                yield t, col, value


def cells_containing(conn, needle):
    found = []
    nb = needle.encode()
    for t, col, value in all_cells(conn):
        if isinstance(value, str) and needle in value:
            found.append((t, col))
        elif isinstance(value, bytes) and nb in value:
            found.append((t, col))
    return found


def files_containing(directory, needles, pattern="*"):
    """{needle: [file names]} for needles found in the bytes of files in ``directory``."""
    hits = {}
    for path in glob.glob(os.path.join(directory, pattern)):
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        for n in needles:
            if n and n.encode() in data:
                hits.setdefault(n, []).append(os.path.basename(path))
    return hits


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


# ==== tokens and passwords at rest and in logs =================================================


class TokenStorageTest(DomainTestCase):
    server_sets = [ADDR_LIMIT_SET]

    def test_token_is_stored_only_as_its_sha256(self):
        pw = "pw-" + os.urandom(8).hex()
        user = self.server.new_user("tok", password=pw)
        token = user.token
        self.assertRegex(token, r"^[A-Za-z0-9_-]{43}$", "token format")
        with db_open(self.server) as conn:
            self.assertEqual(cells_containing(conn, token), [],
                             "the session token is stored in the database")
            rows = conn.execute("SELECT user_id, username FROM user_session WHERE token_hash = ?",
                                (sha256_hex(token),)).fetchall()
            self.assertEqual(rows, [(user.user_id, user.username)],
                             "sha256(token) not found in user_session.token_hash")
            self.assertEqual(cells_containing(conn, pw), [], "the password is in the database")
            (pw_hash,) = conn.execute("SELECT password_hash FROM message_user WHERE id = ?",
                                      (user.user_id,)).fetchone()
            self.assertTrue(pw_hash.startswith("$argon2id$"),
                            "password_hash is not an argon2id hash: %r" % pw_hash[:20])
        hits = files_containing(self.server.data_dir, [token, pw], "chatd.db*")
        self.assertEqual(hits, {}, "token or password in the database files' bytes: %r"
                         % {("token" if k == token else "password"): v for k, v in hits.items()})


class SecretsNotLoggedTest(unittest.TestCase):
    """A full run at log level debug, in each log.format; afterwards grep every
    file of the data directory (and, in JSON, every decoded line)."""

    def test_tokens_and_passwords_never_logged(self):
        self.full_run("text")

    def test_tokens_and_passwords_never_logged_json(self):
        self.full_run("json")

    def full_run(self, log_format):
        data_dir = tempfile.mkdtemp(prefix="chatd-hardening-")
        tokens, passwords, near = [], [], []
        srv = Server([RELAXED_LOGIN, "log.level=\"debug\"", "log.format=\"%s\"" % log_format],
                     data_dir=data_dir)
        try:
            srv.start()
            users = []
            for i in range(4):
                pw = "secret-%d-%s" % (i, os.urandom(6).hex())
                passwords.append(pw)
                users.append(srv.new_user("lg%d" % i, password=pw))
            for u in users:
                tokens.append(u.token)
                # a second session per user
                tokens.append(srv.login(u.username, u.password))
                wrong = "wrong-" + os.urandom(6).hex()
                passwords.append(wrong)
                status, _, _ = srv.login_response(u.username, wrong)
                self.assertEqual(status, 401)
                status, _, _ = srv.request("POST", "/api/v1/auth/register",
                                           {"username": u.username, "password": u.password})
                self.assertEqual(status, 409)

            async def use():
                for k, how in enumerate(("query", "bearer", "cookie")):
                    for u in users:
                        ws = await ws_connect(srv, u.token, how)
                        await harness.ws_request(ws, {"type": INVITE_REQ, "requestId": "x%d" % k})
                        await ws.close()
                for u in users:
                    bad = u.token[:-1] + ("A" if u.token[-1] != "A" else "B")
                    near.append(bad)
                    for how in ("query", "bearer", "cookie"):
                        self.assertEqual(await ws_handshake_status(srv, bad, how), 401)

            harness.run(use())
            for i, u in enumerate(users):
                how = ("bearer", "cookie")[i % 2]
                self.assertEqual(srv.logout(u.token, how)[0], 204)
                self.assertEqual(srv.logout(u.token, how)[0], 401)
            srv.stop()
            logs = glob.glob(os.path.join(data_dir, "chatd*.log"))
            self.assertTrue(logs, "no log file written")
            self.assertGreater(sum(os.path.getsize(p) for p in logs), 0)
            others = [p for p in os.listdir(data_dir) if not p.startswith("chatd.db")]
            hits = {}
            for name in others:
                hits.update(files_containing(data_dir, tokens + near + passwords, name))
            self.assertEqual(hits, {}, "secrets in %s: %d token(s), %d near-miss token(s), "
                             "%d password(s)" % (sorted({f for v in hits.values() for f in v}),
                                                 sum(1 for t in tokens if t in hits),
                                                 sum(1 for t in near if t in hits),
                                                 sum(1 for p in passwords if p in hits)))
            hits = files_containing(data_dir, tokens + near + passwords, "chatd.db*")
            self.assertEqual(hits, {}, "secrets in the database files: %d" % len(hits))
            if log_format == "json":
                self.assert_json_lines_clean(logs, tokens + near + passwords)
        finally:
            if srv.alive():
                try:
                    srv.stop()
                except AssertionError:
                    pass
            shutil.rmtree(data_dir, ignore_errors=True)


    def assert_json_lines_clean(self, logs, secrets):
        """Every line is a JSON object, and no secret is in its decoded strings
        (an escaped form would slip past a search of the bytes)."""
        for path in logs:
            with open(path, "rb") as f:
                lines = f.read().decode("utf-8").splitlines()
            self.assertTrue(lines, path)
            for line in lines:
                obj = json.loads(line)
                self.assertIsInstance(obj, dict, line)
                text = "\n".join(v for v in obj.values() if isinstance(v, str))
                found = [s for s in secrets if s in text]
                self.assertEqual(found, [], "a secret in the log line %r" % line)


# ==== no SQL built from strings ====================================================================


# function -> index of the format (or appended text, for strcat) among its arguments
FORMAT_ARG = {
    "snprintf": 2, "vsnprintf": 2, "sprintf": 1, "vsprintf": 1, "asprintf": 1, "vasprintf": 1,
    "evbuffer_add_printf": 1, "sqlite3_mprintf": 0, "sqlite3_snprintf": 2,
}
APPEND_ARG = {"strcat": 1, "strncat": 1}
SQL_WORD = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b")
CALL_RE = re.compile(r"(?<![\w.>])(%s)\s*\(" % "|".join(sorted(list(FORMAT_ARG) + list(APPEND_ARG))))
CONVERSION = re.compile(r"%(%|[-+ #0']*(\*|\d+)?(?:\.(\*|\d*))?(hh|h|ll|l|L|q|j|z|Z|t)?"
                        r"([diouxXeEfFgGaAcspnm]))")
ALLOWED_ARGS = [
    re.compile(r"^util_for_update\([^()]*\)$"),
    re.compile(r'^for_update\s*\?\s*util_for_update\([^()]*\)\s*:\s*""$'),
]
PRI_MACRO = re.compile(r"^PRI([diouxX])(8|16|32|64|MAX|PTR)$")
SQLISH_BUFFER = re.compile(r"sql|query|stmt", re.I)


def strip_comments(src):
    """C source with comments replaced by spaces (newlines kept); strings untouched."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:j + 1])
            i = j + 1
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_args(src, start):
    """Arguments of the call whose '(' is at ``start``: (list of argument texts, end index)."""
    args, depth, i, cur = [], 0, start + 1, []
    n = len(src)
    while i < n:
        c = src[i]
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            cur.append(src[i:j + 1])
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                args.append("".join(cur).strip())
                return args, i
            depth -= 1
        elif c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    return args, n


LITERAL_PART = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z_]\w*))\s*', re.S)


def literal_value(arg):
    """The text of an argument made only of string literals (and PRI* macros), else None."""
    pos, parts, saw_string = 0, [], False
    while pos < len(arg):
        m = LITERAL_PART.match(arg, pos)
        if not m or m.end() == pos:
            return None
        if m.group(1) is not None:
            parts.append(m.group(1))
            saw_string = True
        else:
            pri = PRI_MACRO.match(m.group(2))
            if not pri:
                return None
            parts.append("ll" + pri.group(1))
        pos = m.end()
    return "".join(parts) if saw_string else None


def lint_sql_construction(src, name="<source>"):
    """Return (calls that build SQL, violations) for one C source text.

    A call builds SQL when its format (or appended text) holds SELECT, INSERT,
    UPDATE or DELETE. In such a format the only substitution allowed is a plain
    %s whose argument is util_for_update(...) or
    ``for_update ? util_for_update(...) : ""``; any other conversion fails. A
    format that is not a literal, or strcat of a non-literal onto a buffer named
    like SQL, fails too: it cannot be shown to be constant.
    """
    code = strip_comments(src)
    found, bad = [], []
    for m in CALL_RE.finditer(code):
        fn = m.group(1)
        line = code.count("\n", 0, m.start()) + 1
        args, _ = split_args(code, m.end() - 1)
        where = "%s:%d %s" % (name, line, fn)
        if fn in APPEND_ARG:
            idx = APPEND_ARG[fn]
            if len(args) <= idx:
                continue
            text = literal_value(args[idx])
            if text is None:
                if SQLISH_BUFFER.search(args[0]):
                    bad.append("%s: appends non-constant %r to %s" % (where, args[idx], args[0]))
            elif SQL_WORD.search(text):
                found.append(where)
            continue
        idx = FORMAT_ARG[fn]
        if len(args) <= idx:
            continue
        fmt = literal_value(args[idx])
        if fmt is None:
            if SQLISH_BUFFER.search(args[0] if idx > 0 else ""):
                bad.append("%s: non-literal format %r into %s" % (where, args[idx], args[0]))
            continue
        if not SQL_WORD.search(fmt):
            continue
        found.append(where)
        argi = idx + 1
        for conv in CONVERSION.finditer(fmt):
            if conv.group(1) == "%":
                continue
            width, prec, spec = conv.group(2), conv.group(3), conv.group(5)
            if width == "*":
                argi += 1
            if prec == "*":
                argi += 1
            if spec == "m":
                continue
            value = args[argi] if argi < len(args) else "<missing>"
            argi += 1
            normal = re.sub(r"\s+", " ", value).strip()
            if conv.group(0) == "%s" and any(p.match(normal) for p in ALLOWED_ARGS):
                continue
            bad.append("%s: %r in an SQL format receives %r" % (where, conv.group(0), normal))
    return found, bad


class SqlConstructionLint(unittest.TestCase):
    """Static lint: no SQL text is assembled with printf-style calls or strcat.

    Every call of snprintf/sprintf/asprintf (and their v* forms,
    evbuffer_add_printf, sqlite3_mprintf) or strcat/strncat in core/*.c and
    plugins/**/*.c is parsed (comments stripped, arguments split with nesting
    and string literals respected, adjacent literals joined). When the format --
    or the appended text -- contains SELECT, INSERT, UPDATE or DELETE, each of
    its conversions must be a bare %s receiving util_for_update(...) or
    ``for_update ? util_for_update(...) : ""`` (a dialect keyword, a trusted
    constant). Anything else -- %d, %s of a name, a width, a non-literal format
    into an SQL buffer -- fails: values belong in bound parameters.
    """

    def sources(self):
        files = sorted(glob.glob(os.path.join(REPO_ROOT, "core", "*.c")) +
                       glob.glob(os.path.join(REPO_ROOT, "plugins", "**", "*.c"), recursive=True))
        self.assertTrue(files, "no C sources found under %s" % REPO_ROOT)
        return files

    def test_linter_catches_string_built_sql(self):
        bad_samples = [
            'snprintf(sql, sizeof sql, "SELECT * FROM t WHERE name = \'%s\'", name);',
            'sprintf(q, "DELETE FROM t WHERE id = %d", id);',
            'snprintf(sql, n, /* x, y */ "UPDATE t SET a = 1"\n   " WHERE b = %lld",\n v);',
            'snprintf(sql, n, "INSERT INTO t VALUES (%" PRId64 ")", v);',
            'snprintf(sql, n, "SELECT a FROM t%s", for_update ? name : "");',
            'snprintf(sql, n, "SELECT a FROM t%20s", util_for_update(h, db));',
            'strcat(sql, name);',
            'asprintf(&sql, fmt, name);',
        ]
        for s in bad_samples:
            with self.subTest(sample=s):
                _, bad = lint_sql_construction(s)
                self.assertTrue(bad, "the lint let this through: %s" % s)
        good_samples = [
            'snprintf(sql, sizeof sql, "SELECT id FROM t WHERE c = ?%s", util_for_update(h, db));',
            'snprintf(sql, sizeof sql, "SELECT a"\n " FROM t WHERE id = ?%s",\n'
            '         for_update ? util_for_update(h, db) : "");',
            'snprintf(err, n, "cannot open %s: %s", path, why);',
            'snprintf(buf, n, "%s", "DELETE me");  /* SELECT in a comment: %d */',
            'strcat(sql, " WHERE id = ?");',
        ]
        for s in good_samples:
            with self.subTest(sample=s):
                _, bad = lint_sql_construction(s)
                self.assertEqual(bad, [], "false alarm on: %s" % s)

    def test_no_sql_built_from_strings_in_the_sources(self):
        found, bad = [], []
        for path in self.sources():
            with open(path, encoding="utf-8", errors="replace") as f:
                src = f.read()
            f_found, f_bad = lint_sql_construction(src, os.path.relpath(path, REPO_ROOT))
            found += f_found
            bad += f_bad
        print("\nSQL formats found (all must take only util_for_update): %d" % len(found))
        for w in found:
            print("  " + w)
        self.assertEqual(bad, [], "SQL assembled from strings:\n  " + "\n  ".join(bad))
        self.assertGreaterEqual(len(found), 1, "the lint found no SQL format at all; is it "
                                "still parsing the sources?")


# ==== unregister leaves nothing behind ===============================================================


class UnregisterTest(DomainTestCase):
    server_sets = [ADDR_LIMIT_SET]

    @async_test
    async def test_unregister_removes_every_trace(self):
        srv = self.server
        u, a, b, c, d = self.users(5, "ur")
        second_token = srv.login(u.username)
        cu = await self.connect(u)
        ca = await self.connect(a)
        cb = await self.connect(b)
        cd = await self.connect(d)
        # relations of every kind, with u on both sides
        await self.invite(cu, a)
        await self.accept(ca, u)                      # ACCEPTED, inviter u
        await self.invite(cb, u)
        await self.accept(cu, b)                      # ACCEPTED, inviter b
        await self.invite(cu, c)                      # PENDING, inviter u
        await self.invite(cd, u)
        self.assertOk(await cu.request("REJECT_REQUEST", {"username": d.username}),
                      "REJECT_RESPONSE")              # REJECTED, inviter d
        await self.invite(cb, a)
        await self.accept(ca, b)                      # a-b ACCEPTED: untouched by u leaving
        # channels: a group u created, a group b created, a direct one, one u ends up alone in
        g1 = await self.create_group(cu, [a, b], title="g-one")
        g2 = await self.create_group(cb, [u, a], title="g-two")
        direct = await self.create_direct(ca, u, title="d-one")
        alone = await self.create_group(cu, [a], title="alone")
        self.assertOk(await ca.request("QUIT_REQUEST", {"channelId": chan(alone)}),
                      "QUIT_RESPONSE")
        for i in range(3):
            await self.write(cu, g1, "u says %d" % i)
        for i in range(2):
            await self.write(ca, g1, "a says %d" % i)
        await self.write(cu, g2, "u in g2")
        await self.write(cb, g2, "b in g2")
        await self.write(cu, direct, "u direct")
        await self.write(cu, alone, "u alone")
        with db_open(srv) as conn:
            count = dict(conn.execute("SELECT id, connection_count FROM message_user"))
        self.assertEqual((count[a.user_id], count[b.user_id]), (2, 2))

        status, _, body = srv.unregister(u.token)
        self.assertEqual(status, 204, body)
        code = await harness.ws_wait_close(cu.ws, 5)
        self.assertEqual(code, 4001, "u's WebSocket after unregister")

        uid, uname = u.user_id, u.username
        checks = {
            "message_user": ("SELECT count(*) FROM message_user WHERE id = ? OR username = ?",
                             (uid, uname)),
            "user_session": ("SELECT count(*) FROM user_session WHERE user_id = ? OR "
                             "username = ?", (uid, uname)),
            "user_connection": ("SELECT count(*) FROM user_connection WHERE user_a_id = ? OR "
                                "user_b_id = ? OR inviter_user_id = ?", (uid, uid, uid)),
            "channel_user": ("SELECT count(*) FROM channel_user WHERE user_id = ?", (uid,)),
            "message": ("SELECT count(*) FROM message WHERE user_id = ?", (uid,)),
        }
        left = {}
        deadline = asyncio.get_running_loop().time() + 3.0
        while True:
            with db_open(srv) as conn:
                left = {t: conn.execute(q, p).fetchone()[0] for t, (q, p) in checks.items()}
                left = {t: n for t, n in left.items() if n}
                named = [(t, col) for t, col, v in all_cells(conn)
                         if isinstance(v, str) and v.lower() == uname.lower()]
            if (not left and not named) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        self.assertEqual(left, {}, "rows still referencing the unregistered user")
        self.assertEqual(named, [], "cells still holding the unregistered username")

        with db_open(srv) as conn:
            # every user's connection_count matches their accepted relations
            wrong = conn.execute(
                "SELECT u.id, u.connection_count, (SELECT count(*) FROM user_connection r"
                " WHERE r.status = 'ACCEPTED' AND (r.user_a_id = u.id OR r.user_b_id = u.id))"
                " FROM message_user u").fetchall()
            wrong = [r for r in wrong if r[1] != r[2]]
            self.assertEqual(wrong, [], "connection_count out of step (id, count, actual)")
            count = dict(conn.execute("SELECT id, connection_count FROM message_user"))
            self.assertEqual((count[a.user_id], count[b.user_id]), (1, 1),
                             "a's and b's connection_count after u left")
            # every channel's head_count matches its members
            wrong = conn.execute(
                "SELECT c.id, c.head_count, (SELECT count(*) FROM channel_user m"
                " WHERE m.channel_id = c.id) FROM channel c").fetchall()
            wrong = [r for r in wrong if r[1] != r[2]]
            self.assertEqual(wrong, [], "head_count out of step (id, head_count, members)")
            self.assertIsNone(conn.execute("SELECT id FROM channel WHERE id = ?",
                                           (alone,)).fetchone(),
                              "a channel whose last member unregistered still exists")
            self.assertEqual(conn.execute("SELECT count(*) FROM message WHERE channel_id = ?",
                                          (alone,)).fetchone()[0], 0)
        chans = await self.channels(ca)
        self.assertEqual(chans[g1]["headCount"], 2)
        self.assertEqual(chans[g2]["headCount"], 2)
        self.assertEqual(chans[direct]["headCount"], 1)
        self.assertEqual([m["content"] for m in await self.fetch(ca, g1)],
                         ["a says 0", "a says 1"], "others' messages must stay, u's go")
        ack = await self.write(ca, g1, "after")
        self.assertEqual(ack["messageSequence"], 6, "sequence numbers must not be reused")
        self.assertNotIn(uname, await self.connections(ca))
        # the account and both sessions are dead
        for tok in (u.token, second_token):
            self.assertEqual(await ws_handshake_status(srv, tok, "query"), 401)
            self.assertEqual(srv.logout(tok)[0], 401)
        self.assertEqual(srv.login_response(uname)[0], 401)
        # the name can be taken again and the newcomer inherits nothing
        again = srv.register(uname)
        self.assertNotEqual(again["userId"], uid, "a user id was reused")
        tok = srv.login(uname)
        cn = await self.connect(u, token=tok)
        self.assertEqual(await self.connections(cn), {})
        self.assertEqual(await self.channel_list(cn), [])


# ==== channels of others by id ==========================================================================


class ChannelAccessTest(DomainTestCase):
    server_sets = [ADDR_LIMIT_SET]

    @async_test
    async def test_non_members_cannot_touch_a_channel_by_id(self):
        owner, member, ex, stranger = self.users(4, "acc")
        cid = await self.channel_with(owner, member, ex)
        co = await self.connect(owner)
        cm = await self.connect(member)
        cx = await self.connect(ex)
        cs = await self.connect(stranger)
        self.assertOk(await cx.request("QUIT_REQUEST", {"channelId": chan(cid)}), "QUIT_RESPONSE")
        await self.write(co, cid, "one")
        await self.write(co, cid, "two")
        await self.enter(cm, cid)
        before = await self.channel_entry(co, cid)
        self.assertEqual((before["lastMessageSequence"], before["headCount"]), (2, 2))

        def requests(ch):
            return [
                ("FETCH_MESSAGES_REQUEST", {"channelId": ch}),
                ("WRITE_MESSAGE", {"channelId": ch, "content": "intruder"}),
                ("ENTER_REQUEST", {"channelId": ch}),
                ("FETCH_CHANNEL_INVITECODE_REQUEST", {"channelId": ch}),
                ("QUIT_REQUEST", {"channelId": ch}),
                ("READ_ACK", {"channelId": ch, "messageSequence": 2}),
            ]

        for client, who in ((cs, "a stranger"), (cx, "a former member")):
            for ch in (chan(cid), cid):
                for type_, fields in requests(ch):
                    with self.subTest(who=who, type=type_, form=type(ch).__name__):
                        await self.assertRequestFails(client, type_, fields, "FORBIDDEN")
        for ch in (chan(UNKNOWN_CHANNEL), 9223372036854775807):
            for type_, fields in requests(ch):
                with self.subTest(type=type_, channel=ch):
                    await self.assertRequestFails(cs, type_, fields, "NOT_FOUND")

        after = await self.channel_entry(co, cid)
        self.assertEqual(after["lastMessageSequence"], 2, "a non-member's write was stored")
        self.assertEqual(after["headCount"], 2, "a non-member became a member")
        self.assertEqual([m["content"] for m in await self.fetch(co, cid)], ["one", "two"])
        await cm.expect_none("NOTIFY_MESSAGE", 0.3)
        self.assertEqual(await self.channel_list(cs), [], "the stranger sees the channel")
        self.assertEqual(await self.channel_list(cx), [], "the former member sees the channel")
        # an ENTER refused leaves the socket entered nowhere: writes by members do not reach it
        await self.write(co, cid, "three")
        await cs.expect_none("NOTIFY_MESSAGE", 0.3)
        await cx.expect_none("NOTIFY_MESSAGE", 0.3)
        with db_open(self.server) as conn:
            rows = conn.execute("SELECT user_id FROM channel_user WHERE channel_id = ? AND "
                                "user_id IN (?, ?)", (cid, stranger.user_id, ex.user_id))
            self.assertEqual(rows.fetchall(), [])


# ==== token checks ==========================================================================================


class TokenCheckTest(DomainTestCase):
    server_sets = [ADDR_LIMIT_SET]

    @staticmethod
    def other_char(ch):
        return "B" if ch == "A" else "A"

    @async_test
    async def test_near_miss_and_malformed_tokens_are_refused(self):
        srv = self.server
        user = self.user("tc")
        t = user.token
        self.assertEqual(len(t), 43)
        candidates = {
            "last character changed": t[:-1] + self.other_char(t[-1]),
            "first character changed": self.other_char(t[0]) + t[1:],
            "middle character changed": t[:21] + self.other_char(t[21]) + t[22:],
            "right length, '!' at the end": t[:-1] + "!",
            "right length, standard base64 '+'": t[:-1] + "+",
            "right length, standard base64 '/'": "/" + t[1:],
            "right length, '=' padding": t[:-1] + "=",
            "right length, a space inside": t[:10] + " " + t[11:],
            "right length, non-ASCII": t[:-1] + "\u00e9",
            "one character short": t[:-1],
            "one character long": t + "A",
            "the stored hash itself": sha256_hex(t),
            "lower-cased": t.lower() if t.lower() != t else t.upper(),
        }
        for what, bad in candidates.items():
            if bad == t:
                continue
            with self.subTest(token=what):
                hdrs = {"Authorization": "Bearer " + bad}
                try:
                    hdrs["Authorization"].encode("latin-1")
                except UnicodeEncodeError:
                    hdrs = {"Authorization": ("Bearer " + bad).encode("utf-8")}
                status, _, body = srv.request("POST", "/api/v1/auth/logout", headers=hdrs)
                self.assertEqual((status, error_code(body)), (401, "UNAUTHORIZED"),
                                 "logout with %s" % what)
                quoted = urllib.parse.quote(bad, safe="")
                status = await ws_handshake_status_query(srv, quoted)
                self.assertEqual(status, 401, "WebSocket with %s in the query" % what)
        sock, resp, _ = raw_ws_open(srv.port, None, how=None)
        sock.close()
        self.assertEqual(resp.status if resp else None, 401, "WebSocket without any token")
        # none of that disturbed the real session
        c = await self.connect(user)
        resp = await c.request(INVITE_REQ)
        self.assertOk(resp, "FETCH_USER_INVITECODE_RESPONSE")
        self.assertEqual(srv.logout(t, "cookie")[0], 204)
        self.assertEqual(srv.logout(t, "bearer")[0], 401, "a token still works after logout")


async def ws_handshake_status_query(server, quoted_token):
    """Handshake with an already percent-encoded access_token; the HTTP status."""
    import websockets
    uri = "ws://%s:%d%s?access_token=%s" % (harness.HOST, server.port, harness.WS_PATH,
                                            quoted_token)
    try:
        ws = await websockets.connect(uri, open_timeout=10, ping_interval=None, compression=None)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    await ws.close()
    return 101


if __name__ == "__main__":
    unittest.main(verbosity=2)
