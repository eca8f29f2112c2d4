#!/usr/bin/python3
"""Run one chatd-load scenario against a chatd started for it, print the
table, and stop everything. Every run is bounded: chatd-load stops by itself
after its --duration (plus setup and drain), and this script gives up on it
past that.

    tests/bench/scenario.py idle --connections 10000
    tests/bench/scenario.py direct --pairs 20 --duration 5
    tests/bench/scenario.py fanout --members 200 --writers 2 --duration 5
    tests/bench/scenario.py mixed --connections 500 --duration 5
    tests/bench/scenario.py cluster --nodes 2 --pattern fanout --members 200 --duration 5
    tests/bench/scenario.py typing --members 1000 --duration 5 --rest 2

The options below belong to this script; every other one goes to chatd-load
unchanged (see `chatd-load --help` and docs/BENCHMARKS.md).

  --synchronous full|normal  storage.sqlite.synchronous of the server [full]
  --pin / --no-pin     run chatd under `taskset -c 0` and chatd-load under
                       `taskset -c 1` with --busy-poll (it has its core to
                       itself) [on with two or more CPUs; off for cluster]
  --set PATH=VALUE     one more chatd setting (repeatable; wins over ours)
  --nodes N            cluster: chatd nodes sharing MariaDB and Redis [2]
  --load-bin PATH      chatd-load [$CHATD_LOAD, else build/tests/bench/chatd-load]

The server gets generous limits (per-address and per-user connection caps,
WebSocket and write rate limits, login failure limits, friends per user,
channel size) so that the load, not a limit, is what is measured, and cheap
argon2 so that logins are quick. Its RSS and CPU are read by chatd-load from
/proc/<pid>/{status,stat} (--server-pid).
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

SCENARIOS = ("idle", "direct", "fanout", "mixed", "typing", "cluster")

GENEROUS = [
    "server.max_connections=1000000",
    "server.max_connections_per_addr=1000000",
    "ws.rate_limit=10000000",
    "ws.rate_burst=10000000",
    "ws.max_connections_per_user=1000000",
    "plugins.messaging.max_writes_per_second=10000000",
    "plugins.messaging.write_burst=10000000",
    "plugins.auth.login_max_failures_per_addr=1000000",
    "plugins.auth.argon2_t_cost=1",
    "plugins.auth.argon2_m_cost=256",
    "plugins.connection.max_connections_per_user=1000000",
    "plugins.channel.max_channel_members=1000000",
]


def load_bin(given):
    for path in (given, os.environ.get("CHATD_LOAD"),
                 os.path.join(REPO, "build", "tests", "bench", "chatd-load")):
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    sys.exit("scenario.py: chatd-load not found: build it (ninja -C build) or give "
             "--load-bin / CHATD_LOAD")


def raise_fd_limit():
    """Soft RLIMIT_NOFILE up to the hard one, for us and the processes we start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def time_budget(rest):
    """Seconds chatd-load may take at most, from the options it was given."""
    ap = argparse.ArgumentParser(add_help=False)
    for name, default in (("--duration", 10.0), ("--warmup", 0.0), ("--drain", 5.0),
                          ("--settle", 1.0), ("--rest", 0.0), ("--setup-timeout", 300.0)):
        ap.add_argument(name, type=float, default=default)
    known, _ = ap.parse_known_args(rest)
    return (known.duration + known.warmup + known.drain + known.settle + known.rest
            + known.setup_timeout + 60)


def run_load(cmd, budget):
    sys.stdout.flush()
    proc = subprocess.Popen(cmd)
    try:
        return proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        print("scenario.py: chatd-load did not finish within %.0f s; killed" % budget)
        return 124
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


def single(args, rest, binary, pin):
    import harness

    class BenchServer(harness.Server):
        def args(self):
            prefix = ["taskset", "-c", "0"] if pin else []
            return prefix + super().args()

    os.environ.pop("CHATD_E2E_CLUSTER", None)  # one plain process here
    sets = GENEROUS + ['storage.sqlite.synchronous="%s"' % args.synchronous] + args.set
    srv = BenchServer(sets)
    srv.start()
    code = 1
    try:
        pid = srv.proc.pid
        print("chatd pid %d on 127.0.0.1:%d%s, synchronous=%s, idle RSS %d KiB"
              % (pid, srv.port, " (CPU 0; chatd-load on CPU 1)" if pin else "",
                 args.synchronous, harness.rss_kib(pid)))
        cmd = (["taskset", "-c", "1"] if pin else []) + [
            binary, "--scenario", args.scenario, "--target", "127.0.0.1:%d" % srv.port,
            "--server-pid", str(pid)] + (["--busy-poll"] if pin else []) + rest
        code = run_load(cmd, time_budget(rest))
        if not srv.alive():
            print("scenario.py: chatd died during the run; log tail:\n" + srv.log_tail())
            code = code or 1
    finally:
        try:
            srv.stop()
        except AssertionError as e:
            print("scenario.py: %s" % e)
            code = code or 1
    return code


def cluster(args, rest, binary):
    sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
    from cluster import Cluster, missing_programs

    missing = missing_programs()
    if missing:
        sys.exit("scenario.py: a cluster needs " + ", ".join(missing))
    c = Cluster(nodes=args.nodes, extra_sets=GENEROUS + args.set, balancer=False)
    c.start()
    code = 1
    try:
        pids = [n.proc.pid for n in c.nodes]
        print("chatd cluster: %d nodes on ports %s (pids %s), MariaDB + Redis"
              % (len(c.nodes), ", ".join(map(str, c.ports)), ", ".join(map(str, pids))))
        cmd = [binary, "--scenario", "cluster"]
        for port in c.ports:
            cmd += ["--target", "127.0.0.1:%d" % port]
        for pid in pids:
            cmd += ["--server-pid", str(pid)]
        code = run_load(cmd + rest, time_budget(rest))
    finally:
        try:
            c.stop(check=True)
            c.cleanup()
        except AssertionError as e:
            print("scenario.py: %s" % e)
            code = code or 1
    return code


def main():
    ap = argparse.ArgumentParser(
        description="Start chatd, run one chatd-load scenario against it, print the table.",
        epilog="Every other option goes to chatd-load (chatd-load --help), e.g. "
               "--connections, --pairs, --members, --writers, --duration, --rate, --json.",
        allow_abbrev=False)
    ap.add_argument("scenario", choices=SCENARIOS)
    ap.add_argument("--synchronous", choices=("full", "normal"), default="full",
                    help="storage.sqlite.synchronous of the server [full]")
    ap.add_argument("--pin", dest="pin", action="store_true", default=None,
                    help="chatd on CPU 0, chatd-load on CPU 1 (default with 2+ CPUs, "
                         "not for cluster)")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="no CPU pinning")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                    help="one more chatd setting; repeatable; wins over the generous defaults")
    ap.add_argument("--nodes", type=int, default=2,
                    help="cluster: chatd nodes sharing MariaDB and Redis [2]")
    ap.add_argument("--load-bin", metavar="PATH",
                    help="chatd-load [$CHATD_LOAD, else build/tests/bench/chatd-load]")
    args, rest = ap.parse_known_args()
    binary = load_bin(args.load_bin)
    raise_fd_limit()
    if args.scenario == "cluster":
        if args.nodes < 1 or args.nodes > 8:
            sys.exit("scenario.py: --nodes from 1 to 8")
        return cluster(args, rest, binary)
    pin = args.pin
    if pin is None:
        pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    return single(args, rest, binary, pin)


if __name__ == "__main__":
    sys.exit(main())
