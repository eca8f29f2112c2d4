#!/usr/bin/python3
"""The two SQL dialects kept in step: sql/sqlite/ and sql/mariadb/ build the
same schema.

* Both folders have the same numbered steps (NNN_name.sql, the same numbers
  and names).
* chatd is started once on SQLite and once on a real MariaDB (started here,
  tests/cluster/backends.py), so each applies its dialect's migrations the way
  it does in production; then the two schemas as built are read back (SQLite's
  pragmas, MariaDB's information_schema) and compared: tables; columns with
  their nullability, a normalized type family (integer, text, blob, real),
  default and auto-increment; primary keys; unique keys and other indexes by
  their columns; whether the text columns of a key or index compare case
  blind; and foreign keys with their ON DELETE.
* What differs on purpose is in ALLOWED below, each with its reason; an entry
  that no longer differs fails too, so the list stays true.

Exits 77 (skipped) when mariadbd is not installed (Debian's mariadb-server),
after checking the numbering.
"""

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import harness  # noqa: E402
from backends import MariaDB  # noqa: E402

SQL = os.path.join(harness.REPO_ROOT, "sql")

# Differences between the dialects that are meant, with why. Each is a line
# of what compare() reports.
ALLOWED = {
    # MariaDB has no partial indexes. Its unique index already lets any number
    # of rows have a NULL client_message_id, so it keeps retries unique as the
    # partial one does in SQLite (sql/mariadb/004 is a no-op for this).
    "message: index (channel_id, user_id, client_message_id): partial in sqlite only",
}


def family(decl):
    """The type family of a declared column type (SQLite's affinity rules,
    which also sort MariaDB's names: BIGINT, VARCHAR, MEDIUMTEXT, ...)."""
    t = (decl or "").upper()
    if "INT" in t:
        return "integer"
    if any(k in t for k in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if not t or "BLOB" in t or "BINARY" in t:
        return "blob"
    return "real"


def default_of(value):
    """A column default as text without quotes; None for none (or NULL)."""
    if value is None or value == "NULL":
        return None
    value = str(value)
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1]
    return value


def case_of(collation):
    """"blind" or "exact" for a text column's collation."""
    c = (collation or "BINARY").lower()
    return "blind" if c == "nocase" or c.endswith("_ci") else "exact"


class Table:
    def __init__(self):
        self.columns = {}  # name -> (family, not null, default, auto increment)
        self.pk = ()
        self.indexes = {}  # columns -> (unique, partial)
        self.case = {}  # text column of a key or index -> "blind" / "exact"
        self.fks = set()  # (columns, table, columns, on delete)


def sqlite_schema(path):
    uri = "file:%s?mode=ro" % urllib.parse.quote(path)
    db = sqlite3.connect(uri, uri=True)
    tables = {}
    try:
        for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' "
                                    "AND name NOT LIKE 'sqlite_%'"):
            t = tables[name] = Table()
            auto = "AUTOINCREMENT" in sql.upper()
            cols = db.execute('PRAGMA table_info("%s")' % name).fetchall()
            pk = sorted((c[5], c[1]) for c in cols if c[5])
            t.pk = tuple(n for _, n in pk)
            for _, col, decl, notnull, dflt, in_pk in cols:
                # A PRIMARY KEY column may hold NULL in SQLite (a legacy quirk
                # its documentation keeps) unless it is the rowid; chatd never
                # writes one, and MariaDB's are NOT NULL: read both as NOT NULL.
                t.columns[col] = (family(decl), bool(notnull or in_pk), default_of(dflt),
                                  auto and bool(in_pk))
            for _, iname, unique, origin, partial in db.execute(
                    'PRAGMA index_list("%s")' % name).fetchall():
                info = db.execute('PRAGMA index_xinfo("%s")' % iname).fetchall()
                key = [(r[2], r[4]) for r in info if r[5]]  # key columns, in order, with collation
                for col, coll in key:
                    if t.columns[col][0] == "text":
                        t.case[col] = case_of(coll)
                if origin == "pk":
                    continue
                t.indexes[tuple(c for c, _ in key)] = (bool(unique), bool(partial))
            fks = {}
            for fid, seq, ref, frm, to, _, on_delete, _ in db.execute(
                    'PRAGMA foreign_key_list("%s")' % name).fetchall():
                fks.setdefault(fid, (ref, on_delete, []))[2].append((seq, frm, to))
            for ref, on_delete, pairs in fks.values():
                pairs.sort()
                t.fks.add((tuple(p[1] for p in pairs), ref, tuple(p[2] for p in pairs),
                           on_delete.upper()))
    finally:
        db.close()
    return tables


def mariadb_rows(db, sql):
    out = db.sql(sql, capture=True)
    return [line.split("\t") for line in out.splitlines() if line]


def mariadb_schema(db, database):
    q = database.replace("'", "")
    tables = {}
    for name, col, dtype, nullable, dflt, extra, coll in mariadb_rows(db, (
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, "
            "COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '%s' "
            "ORDER BY TABLE_NAME, ORDINAL_POSITION") % q):
        t = tables.setdefault(name, Table())
        t.columns[col] = (family(dtype), nullable == "NO", default_of(dflt),
                          "auto_increment" in extra.lower())
        t.collation = getattr(t, "collation", {})
        t.collation[col] = coll
    keys = {}
    for name, iname, non_unique, seq, col in mariadb_rows(db, (
            "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME "
            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '%s'") % q):
        keys.setdefault((name, iname), (non_unique == "0", []))[1].append((int(seq), col))
    for (name, iname), (unique, cols) in keys.items():
        t = tables[name]
        cols = tuple(c for _, c in sorted(cols))
        for c in cols:
            if t.columns[c][0] == "text":
                t.case[c] = case_of(t.collation[c])
        if iname == "PRIMARY":
            t.pk = cols
        else:
            t.indexes[cols] = (unique, False)
    fks = {}
    for name, cname, col, seq, ref, refcol in mariadb_rows(db, (
            "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, ORDINAL_POSITION, "
            "REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
            "WHERE TABLE_SCHEMA = '%s' AND REFERENCED_TABLE_NAME IS NOT NULL") % q):
        fks.setdefault((name, cname), [ref, []])[1].append((int(seq), col, refcol))
    rules = {(n, c): r for n, c, r in mariadb_rows(db, (
        "SELECT TABLE_NAME, CONSTRAINT_NAME, DELETE_RULE FROM "
        "information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = '%s'") % q)}
    for (name, cname), (ref, pairs) in fks.items():
        pairs.sort()
        tables[name].fks.add((tuple(p[1] for p in pairs), ref, tuple(p[2] for p in pairs),
                              rules[(name, cname)].upper()))
    return tables


def cols(names):
    return "(%s)" % ", ".join(names)


def compare(lite, maria):
    """Every difference, one line each."""
    out = []
    for name in sorted(set(lite) | set(maria)):
        if name not in maria or name not in lite:
            out.append("%s: table in %s only" % (name, "sqlite" if name in lite else "mariadb"))
            continue
        a, b = lite[name], maria[name]
        for col in sorted(set(a.columns) | set(b.columns)):
            if col not in a.columns or col not in b.columns:
                out.append("%s.%s: column in %s only"
                           % (name, col, "sqlite" if col in a.columns else "mariadb"))
                continue
            for what, x, y in zip(("type", "not null", "default", "auto increment"),
                                  a.columns[col], b.columns[col]):
                if x != y:
                    out.append("%s.%s: %s %r in sqlite, %r in mariadb" % (name, col, what, x, y))
        if a.pk != b.pk:
            out.append("%s: primary key %s in sqlite, %s in mariadb" % (name, cols(a.pk),
                                                                        cols(b.pk)))
        for key in sorted(set(a.indexes) | set(b.indexes)):
            if key not in a.indexes or key not in b.indexes:
                out.append("%s: index %s in %s only"
                           % (name, cols(key), "sqlite" if key in a.indexes else "mariadb"))
                continue
            (ua, pa), (ub, pb) = a.indexes[key], b.indexes[key]
            if ua != ub:
                out.append("%s: index %s unique in %s only"
                           % (name, cols(key), "sqlite" if ua else "mariadb"))
            if pa != pb:
                out.append("%s: index %s: partial in %s only"
                           % (name, cols(key), "sqlite" if pa else "mariadb"))
        for col in sorted(set(a.case) | set(b.case)):
            x, y = a.case.get(col, "exact"), b.case.get(col, "exact")
            if x != y:
                out.append("%s.%s: compares case %s in sqlite, %s in mariadb" % (name, col, x, y))
        for fk in sorted(a.fks ^ b.fks):
            out.append("%s: foreign key %s -> %s%s ON DELETE %s in %s only"
                       % (name, cols(fk[0]), fk[1], cols(fk[2]), fk[3],
                          "sqlite" if fk in a.fks else "mariadb"))
    return out


def steps(dialect):
    return sorted(n for n in os.listdir(os.path.join(SQL, dialect))
                  if re.match(r"^\d+_.*\.sql$", n))


class NumberingTest(unittest.TestCase):
    def test_same_numbered_steps(self):
        lite, maria = steps("sqlite"), steps("mariadb")
        self.assertTrue(lite)
        self.assertEqual(lite, maria, "sql/sqlite and sql/mariadb differ in their steps")
        numbers = [int(n.split("_", 1)[0]) for n in lite]
        self.assertEqual(numbers, list(range(1, len(numbers) + 1)), "numbers with a gap")


class SchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("mariadbd"):
            raise unittest.SkipTest("mariadbd not installed")
        cls.tmp = tempfile.mkdtemp(prefix="chatd-migrations-")
        cls.db = MariaDB().start()
        try:
            cls.db.create_database("chatd_schema")
            # Each server applies its dialect's steps at start-up.
            lite_dir = os.path.join(cls.tmp, "sqlite")
            with harness.Server(data_dir=lite_dir):
                pass
            with harness.Server(cls.db.chatd_sets("chatd_schema"),
                                data_dir=os.path.join(cls.tmp, "mariadb")):
                pass
            cls.lite = sqlite_schema(os.path.join(lite_dir, "chatd.db"))
            cls.maria = mariadb_schema(cls.db, "chatd_schema")
        except BaseException:
            cls.db.cleanup()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.db.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_every_step_applied(self):
        n = len(steps("sqlite"))
        uri = "file:%s?mode=ro" % urllib.parse.quote(os.path.join(self.tmp, "sqlite", "chatd.db"))
        with sqlite3.connect(uri, uri=True) as db:
            lite = [r[0] for r in db.execute("SELECT version FROM schema_migrations "
                                             "ORDER BY version")]
        maria = [int(r[0]) for r in mariadb_rows(
            self.db, "SELECT version FROM chatd_schema.schema_migrations ORDER BY version")]
        self.assertEqual(lite, list(range(1, n + 1)))
        self.assertEqual(maria, list(range(1, n + 1)))

    def test_schemas_match(self):
        self.assertIn("message", self.lite)
        diffs = compare(self.lite, self.maria)
        unexpected = [d for d in diffs if d not in ALLOWED]
        stale = sorted(ALLOWED - set(diffs))
        self.assertEqual(unexpected, [], "the dialects drifted apart:\n  " +
                         "\n  ".join(unexpected))
        self.assertEqual(stale, [], "allowed differences that are gone: remove them")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    if not result.wasSuccessful():
        sys.exit(1)
    sys.exit(77 if not shutil.which("mariadbd") else 0)
