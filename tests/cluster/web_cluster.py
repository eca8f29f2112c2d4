#!/usr/bin/python3
"""The browser journey (tests/web/journey.test.mjs) against two chatd nodes
behind nginx on MariaDB and Redis, each node serving the built web client:
the journey's browsers reach the nodes only through the balancer, and its
restart step restarts both nodes (one after the other) while the pages stay
open.

The journey asks for a restart by running CHATD_WEB_RESTART, here a shell
command that signals this runner (SIGUSR1) and waits for the file the runner
writes once the nodes are back. The runner stops both nodes (SIGTERM), keeps
them down DOWN_S seconds, in which the journey sees its pages go offline and
types messages that must wait, and starts them again. Exits 77 (skipped) without nginx, MariaDB,
Redis, Node.js or Chromium, or without a built client (contrib/web/dist).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DIST = os.path.join(REPO, "contrib", "web", "dist")
JOURNEY = os.path.join(REPO, "tests", "web", "journey.test.mjs")
sys.path.insert(0, HERE)
from cluster import Cluster, missing_programs  # noqa: E402

JOURNEY_TIMEOUT = 420
DOWN_S = 5


def main():
    missing = missing_programs()
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        missing.append("node")
    if not os.access(os.environ.get("CHATD_WEB_CHROMIUM", "/usr/bin/chromium"), os.X_OK):
        missing.append("chromium")
    if not os.path.exists(os.path.join(DIST, "index.html")):
        missing.append("the built client (contrib/web/dist: npm run build)")
    if missing:
        print("not available: %s: skipped" % ", ".join(missing))
        sys.exit(77)
    work = tempfile.mkdtemp(prefix="chatd-web-cluster-")
    ready = os.path.join(work, "restarted")
    asked = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: asked.set())
    c = Cluster(nodes=2, extra_sets=['http.web_root="%s"' % DIST])
    c.start()
    code, unclean = 1, False
    try:
        url = "http://127.0.0.1:%d" % c.lb_port
        print("2 nodes on ports %s behind nginx at %s" % (c.ports, url), flush=True)
        env = dict(os.environ, CHATD_WEB_URL=url,
                   CHATD_WEB_RESTART="kill -USR1 %d && i=0 && while [ ! -e '%s' ] && "
                                     "[ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done && "
                                     "rm '%s'" % (os.getpid(), ready, ready))
        proc = subprocess.Popen([node, JOURNEY], env=env)
        deadline = time.monotonic() + JOURNEY_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            if asked.wait(0.2):
                asked.clear()
                for n in c.nodes:
                    n.terminate()
                for n in c.nodes:
                    if n.wait_exit() != 0:
                        print("%s did not exit 0 on SIGTERM" % n.name)
                        unclean = True
                time.sleep(DOWN_S)
                t0 = time.monotonic()
                for n in c.nodes:
                    n.spawn()
                for n in c.nodes:
                    n.wait_ready()
                print("both nodes down %d s, then ready in %.2f s"
                      % (DOWN_S, time.monotonic() - t0), flush=True)
                open(ready, "w").close()
        if proc.poll() is None:
            proc.kill()
            print("the journey did not end within %d s" % JOURNEY_TIMEOUT)
        code = proc.wait() or (1 if unclean else 0)
    finally:
        try:
            c.stop(check=True)
        except AssertionError as e:
            print("web_cluster.py: %s" % e)
            code = code or 1
        c.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
