"""Real backend servers for the multi-node tests, from Debian's packages,
started in a temporary directory on loopback and stopped afterwards:
MariaDB (mariadb-server), a primary with GTID replicas, Redis (redis-server),
a master with replicas, and Redis Sentinel (redis-sentinel).

Every process started here gets PR_SET_PDEATHSIG, so it dies with the test
process that started it even when that one is killed (meson's timeout, ^C):
nothing outlives a run. Start them from the main thread (the signal is tied to
the thread that forks)."""

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

HOST = "127.0.0.1"

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _libc = None


def child_kwargs(sig=signal.SIGKILL):
    """Popen keyword arguments making the child get ``sig`` when this process dies."""
    if _libc is None or threading.current_thread() is not threading.main_thread():
        return {}
    prctl = _libc.prctl
    number = int(sig)

    def die_with_parent():
        prctl(_PR_SET_PDEATHSIG, number, 0, 0, 0)

    return {"preexec_fn": die_with_parent}


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise RuntimeError("%s did not come up within %.0f s" % (what, timeout))


def port_open(port):
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def _terminate(proc, timeout):
    """SIGTERM (after SIGCONT, in case it was paused), wait, SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class MariaDB:
    """A private mariadbd: its own datadir, socket and loopback port.

    ``stop()`` shuts it down cleanly and keeps the datadir; ``restart()`` (or
    ``start()`` again) brings it back on the same datadir and port.
    """

    USER, PASSWORD = "chatd", "chatd-test-password"
    REPL_USER, REPL_PASSWORD = "repl", "chatd-test-replication"

    def __init__(self, server_id=None, extra_args=()):
        """``server_id``: write a binary log with GTIDs (domain server_id - 1),
        so that replicas can follow this server or it can be one. ``extra_args``:
        more mariadbd options (e.g. --performance-schema=ON)."""
        self.server_id = server_id
        self.dir = tempfile.mkdtemp(prefix="chatd-mariadb-")
        self.extra_args = list(extra_args)
        self.data = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.port = None
        self.proc = None
        self.log = None
        self.owned = True
        self.installed = False

    @classmethod
    def attach(cls, port, socket_path):
        """A handle on a server another process started (no start, stop or cleanup)."""
        self = cls.__new__(cls)
        self.dir = None
        self.extra_args = []
        self.data = None
        self.socket = socket_path
        self.port = port
        self.proc = None
        self.log = None
        self.owned = False
        self.installed = True
        return self

    def describe(self):
        """What ``attach`` needs, for another process."""
        return {"port": self.port, "socket": self.socket}

    def start(self):
        if not self.owned:
            raise RuntimeError("start(): this MariaDB belongs to another process")
        if self.alive():
            return self
        root = ["--user=root"] if os.geteuid() == 0 else []
        if not self.installed:
            self.port = free_port()
            subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + self.data,
                            "--auth-root-authentication-method=normal", "--skip-test-db"] + root,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if self.log is None:
            self.log = open(os.path.join(self.dir, "mariadb.log"), "ab")
        if self.server_id:
            binlog = ["--log-bin=" + os.path.join(self.dir, "binlog"),
                      "--server-id=%d" % self.server_id,
                      "--gtid-domain-id=%d" % (self.server_id - 1), "--binlog-format=ROW",
                      "--log-slave-updates", "--relay-log=" + os.path.join(self.dir, "relay")]
        else:
            binlog = ["--skip-log-bin"]
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--datadir=" + self.data, "--socket=" + self.socket,
             "--port=%d" % self.port, "--bind-address=" + HOST, "--skip-name-resolve",
             "--pid-file=" + os.path.join(self.dir, "mariadbd.pid"),
             "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=48M",
             "--max-connections=500"] + binlog + self.extra_args + root,
            stdout=self.log, stderr=subprocess.STDOUT, **child_kwargs())
        wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, 60, "mariadbd")
        if self.proc.poll() is not None:
            raise RuntimeError("mariadbd exited: see %s/mariadb.log" % self.dir)
        if not self.installed:
            # each server's own accounts: not in the binary log, so that a
            # replica that creates its own does not meet them again
            self.sql("SET sql_log_bin = 0; "
                     "CREATE USER '%s'@'%s' IDENTIFIED BY '%s'; GRANT ALL ON *.* TO '%s'@'%s'; "
                     "CREATE USER '%s'@'%s' IDENTIFIED BY '%s'; "
                     "GRANT REPLICATION SLAVE ON *.* TO '%s'@'%s';"
                     % (self.USER, HOST, self.PASSWORD, self.USER, HOST,
                        self.REPL_USER, HOST, self.REPL_PASSWORD, self.REPL_USER, HOST))
            self.installed = True
        return self

    def replicate_from(self, primary):
        """Make this server a read-only replica of ``primary`` (both started with
        a server_id), following it by GTID from the start of its binary log."""
        self.sql("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', "
                 "MASTER_PASSWORD='%s', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; "
                 "START SLAVE; SET GLOBAL read_only = 1;"
                 % (HOST, primary.port, primary.REPL_USER, primary.REPL_PASSWORD))
        return self

    def caught_up(self, primary, timeout=20.0):
        """Wait until this replica has applied everything ``primary`` has logged."""
        pos = primary.sql("SELECT @@gtid_binlog_pos", capture=True).strip()
        got = self.sql("SELECT MASTER_GTID_WAIT('%s', %f)" % (pos, timeout), capture=True)
        if got.strip() != "0":
            raise RuntimeError("replica not caught up with %s within %.0f s" % (pos, timeout))

    def status(self, name):
        """A global status counter (SHOW GLOBAL STATUS) as an integer."""
        out = self.sql("SHOW GLOBAL STATUS LIKE '%s'" % name, capture=True).split()
        return int(out[1]) if len(out) == 2 else 0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def sql(self, text, capture=False):
        """Run SQL as root over the socket; with ``capture``, return the output
        (tab-separated, no column names)."""
        res = subprocess.run(["mariadb", "--no-defaults", "-S", self.socket, "-uroot",
                              "--batch", "--skip-column-names", "-e", text],
                             check=True, stdout=subprocess.PIPE if capture else None)
        return res.stdout.decode("utf-8", "replace") if capture else None

    def create_database(self, name):
        self.sql("DROP DATABASE IF EXISTS `%s`; CREATE DATABASE `%s` CHARACTER SET utf8mb4;"
                 % (name, name))

    def drop_database(self, name):
        self.sql("DROP DATABASE IF EXISTS `%s`;" % name)

    def chatd_sets(self, database):
        """--set values that put the sessions and every SQL plugin on this server."""
        sets = ['session.backend="mariadb"', "mariadb.host=" + HOST, "mariadb.port=%d" % self.port,
                "mariadb.user=" + self.USER, 'mariadb.password="%s"' % self.PASSWORD,
                "mariadb.database=" + database]
        for plugin in ("auth", "connection", "channel", "messaging", "admin"):
            sets.append('plugins.%s.backend="mariadb"' % plugin)
        # the push outbox lives in the messaging plugin's store (the intents
        # are written in its transactions)
        sets.append('plugins.push.store="mariadb"')
        return sets

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        """Clean shutdown; the datadir (and the port) stay for a restart."""
        if self.proc is not None:
            _terminate(self.proc, 30)
        self.proc = None

    def restart(self):
        """Stop (if running) and start again on the same datadir and port."""
        self.stop()
        return self.start()

    def cleanup(self):
        if not self.owned:
            return
        self.stop()
        if self.log is not None:
            self.log.close()
            self.log = None
        shutil.rmtree(self.dir, ignore_errors=True)


class _Daemon:
    """A server process started here, with a temporary directory of its own."""

    owned = True
    proc = None
    dir = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            _terminate(self.proc, 10)
        self.proc = None

    def cleanup(self):
        if not self.owned:
            return
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis(_Daemon):
    """A private redis-server on a loopback port, no persistence."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="chatd-redis-")
        self.port = None
        self.proc = None
        self.owned = True

    @classmethod
    def attach(cls, port):
        """A handle on a server another process started (no start, stop or cleanup)."""
        self = cls.__new__(cls)
        self.dir = None
        self.port = port
        self.proc = None
        self.owned = False
        return self

    def describe(self):
        return {"port": self.port}

    def start(self, port=None, replica_of=None):
        """``replica_of``: a Redis whose replica this one is (read-only)."""
        if not self.owned:
            raise RuntimeError("start(): this Redis belongs to another process")
        self.port = port or self.port or free_port()
        follow = ["--replicaof", HOST, str(replica_of.port)] if replica_of else []
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", HOST, "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--repl-diskless-sync-delay", "0"]
            + follow,
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **child_kwargs())
        wait_for(lambda: port_open(self.port), 20, "redis-server")
        if replica_of:  # a replica is one once it holds the master's data
            wait_for(lambda: "master_link_status:up" in self.cli("INFO", "replication"), 20,
                     "the replica's first sync")
        return self

    def cli(self, *args):
        """One command through redis-cli: its output, stripped."""
        return redis_cli(self.port, *args)

    def kill9(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self):
        """Stop and start again on the same port (empty: no persistence)."""
        self.stop()
        return self.start(self.port)


def redis_cli(port, *args):
    res = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port)] + [str(a) for a in args],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    return res.stdout.decode("utf-8", "replace").strip()


class Sentinel(_Daemon):
    """A private redis-sentinel on a loopback port watching ``master`` (a Redis)
    as ``name``; quorum 2, and short down-after and failover timeouts so that a
    failover takes a second or two."""

    def __init__(self, master, name, quorum=2, down_after_ms=500, failover_timeout_ms=2000):
        self.dir = tempfile.mkdtemp(prefix="chatd-sentinel-")
        self.port = free_port()
        self.proc = None
        self.name = name
        # a file of its own: Sentinel rewrites it with what it learns
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w") as f:
            f.write("bind %s\nport %d\ndir %s\n" % (HOST, self.port, self.dir)
                    + "sentinel monitor %s %s %d %d\n" % (name, HOST, master.port, quorum)
                    + "sentinel down-after-milliseconds %s %d\n" % (name, down_after_ms)
                    + "sentinel failover-timeout %s %d\n" % (name, failover_timeout_ms)
                    + "sentinel parallel-syncs %s 1\n" % name)

    @property
    def address(self):
        return "%s:%d" % (HOST, self.port)

    def start(self):
        self.proc = subprocess.Popen(["redis-sentinel", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     **child_kwargs())
        wait_for(lambda: port_open(self.port), 20, "redis-sentinel")
        return self

    def knows(self):
        """(other Sentinels, replicas) this Sentinel has found of its master."""
        flat = redis_cli(self.port, "SENTINEL", "master", self.name).split("\n")
        info = dict(zip(flat[0::2], flat[1::2]))
        return int(info.get("num-other-sentinels", 0)), int(info.get("num-slaves", 0))

    def master(self):
        """The master's port as this Sentinel names it now, or None."""
        out = redis_cli(self.port, "SENTINEL", "get-master-addr-by-name", self.name).split()
        return int(out[1]) if len(out) == 2 and out[1].isdigit() else None
