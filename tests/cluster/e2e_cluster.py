#!/usr/bin/python3
"""The end-to-end suites of tests/e2e, unchanged, against a chatd cluster:
every ``Server`` of the suites becomes CHATD_E2E_CLUSTER nodes (default 2) on
etc/chatd-cluster.conf behind nginx, sharing one MariaDB and one Redis that are
started here once (each Server gets its own database and Redis key prefix).

    e2e_cluster.py [SUITE...]      default: every suite

Exit status: 0 when every suite passes, 1 otherwise (the failing tests are
listed at the end), 77 (meson's "skipped") when mariadbd, redis-server or nginx
is not installed.
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from backends import MariaDB, Redis  # noqa: E402
from cluster import backends_env, missing_programs, BACKENDS_ENV  # noqa: E402

E2E = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e")
SUITES = ["http", "ws", "connections", "channels", "messages", "conversations", "push",
          "push_webhook", "races", "batch_writes", "durability", "admin"]
SUITE_TIMEOUT = 300

# Tests whose subject is the process answering on the port rather than the
# service: behind nginx they observe nginx. They run and are reported, but do
# not fail the run. Anything else that fails does.
_CLOSE_431 = ("chatd answers 431 and closes its connection to nginx; nginx relays the 431 "
              "to the client but keeps the client's keep-alive connection open")
BALANCER_INHERENT = {
    "http": {
        "RoutingTests.test_half_closed_client_gets_its_answer":
            "nginx takes the client's FIN before chatd's answer for a client that gave up, "
            "and closes without relaying it (proxy_ignore_client_abort is off)",
        "MalformedHttpTests.test_header_without_colon":
            "nginx's parser accepts a header line without a colon (as an empty header) "
            "and forwards the request, so chatd never sees the malformed line",
        "MalformedHttpTests.test_head_over_8k_is_431": _CLOSE_431,
        "MalformedHttpTests.test_many_headers_over_8k_is_431": _CLOSE_431,
        "TrustedProxyTests.test_address_limit_follows_forwarded_client":
            "the test plays a balancer by sending X-Forwarded-For itself; behind nginx, "
            "nginx appends the real client (127.0.0.1) last, and chatd rightly takes that",
        "HeaderCountTests.test_header_lines_past_max_headers_are_431":
            "nginx adds header lines of its own (X-Forwarded-For, X-Real-IP, ...) to the "
            "request chatd sees, so chatd counts more lines than the client sent",
        "RoutingTests.test_metrics":
            "/metrics counts the requests of the node that answers it; consecutive "
            "requests are answered by different nodes (scrape each node directly)",
    },
}

# unittest's summary lines: "FAIL: test_x (__main__.Class.test_x)" (3.11) or
# "FAIL: test_x (__main__.Class)" (older).
_FAILED_RE = re.compile(r"^(FAIL|ERROR): (\S+) \(([^)]*)\)", re.MULTILINE)


def _test_name(name, where):
    """Class.test_name from a summary line's two names."""
    where = where.replace("__main__.", "")
    return where if where.endswith("." + name) else where + "." + name


def failed_tests(output):
    """[(FAIL or ERROR, Class.test_name)] from unittest's output."""
    return [(kind, _test_name(name, where)) for kind, name, where in _FAILED_RE.findall(output)]


def failure_reasons(output):
    """{Class.test_name: the last line of its traceback} from unittest's output, so
    that the summary at the end says why, not only what."""
    reasons = {}
    for block in output.split("=" * 70)[1:]:
        head = _FAILED_RE.match(block.lstrip("\n"))
        parts = block.split("-" * 70)  # head, traceback[, the run's summary]
        lines = [ln for ln in (parts[1] if len(parts) > 1 else "").splitlines() if ln.strip()]
        if head and lines:
            reasons[_test_name(head.group(2), head.group(3))] = lines[-1].strip()[:300]
    return reasons


def run_suite(name, env):
    """Run one suite; echo its output; return (exit status, failed test names,
    their reasons, seconds)."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run(["/usr/bin/python3", os.path.join(E2E, "test_%s.py" % name)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=SUITE_TIMEOUT)
        output, rc = proc.stdout.decode("utf-8", "replace"), proc.returncode
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or b"").decode("utf-8", "replace")
        output += "\n(suite killed after %d s)\n" % SUITE_TIMEOUT
        rc = -1
    sys.stdout.write(output)
    sys.stdout.flush()
    return rc, failed_tests(output), failure_reasons(output), time.monotonic() - t0


def main():
    missing = missing_programs()
    if missing:
        print("not installed: %s: skipped" % ", ".join(missing))
        sys.exit(77)  # meson's "skipped"
    suites = sys.argv[1:] or SUITES
    nodes = os.environ.get("CHATD_E2E_CLUSTER") or "2"
    db = MariaDB().start()
    redis = None
    results = []
    try:
        redis = Redis().start()
        env = dict(os.environ, CHATD_E2E_CLUSTER=nodes)
        env[BACKENDS_ENV] = backends_env(db, redis)
        env.pop("CHATD_E2E_SETS", None)
        for name in suites:
            print("== %s on %s nodes behind nginx" % (name, nodes), flush=True)
            results.append((name,) + run_suite(name, env))
    finally:
        if redis is not None:
            redis.cleanup()
        db.cleanup()

    print("\n== cluster e2e summary (%s nodes behind nginx)" % nodes)
    bad = []
    for name, rc, failed, reasons, took in results:
        inherent = BALANCER_INHERENT.get(name, {})
        real = [(k, t) for k, t in failed if t not in inherent]
        excused = [(k, t) for k, t in failed if t in inherent]
        # a suite that failed without a parsable failure (crash, timeout) counts too
        ok = rc == 0 or (failed and not real)
        print("%-12s %-6s %5.1f s" % (name, "ok" if ok else "FAILED", took))
        for kind, t in real:
            print("    %s %s\n        %s" % (kind, t, reasons.get(t, "")))
        for kind, t in excused:
            print("    %s %s (balancer-inherent, not counted: %s)" % (kind, t, inherent[t]))
        if not ok:
            bad.append(name)
    print("suites failed on the cluster: %s" % (", ".join(bad) or "none"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
