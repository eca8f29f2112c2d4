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
    tests/bench/scenario.py fanout --members 1000 --writers 16 --duration 5 --compare-chatter
    tests/bench/scenario.py idle --connections 2000 --tls

The options below belong to this script; every other one goes to chatd-load
unchanged (see `chatd-load --help` and docs/BENCHMARKS.md).

  --synchronous full|normal  storage.sqlite.synchronous of the server [full]
  --pin / --no-pin     run chatd under `taskset -c 0` and chatd-load under
                       `taskset -c 1` with --busy-poll (it has its core to
                       itself) [on with two or more CPUs; off for cluster]
  --set PATH=VALUE     one more chatd setting (repeatable; wins over ours)
  --nodes N            cluster: chatd nodes sharing MariaDB and Redis [2]
  --load-bin PATH      chatd-load [$CHATD_LOAD, else build/tests/bench/chatd-load]
  --compare-chatter    fanout (or cluster --pattern fanout): run the plain fan-out,
                       then the same with --chatter (the members also type, ack
                       what they read and react), each against a fresh server
                       with the same options, and print both tables and then
                       one comparison: deliveries/s, delivery p50/p99, acks/s,
                       server CPU and RSS per run, and what the chatter run's
                       members received. With --json FILE, FILE gets both runs'
                       JSON as {"plain": ..., "chatter": ...}.
  --check              with --compare-chatter: exit 1 unless both runs had no
                       errors or lost connections and the chatter run's members
                       received NOTIFY_TYPING, NOTIFY_READ and NOTIFY_REACTION
  --db-report          cluster: start MariaDB with performance_schema on, and after
                       the run print where its time went: statements and round
                       trips per acknowledged message (by statement digest), row
                       lock waits and deadlocks, and mariadbd's CPU per ack
  --plugin PATH        load one more plugin, the shared object PATH, after those of
                       the config (repeatable; named as its file, so that
                       --set plugins.NAME.KEY=VALUE reaches its settings), e.g.
                       build/tests/plugins/passfilter.so, one message filter
                       that passes everything: the cost of a filter on the
                       write path
  --tls                the server speaks only https and wss, with a self-signed
                       certificate made for the run (the openssl command line),
                       and chatd-load connects with --tls (not for cluster)

The server gets generous limits (per-address and per-user connection caps,
WebSocket and write rate limits, login failure limits, friends per user,
channel size) so that the load, not a limit, is what is measured, and cheap
argon2 so that logins are quick. Its RSS and CPU are read by chatd-load from
/proc/<pid>/{status,stat} (--server-pid).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

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


def config_with_plugins(conf, paths, directory):
    """A copy of the config file conf in directory, its plugins list (the file's last
    setting, as in etc/) ending with one entry per shared object of paths."""
    with open(conf) as f:
        text = f.read()
    end = text.rfind("}")
    if end < 0 or "plugins" not in text or text[end + 1:].strip() != ");":
        sys.exit("scenario.py: --plugin: %s does not end with its plugins list" % conf)
    entries = "".join(',\n  { name = "%s"; path = "%s"; }'
                      % (os.path.basename(path).split(".")[0], os.path.abspath(path))
                      for path in paths)
    out = os.path.join(directory, os.path.basename(conf))
    with open(out, "w") as f:
        f.write(text[:end + 1] + entries + text[end + 1:])
    return out


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
    os.environ.pop("CHATD_E2E_TLS", None)  # TLS only with --tls, and our certificate
    sets = GENEROUS + ['storage.sqlite.synchronous="%s"' % args.synchronous]
    tls_dir = tempfile.mkdtemp(prefix="chatd-bench-tls-") if args.tls else None
    if tls_dir:
        cert, key = harness.make_cert(tls_dir, "bench")
        sets += ['tls.cert="%s"' % cert, 'tls.key="%s"' % key]
    srv = BenchServer(sets + args.set)
    code = 1
    try:
        srv.start()
        pid = srv.proc.pid
        print("chatd pid %d on 127.0.0.1:%d%s, synchronous=%s%s, idle RSS %d KiB"
              % (pid, srv.port, " (CPU 0; chatd-load on CPU 1)" if pin else "",
                 args.synchronous, ", TLS" if tls_dir else "", harness.rss_kib(pid)))
        cmd = (["taskset", "-c", "1"] if pin else []) + [
            binary, "--scenario", args.scenario, "--target", "127.0.0.1:%d" % srv.port,
            "--server-pid", str(pid)] + (["--busy-poll"] if pin else []) + (
            ["--tls"] if tls_dir else []) + rest
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
        if tls_dir:
            shutil.rmtree(tls_dir, ignore_errors=True)
    return code


def cluster(args, rest, binary):
    sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
    from cluster import Cluster, missing_programs
    from backends import MariaDB

    missing = missing_programs()
    if missing:
        sys.exit("scenario.py: a cluster needs " + ", ".join(missing))
    db = None
    if args.db_report:
        db = MariaDB(extra_args=DB_REPORT_ARGS).start()
        rest, json_path = json_option(rest)
        report_json = json_path or os.path.join(db.dir, "load.json")
        rest = rest + ["--json", report_json]
    c = Cluster(nodes=args.nodes, extra_sets=GENEROUS + args.set, balancer=False, mariadb=db)
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
        before = db_counters(db, reset=True) if db else None
        code = run_load(cmd + rest, time_budget(rest))
        if db:
            db_report(db, before, db_counters(db), report_json)
    finally:
        try:
            c.stop(check=True)
            c.cleanup()
        except AssertionError as e:
            print("scenario.py: %s" % e)
            code = code or 1
        if db:
            db.stop()
            db.cleanup()
    return code


# performance_schema with its statement digests (on by default once the schema is)
DB_REPORT_ARGS = ["--performance-schema=ON",
                  "--performance-schema-consumer-statements-digest=ON",
                  "--performance-schema-digests-size=2000"]
DB_STATUS = ("Questions", "Com_stmt_execute", "Com_stmt_reset", "Com_stmt_prepare", "Com_commit", "Com_rollback", "Com_insert", "Com_update",
             "Com_select", "Com_delete", "Com_savepoint", "Innodb_row_lock_waits",
             "Innodb_row_lock_time", "Innodb_data_fsyncs", "Innodb_os_log_fsyncs")


def db_counters(db, reset=False):
    """mariadbd's CPU and global status counters; with reset, the digests emptied."""
    from write_throughput import cpu_seconds
    out = db.sql("SHOW GLOBAL STATUS WHERE Variable_name IN (%s)"
                 % ", ".join("'%s'" % v for v in DB_STATUS), capture=True)
    status = {k: int(v) for k, v in (line.split("\t") for line in out.splitlines() if line)}
    if reset:
        db.sql("TRUNCATE performance_schema.events_statements_summary_by_digest; "
               "TRUNCATE performance_schema.prepared_statements_instances")
    return {"cpu_s": cpu_seconds(db.proc.pid), "status": status, "t": time.monotonic()}


def db_report(db, before, after, load_json):
    try:
        with open(load_json) as f:
            acked = json.load(f)["totals"]["acked"]
    except (OSError, ValueError, KeyError):
        print("scenario.py: --db-report: no acks in %s" % load_json)
        return
    if not acked:
        print("scenario.py: --db-report: nothing acked")
        return
    cpu = after["cpu_s"] - before["cpu_s"]
    secs = after["t"] - before["t"]
    print("\n== MariaDB during the run (setup included), per acknowledged message "
          "(%d acks, %.1f s) ==" % (acked, secs))
    print("mariadbd CPU: %.2f cores, %.0f us per ack" % (cpu / secs, cpu * 1e6 / acked))
    for k in DB_STATUS:
        d = after["status"].get(k, 0) - before["status"].get(k, 0)
        print("  %-24s %10d  %8.2f per ack" % (k, d, d / acked))
    # text statements by digest, and prepared ones (the store's) by their text
    out = db.sql("SELECT COUNT_STAR, ROUND(SUM_TIMER_WAIT/1000000), SUM_ROWS_AFFECTED, "
                 "SUM_ROWS_EXAMINED, LEFT(DIGEST_TEXT, 110) "
                 "FROM performance_schema.events_statements_summary_by_digest "
                 "WHERE DIGEST_TEXT NOT LIKE '%performance_schema%' "
                 "AND DIGEST_TEXT NOT LIKE 'SHOW GLOBAL STATUS%' "
                 "UNION ALL SELECT COUNT_EXECUTE, ROUND(SUM_TIMER_EXECUTE/1000000), "
                 "SUM_ROWS_AFFECTED, SUM_ROWS_EXAMINED, LEFT(SQL_TEXT, 110) "
                 "FROM performance_schema.prepared_statements_instances "
                 "WHERE COUNT_EXECUTE > 0", capture=True)
    rows = {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) == 5:
            text = " ".join(f[4].replace("\\n", " ").split())
            r = rows.setdefault(text, [0, 0, 0, 0])
            for i in range(4):
                r[i] += int(f[i])
    ranked = sorted(rows.items(), key=lambda kv: -kv[1][1])
    total = sum(r[0] for r in rows.values())
    total_us = sum(r[1] for r in rows.values())
    print("statements: %.2f per ack, %.0f us of statement time per ack (wall time in "
          "the server, waits included)" % (total / acked, total_us / acked))
    print("  %8s %8s %8s %8s  %s" % ("per ack", "us/ack", "rows/ack", "exam/ack", "statement"))
    for text, (count, us, affected, examined) in ranked[:25]:
        print("  %8.3f %8.1f %8.3f %8.2f  %s" % (count / acked, us / acked, affected / acked,
                                                 examined / acked, text))
    inno = db.sql("SHOW ENGINE INNODB STATUS", capture=True).replace("\\n", "\n")
    dead = inno.find("LATEST DETECTED DEADLOCK")
    if dead < 0:
        print("deadlocks since start: none")
    else:
        end = inno.find("------------\nTRANSACTIONS", dead)
        print("deadlocks since start: yes; the latest:\n" + inno[dead:end if end > 0 else None])


def json_option(rest):
    """rest without --json FILE / --json=FILE, and FILE (or None)."""
    out, path, skip = [], None, False
    for i, a in enumerate(rest):
        if skip:
            skip = False
        elif a == "--json" and i + 1 < len(rest):
            path, skip = rest[i + 1], True
        elif a.startswith("--json="):
            path = a[len("--json="):]
        else:
            out.append(a)
    return out, path


def errors_of(r):
    """ERRORs received (by code: write, chatter and other) and lost connections."""
    return sum(r["totals"]["errors_by_code"].values()), r["totals"]["disconnects"]


def comparison(runs):
    """One table from the JSON of the plain and the chatter run."""
    first = next(iter(runs.values()))
    print("\ncomparison: %s, %d members, %d writers, %.1f s measured each, a fresh server each"
          % (first["scenario"], first["connections"], first["writers"], first["duration_s"]))
    print("  %-8s %13s %9s %9s %9s %11s %12s %12s %7s" % (
        "run", "deliveries/s", "p50 (ms)", "p99 (ms)", "acks/s", "CPU (cores)",
        "RSS end KiB", "RSS peak KiB", "errors"))
    for name, r in runs.items():
        m, lat, srv = r["measured"], r["latency"]["delivery"], r.get("server", {})
        errors, lost = errors_of(r)
        print("  %-8s %13.0f %9.2f %9.2f %9.0f %11.2f %12s %12s %7s" % (
            name, m["deliveries_per_s"], lat["p50_ms"], lat["p99_ms"], m["acks_per_s"],
            srv.get("cpu_cores", float("nan")), srv.get("rss_kib_end", "-"),
            srv.get("rss_kib_peak", "-"), "%d%s" % (errors, "+%d lost" % lost if lost else "")))
    r = runs.get("chatter")
    if not r:
        return
    cm, ct = r["chatter"]["measured"], r["chatter"]["totals"]
    print("  chatter run, measured: %d TYPING, %d READ_ACK, %d REACT_REQUEST sent"
          % (cm["typing_sent"], cm["read_acks_sent"], cm["reacts_sent"]))
    for key, label in (("notify_typing", "NOTIFY_TYPING"), ("notify_read", "NOTIFY_READ"),
                       ("notify_reaction", "NOTIFY_REACTION"),
                       ("react_responses", "REACT_RESPONSE")):
        print("    %-16s %10d received %12.0f/s" % (label, cm[key], cm[key] / r["duration_s"]))
    by_code = r["totals"]["errors_by_code"]
    print("    errors           %10d (%s), %d refusing chatter requests, %d lost connections"
          % (sum(by_code.values()), ", ".join("%s %d" % kv for kv in sorted(by_code.items()))
             or "none", ct["errors"], r["totals"]["disconnects"]))


def check_comparison(runs):
    """--check: problems of a comparison (an empty list when it is fine)."""
    problems = []
    for name in ("plain", "chatter"):
        if name not in runs:
            problems.append("the %s run gave no figures" % name)
            continue
        errors, lost = errors_of(runs[name])
        if errors or lost:
            problems.append("the %s run had %d errors and %d lost connections"
                            % (name, errors, lost))
    if "chatter" in runs:
        got = runs["chatter"]["chatter"]["totals"]
        for key in ("notify_typing", "notify_read", "notify_reaction"):
            if not got[key]:
                problems.append("the chatter run's members received no %s" % key.upper())
    return problems


def compare_chatter(args, rest, binary, pin):
    """The plain fan-out, then the same with --chatter, each on a fresh server."""
    rest, json_path = json_option(rest)
    if "--chatter" in rest:
        sys.exit("scenario.py: --compare-chatter runs --chatter itself")
    if args.scenario == "cluster" and "direct" in rest:
        sys.exit("scenario.py: --compare-chatter needs --pattern fanout")
    runs, code = {}, 0
    with tempfile.TemporaryDirectory(prefix="chatd-compare-") as tmp:
        for name, extra in (("plain", []), ("chatter", ["--chatter"])):
            out = os.path.join(tmp, name + ".json")
            print("\n== %s run ==" % name)
            more = extra + ["--json", out]
            if args.scenario == "cluster":
                rc = cluster(args, rest + more, binary)
            else:
                rc = single(args, rest + more, binary, pin)
            code = code or rc
            if os.path.exists(out):
                with open(out) as f:
                    runs[name] = json.load(f)
    if runs:
        comparison(runs)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(runs, f, indent=2)
    if args.check:
        problems = check_comparison(runs)
        for p in problems:
            print("scenario.py: check: %s" % p)
        code = code or (1 if problems else 0)
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
    ap.add_argument("--compare-chatter", action="store_true",
                    help="fanout: the plain run, then the same with --chatter, each on a "
                         "fresh server, and one comparison table")
    ap.add_argument("--plugin", action="append", default=[], metavar="PATH",
                    help="one more plugin (a shared object) after the config's; repeatable; "
                         "e.g. build/tests/plugins/passfilter.so")
    ap.add_argument("--tls", action="store_true",
                    help="https and wss only, with a self-signed certificate made for the "
                         "run (not for cluster)")
    ap.add_argument("--db-report", action="store_true",
                    help="cluster: performance_schema on; after the run, MariaDB's statements, "
                         "round trips and CPU per acknowledged message")
    ap.add_argument("--check", action="store_true",
                    help="with --compare-chatter: exit 1 on errors, lost connections or "
                         "chatter counters at zero")
    args, rest = ap.parse_known_args()
    binary = load_bin(args.load_bin)
    raise_fd_limit()
    if args.compare_chatter and args.scenario not in ("fanout", "cluster"):
        sys.exit("scenario.py: --compare-chatter goes with fanout (or cluster --pattern fanout)")
    if args.check and not args.compare_chatter:
        sys.exit("scenario.py: --check goes with --compare-chatter")
    if args.tls and args.scenario == "cluster":
        sys.exit("scenario.py: --tls runs one node (a cluster's nodes sit behind a balancer)")
    pin = args.pin
    if pin is None:
        pin = (args.scenario != "cluster" and (os.cpu_count() or 1) >= 2
               and shutil.which("taskset") is not None)
    if args.scenario == "cluster" and (args.nodes < 1 or args.nodes > 8):
        sys.exit("scenario.py: --nodes from 1 to 8")
    if args.db_report and (args.scenario != "cluster" or args.compare_chatter):
        sys.exit("scenario.py: --db-report goes with cluster (one run)")
    for path in args.plugin:
        if not os.path.isfile(path):
            sys.exit("scenario.py: --plugin %s: no such file" % path)
    with tempfile.TemporaryDirectory(prefix="chatd-bench-conf-") as tmp:
        if args.plugin:  # the servers read their config from these copies
            import harness
            sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
            from cluster import cluster_conf
            os.environ["CHATD_CONF"] = config_with_plugins(harness.chatd_conf(), args.plugin,
                                                           tmp)
            os.environ["CHATD_CLUSTER_CONF"] = config_with_plugins(cluster_conf(), args.plugin,
                                                                   tmp)
        return run(args, rest, binary, pin)


def run(args, rest, binary, pin):
    if args.compare_chatter:
        return compare_chatter(args, rest, binary, pin)
    if args.scenario == "cluster":
        return cluster(args, rest, binary)
    return single(args, rest, binary, pin)


if __name__ == "__main__":
    sys.exit(main())
