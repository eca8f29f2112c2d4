#!/usr/bin/python3
"""The end-to-end suites of tests/e2e, unchanged, against chatd with the
sessions and every SQL plugin on a real MariaDB server (started here in a
temporary directory on loopback). One fresh database per suite."""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from backends import MariaDB  # noqa: E402

E2E = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e")
SUITES = ["http", "ws", "connections", "channels", "messages", "conversations", "push",
          "push_webhook", "races", "batch_writes", "durability", "admin"]


def main():
    if not shutil.which("mariadbd"):
        print("mariadbd not installed (Debian package mariadb-server): skipped")
        sys.exit(77)  # meson's "skipped"
    suites = sys.argv[1:] or SUITES
    db = MariaDB().start()
    failed = []
    try:
        for name in suites:
            database = "chatd_e2e_" + name
            db.create_database(database)
            env = dict(os.environ, CHATD_E2E_SETS=json.dumps(db.chatd_sets(database)))
            print("== %s on MariaDB" % name, flush=True)
            rc = subprocess.call(["/usr/bin/python3", os.path.join(E2E, "test_%s.py" % name)],
                                 env=env)
            if rc != 0:
                failed.append(name)
    finally:
        db.cleanup()
    print("suites failed on MariaDB: %s" % (", ".join(failed) or "none"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
