"""A chatd cluster on one machine, for tests: MariaDB, Redis, N chatd nodes
sharing them (etc/chatd-cluster.conf), and nginx balancing over the nodes.

    c = Cluster(nodes=2).start()
    c.lb_port           # nginx: connections spread over the nodes (round robin)
    c.ports             # each node's own port, for tests that need placement
    c.kill9(1)          # SIGKILL node 2 (index 1)
    c.restart(1)        # start it again, same port, same data directory
    c.stop()            # SIGTERM every node, assert each exits 0, stop the rest

Layout of the cluster's root directory (a fresh temporary one unless given):

    push.log            the push file of every node (plugins.push.file)
    node1/, node2/ ...  each node's data dir and logs (chatd.1.log, chatd.2.log
                        after a restart, ...)
    nginx/              nginx.conf, error.log, access.log, temp folders
    cluster.json        the database and Redis prefix of this root, so a new
                        Cluster on the same root finds the same data (a
                        restart after kill -9 of every node)

MariaDB and Redis are started here (and stopped by ``stop()``) unless given:
many clusters can share one MariaDB and one Redis, each with a database and
a Redis key prefix of its own (``shared_backends()``).

Environment: CHATD_BIN (default build/core/chatd), CHATD_CLUSTER_CONF
(default etc/chatd-cluster.conf).
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from backends import HOST, MariaDB, Redis, child_kwargs  # noqa: E402
from balancer import Nginx  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0   # chatd's server.shutdown_timeout is 10 s
PRESENCE_TTL = 3
PRESENCE_GRACE = 2  # plugins.connection.presence_grace of the nodes

_LISTEN_RE = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
# log.format "text" or "json"
_READY_RE = re.compile(r'(core: ready|"module":"core","message":"ready"\})\s*$', re.MULTILINE)


def chatd_bin():
    return os.environ.get("CHATD_BIN") or os.path.join(REPO_ROOT, "build", "core", "chatd")


def cluster_conf():
    return (os.environ.get("CHATD_CLUSTER_CONF")
            or os.path.join(REPO_ROOT, "etc", "chatd-cluster.conf"))


def missing_programs():
    """Programs a cluster needs that are not installed (Debian packages in brackets)."""
    need = [("mariadbd", "mariadb-server"), ("mariadb-install-db", "mariadb-server"),
            ("mariadb", "mariadb-client"), ("redis-server", "redis-server"),
            ("nginx", "nginx-light")]
    return ["%s (%s)" % (prog, pkg) for prog, pkg in need if not shutil.which(prog)]


def _quote(value):
    """A libconfig string literal."""
    return '"%s"' % str(value).replace("\\", "\\\\").replace('"', '\\"')


class Node:
    """One chatd process of a cluster, with its own data directory."""

    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = "node%d" % (index + 1)
        self.data_dir = os.path.join(cluster.root, self.name)
        self.port = None
        self.proc = None
        self.log_path = None
        self.killed = False   # ended on purpose by kill9(): no exit status to check
        self._log_file = None
        self.extra_sets = []  # PATH=VALUE settings of this node alone, after the cluster's

    def __repr__(self):
        return "Node(%s, port %s)" % (self.name, self.port)

    def args(self, port):
        argv = [chatd_bin(), "-c", self.cluster.conf, "--listen", "%s:%d" % (HOST, port),
                "--data-dir", self.data_dir]
        for item in self.cluster.sets() + self.extra_sets:
            argv += ["--set", item]
        return argv

    def spawn(self):
        """Start the process (on the node's port once it has one); do not wait."""
        os.makedirs(self.data_dir, exist_ok=True)
        n = 1
        while os.path.exists(os.path.join(self.data_dir, "chatd.%d.log" % n)):
            n += 1
        self.log_path = os.path.join(self.data_dir, "chatd.%d.log" % n)
        self._log_file = open(self.log_path, "wb")
        self.killed = False
        self.proc = subprocess.Popen(self.args(self.port or 0), stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=self._log_file,
                                     cwd=self.data_dir, **child_kwargs())
        self._spawned_at = time.monotonic()

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = self._spawned_at + timeout
        while True:
            text = self.current_log()
            m = _LISTEN_RE.search(text)
            if m and _READY_RE.search(text):
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError("%s exited with %s during start-up; log:\n%s"
                                   % (self.name, self.proc.returncode, self.current_log()))
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError("%s not ready within %.0f s; log:\n%s"
                                   % (self.name, timeout, self.current_log()))
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self):
        """Send SIGTERM (the start of a clean shutdown); see wait_exit()."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Wait for the process; returns its exit status, or None if it had to be killed."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        self._close_log()
        return code

    def kill9(self):
        """SIGKILL and reap: a crash, no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.killed = True
        self._close_log()

    def _close_log(self):
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def current_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def logs(self):
        """Paths of every log this node wrote (one per start), oldest first."""
        out = []
        n = 1
        while os.path.exists(os.path.join(self.data_dir, "chatd.%d.log" % n)):
            out.append(os.path.join(self.data_dir, "chatd.%d.log" % n))
            n += 1
        return out

    def log_text(self):
        """Every start's log of this node, in order."""
        parts = []
        for path in self.logs():
            try:
                with open(path, "rb") as f:
                    parts.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "".join(parts)


class Cluster:
    """MariaDB + Redis + ``nodes`` chatd processes + nginx, on 127.0.0.1."""

    def __init__(self, nodes=2, extra_sets=(), root=None, mariadb=None, redis=None,
                 balancer=True, balance="round_robin", conf=None, node_sets=None):
        """``root``: the cluster directory (kept: it belongs to the caller); a
        ``cluster.json`` in it names the database and Redis prefix to reuse.
        ``mariadb``/``redis``: running backends to share (else started here and
        stopped by ``stop()``). ``extra_sets``: PATH=VALUE settings for every node,
        after the cluster's own. ``node_sets``: a function of the cluster, called
        once MariaDB and Redis are up, giving {node index: [PATH=VALUE, ...]} for
        single nodes."""
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.owns_root = root is None
        self.root = os.path.abspath(root) if root else None
        self.extra_sets = list(extra_sets)
        self.node_sets = node_sets
        self.mariadb = mariadb
        self.redis = redis
        self.owns_mariadb = mariadb is None
        self.owns_redis = redis is None
        self.use_balancer = balancer
        self.balance = balance
        self.conf = conf or cluster_conf()
        self.size = nodes
        self.nodes = []
        self.nginx = None
        self.database = None
        self.redis_prefix = None
        self.fresh = True
        self.started = False
        self.stopped = False

    # ---- layout ----------------------------------------------------------------

    @property
    def push_path(self):
        return os.path.join(self.root, "push.log")

    @property
    def lb_port(self):
        """nginx's port (None without a balancer)."""
        return self.nginx.port if self.nginx else None

    @property
    def ports(self):
        return [n.port for n in self.nodes]

    def node(self, which):
        return which if isinstance(which, Node) else self.nodes[which]

    def sets(self):
        """The --set values of every node: the backends, the shared push file, fast
        test hashing, no per-address login limit; then ``extra_sets``."""
        db = self.mariadb
        sets = [
            "mariadb.host=" + _quote(HOST), "mariadb.port=%d" % db.port,
            "mariadb.user=" + _quote(db.USER), "mariadb.password=" + _quote(db.PASSWORD),
            "mariadb.database=" + _quote(self.database),
            "redis.host=" + _quote(HOST), "redis.port=%d" % self.redis.port,
            "redis.prefix=" + _quote(self.redis_prefix),
            "redis.presence_ttl=%d" % PRESENCE_TTL,
            "plugins.connection.presence_grace=%d" % PRESENCE_GRACE,
            'session.backend="redis"',
        ]
        for plugin in ("auth", "connection", "channel", "messaging", "admin"):
            sets.append('plugins.%s.backend="mariadb"' % plugin)
        sets += [
            'plugins.push.backend="log"', "plugins.push.file=" + _quote(self.push_path),
            "plugins.auth.argon2_t_cost=1", "plugins.auth.argon2_m_cost=256",
            "plugins.auth.login_max_failures_per_addr=100000",
            'http.trusted_proxies=["%s"]' % HOST,  # nginx: clients come from X-Forwarded-For
        ]
        return sets + self.extra_sets

    # ---- life cycle ------------------------------------------------------------

    def start(self):
        for path, what in ((chatd_bin(), "chatd binary (set CHATD_BIN)"),
                           (self.conf, "cluster config (set CHATD_CLUSTER_CONF)")):
            if not os.path.exists(path):
                raise RuntimeError("%s not found: %s" % (what, path))
        if self.root is None:
            self.root = tempfile.mkdtemp(prefix="chatd-cluster-")
        os.makedirs(self.root, exist_ok=True)
        try:
            if self.mariadb is None:
                self.mariadb = MariaDB().start()
            if self.redis is None:
                self.redis = Redis().start()
            self._choose_data()
            self.nodes = [Node(self, i) for i in range(self.size)]
            for i, sets in (self.node_sets(self) if self.node_sets else {}).items():
                self.nodes[i].extra_sets = list(sets)
            # All at once, as an orchestrator starts them: on a fresh database
            # they take turns at the migrations (a lock in MariaDB).
            for n in self.nodes:
                n.spawn()
            for n in self.nodes:
                n.wait_ready()
            if self.use_balancer:
                self.nginx = Nginx(os.path.join(self.root, "nginx"), self.ports,
                                   balance=self.balance).start()
        except BaseException:
            self._kill_everything()
            raise
        self.started = True
        return self

    def _choose_data(self):
        state = os.path.join(self.root, "cluster.json")
        if os.path.exists(state):
            with open(state) as f:
                saved = json.load(f)
            self.database, self.redis_prefix = saved["database"], saved["redis_prefix"]
            self.fresh = False
            return
        tag = os.urandom(5).hex()
        self.database = "chatd_" + tag
        self.redis_prefix = "chatd:%s:" % tag
        self.mariadb.create_database(self.database)
        with open(state + ".tmp", "w") as f:
            json.dump({"database": self.database, "redis_prefix": self.redis_prefix,
                       "mariadb_port": self.mariadb.port, "redis_port": self.redis.port}, f)
        os.replace(state + ".tmp", state)

    def alive(self):
        """Every node (and nginx) is running."""
        return (bool(self.nodes) and all(n.alive() for n in self.nodes)
                and (self.nginx is None or self.nginx.alive()))

    def kill9(self, which=None):
        """SIGKILL one node (index or Node), or every node when None."""
        for n in ([self.node(which)] if which is not None else self.nodes):
            n.kill9()

    def restart(self, which, timeout=READY_TIMEOUT):
        """Start a node again on its port and data dir; a running one is first
        stopped with SIGTERM (and must exit 0). Returns the seconds until ready."""
        n = self.node(which)
        if n.alive():
            n.terminate()
            code = n.wait_exit()
            if code != 0:
                raise AssertionError("%s exited with %s after SIGTERM; log:\n%s"
                                     % (n.name, code, tail(n.current_log())))
        t0 = time.monotonic()
        n.spawn()
        n.wait_ready(timeout)
        return time.monotonic() - t0

    def stop(self, check=True):
        """SIGTERM every running node at once and wait; stop nginx and the
        backends started here. With ``check``, raise AssertionError unless every
        node that was not killed on purpose exited 0. Returns {name: status}."""
        if self.stopped:
            return {}
        self.stopped = True
        codes, problems = {}, []
        for n in self.nodes:
            if n.alive():
                n.terminate()
            elif n.proc is not None and not n.killed:
                problems.append("%s had already exited with %s" % (n.name, n.proc.returncode))
        for n in self.nodes:
            if n.proc is None:
                continue
            was_running = n.proc.returncode is None
            code = n.wait_exit()
            codes[n.name] = code
            if was_running and code != 0:
                problems.append("%s exited with %s after SIGTERM (expected 0)" % (n.name, code))
        self._stop_services()
        if check and problems:
            logs = "\n".join("---- %s ----\n%s" % (n.name, tail(n.current_log()))
                             for n in self.nodes)
            raise AssertionError("; ".join(problems) + "; cluster dir %s; logs:\n%s"
                                 % (self.root, logs))
        return codes

    def _stop_services(self):
        if self.nginx is not None:
            self.nginx.stop()
        if self.owns_redis and self.redis is not None:
            self.redis.cleanup()
        if self.owns_mariadb and self.mariadb is not None:
            self.mariadb.cleanup()

    def _kill_everything(self):
        for n in self.nodes:
            n.kill9()
        self._stop_services()
        self.stopped = True

    def kill_all(self):
        """Crash everything at once (SIGKILL the nodes, stop the rest)."""
        self._kill_everything()

    def cleanup(self):
        """Remove the root directory if it was made here."""
        if self.owns_root and self.root and not os.environ.get("CHATD_E2E_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
            self.cleanup()
        else:
            try:
                self.stop(check=False)
            finally:
                sys.stderr.write("cluster dir kept at %s\n" % self.root)
        return False

    # ---- logs ------------------------------------------------------------------

    def log_text(self, which=None):
        """One node's logs, or every node's (each headed by its name) when None."""
        if which is not None:
            return self.node(which).log_text()
        return "".join("==== %s ====\n%s" % (n.name, n.log_text()) for n in self.nodes)

    def log_tail(self, lines=40):
        return "\n".join("==== %s ====\n%s" % (n.name, tail(n.log_text(), lines))
                         for n in self.nodes)


def node_metric(node, name):
    """A node's (an endpoint's) value of chatd_<name>, or None when it has no such series."""
    _, _, body = node.request("GET", "/metrics")
    text = body.decode() if isinstance(body, bytes) else str(body)
    for line in text.splitlines():
        if line.startswith("chatd_%s " % name):
            return float(line.split()[1])
    return None


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


# ---- backends shared by every cluster of a process ----------------------------------

BACKENDS_ENV = "CHATD_CLUSTER_BACKENDS"
_shared = None


def backends_env(mariadb, redis):
    """The value of CHATD_CLUSTER_BACKENDS that lets child processes share these."""
    return json.dumps({"mariadb": mariadb.describe(), "redis": redis.describe()})


def shared_backends():
    """(MariaDB, Redis) for every cluster of this process: the ones named by
    CHATD_CLUSTER_BACKENDS (started by a parent process), else started here once
    and stopped when the process exits."""
    global _shared
    if _shared is None:
        described = os.environ.get(BACKENDS_ENV)
        if described:
            d = json.loads(described)
            _shared = (MariaDB.attach(d["mariadb"]["port"], d["mariadb"]["socket"]),
                       Redis.attach(d["redis"]["port"]))
        else:
            db = MariaDB().start()
            try:
                r = Redis().start()
            except BaseException:
                db.cleanup()
                raise
            atexit.register(r.cleanup)
            atexit.register(db.cleanup)
            _shared = (db, r)
    return _shared
