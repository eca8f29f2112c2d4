"""Real backend servers for the multi-node tests, from Debian's packages,
started in a temporary directory on loopback and stopped afterwards:
MariaDB (mariadb-server) and Redis (redis-server)."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HOST = "127.0.0.1"


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


class MariaDB:
    """A private mariadbd: its own datadir, socket and loopback port."""

    USER, PASSWORD = "chatd", "chatd-test-password"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="chatd-mariadb-")
        self.port = None
        self.proc = None

    def start(self):
        data = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.port = free_port()
        root = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + data,
                        "--auth-root-authentication-method=normal", "--skip-test-db"] + root,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.log = open(os.path.join(self.dir, "mariadb.log"), "wb")
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--datadir=" + data, "--socket=" + self.socket,
             "--port=%d" % self.port, "--bind-address=" + HOST, "--skip-name-resolve",
             "--pid-file=" + os.path.join(self.dir, "mariadbd.pid"),
             "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=48M",
             "--max-connections=500", "--skip-log-bin"] + root,
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, 60, "mariadbd")
        if self.proc.poll() is not None:
            raise RuntimeError("mariadbd exited: see %s/mariadb.log" % self.dir)
        self.sql("CREATE USER '%s'@'%s' IDENTIFIED BY '%s'; GRANT ALL ON *.* TO '%s'@'%s';"
                 % (self.USER, HOST, self.PASSWORD, self.USER, HOST))
        return self

    def sql(self, text):
        subprocess.run(["mariadb", "--no-defaults", "-S", self.socket, "-uroot", "-e", text],
                       check=True)

    def create_database(self, name):
        self.sql("DROP DATABASE IF EXISTS `%s`; CREATE DATABASE `%s` CHARACTER SET utf8mb4;"
                 % (name, name))

    def chatd_sets(self, database):
        """--set values that put the sessions and every SQL plugin on this server."""
        sets = ['session.backend="mariadb"', "mariadb.host=" + HOST, "mariadb.port=%d" % self.port,
                "mariadb.user=" + self.USER, 'mariadb.password="%s"' % self.PASSWORD,
                "mariadb.database=" + database]
        for plugin in ("auth", "connection", "channel", "messaging"):
            sets.append('plugins.%s.backend="mariadb"' % plugin)
        return sets

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A private redis-server on a loopback port, no persistence."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="chatd-redis-")
        self.port = None
        self.proc = None

    def start(self, port=None):
        self.port = port or self.port or free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", HOST, "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(lambda: port_open(self.port), 20, "redis-server")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
