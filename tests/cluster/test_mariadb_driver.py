#!/usr/bin/python3
"""The MariaDB driver on a real MariaDB (started here on loopback, in a temp
dir): what the library does around a deadlock.

* mariadb_deadlock (a C program on the driver): two transactions lock rows in
  opposite orders until InnoDB rolls one back in the middle of its result; the
  one rolled back runs the same statement again and is answered at once, not
  after mariadb.io_timeout.
* mariadb_chain: a commit that opens the next transaction (COMMIT AND CHAIN),
  which a transaction begun soon after runs in without a START TRANSACTION;
  a statement outside a transaction still commits on its own; a dropped
  connection's chained transaction asks for its batch to run again.

Exits 77 (skipped) when mariadbd is not installed (Debian's mariadb-server).
"""

import os
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from backends import MariaDB  # noqa: E402


class Deadlock(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.db = MariaDB().start()
        cls.db.create_database("driver")

    @classmethod
    def tearDownClass(cls):
        cls.db.cleanup()

    def settings(self):
        db = self.db
        return ["mariadb.host=127.0.0.1", "mariadb.port=%d" % db.port, "mariadb.user=" + db.USER,
                'mariadb.password="%s"' % db.PASSWORD, "mariadb.database=driver",
                "mariadb.io_timeout=4"]

    def test_chained_transactions(self):
        res = subprocess.run([os.environ["CHATD_MARIADB_CHAIN_BIN"], "mariadb.chain_ms=300"]
                             + self.settings(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = res.stdout.decode("utf-8", "replace")
        self.assertEqual(res.returncode, 0, out)
        self.assertIn("as they should be", out)

    def test_the_victim_of_a_deadlock_runs_its_statement_again_at_once(self):
        sets = self.settings()
        t0 = time.monotonic()
        res = subprocess.run([os.environ["CHATD_MARIADB_DEADLOCK_BIN"]] + sets,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        out = res.stdout.decode("utf-8", "replace")
        self.assertEqual(res.returncode, 0, out)
        self.assertIn("3 deadlocks", out)
        # three rounds of a 0.3 s wait each, nothing near a 4 s timeout
        self.assertLess(time.monotonic() - t0, 6, out)


if __name__ == "__main__":
    if not shutil.which("mariadbd"):
        print("mariadbd not installed: skipped")
        sys.exit(77)
    unittest.main(verbosity=2)
