"""nginx in front of the chatd nodes of a test cluster.

``nginx_config`` is a self-contained nginx.conf for a temporary
directory: every path nginx writes to (pid, logs, temp files) is inside it,
it listens on 127.0.0.1 only, stays in the foreground and runs as one process
(no master/worker split), so a plain Popen owns it and PR_SET_PDEATHSIG takes
it down with the test. ``Nginx`` starts and stops it. ``process_config`` is
that process part alone, for an nginx of the tests serving something else
(``Nginx(..., make_config=...)``; tests/bench/push_webhook.py's receiver).

The proxying itself follows contrib/nginx/chatd.conf (WebSocket upgrade on
/ws/, long read timeout, X-Forwarded-For, keep-alive to the nodes). Only the
balancing differs: round robin by default, so consecutive requests and
handshakes alternate between nodes deterministically.

Run as a script to print a config: ``balancer.py LISTEN_PORT NODE_PORT...``.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from backends import HOST, child_kwargs, free_port, port_open  # noqa: E402

NGINX = "nginx"

# What every nginx of the tests shares: one foreground process whose files
# are all in the directory; {http} is the rest of the http block.
_PROCESS = """\
# Test-time nginx ({what}); generated, do not edit.
{user}daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 16384;
pid {dir}/nginx.pid;
error_log {dir}/error.log {error_level};

events {{
    worker_connections 8192;
}}

http {{
    access_log {access_log};
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
{http}}}
"""

_BALANCER = """\

    # As in contrib/nginx/chatd.conf: bodies over chatd's default
    # http.max_body_size are refused here, in chatd's JSON error shape (chatd
    # would answer from the head and close while nginx still sends the body:
    # a reset, and a 502). Heads go through up to 16 KiB, so chatd answers 431.
    client_max_body_size 64k;
    client_header_buffer_size 16k;
    large_client_header_buffers 4 16k;
    keepalive_timeout 65s;
    lingering_timeout 1s;   # after its own 413: do not wait 5 s for a quiet client
    keepalive_requests 100000;

    map $http_upgrade $chatd_connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    upstream chatd {{
{balance}{servers}
        keepalive 32;
    }}

    server {{
        listen {host}:{port} backlog=1024;

        error_page 413 = @chatd_body_too_large;
        location @chatd_body_too_large {{
            default_type application/json;
            return 413 '{{"error":"LIMIT_EXCEEDED","message":"request body too large"}}';
        }}

        location /ws/ {{
            proxy_pass http://chatd;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $chatd_connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout {ws_timeout}s;
            proxy_send_timeout {ws_timeout}s;
            proxy_connect_timeout 2s;
            proxy_buffering off;
        }}

        location / {{
            proxy_pass http://chatd;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout;
        }}
    }}
"""


def process_config(directory, what, http, access_log=True, error_level="warn"):
    """The text of an nginx.conf for ``directory``: one foreground process,
    every file it writes inside ``directory``, ``http`` (servers, upstreams)
    inside its http block; ``what`` names it in the first line."""
    return _PROCESS.format(
        what=what,
        user="user root;\n" if os.geteuid() == 0 else "",
        dir=directory,
        error_level=error_level,
        access_log=(os.path.join(directory, "access.log") if access_log else "off"),
        http=http,
    )


def nginx_config(directory, port, node_ports, balance="round_robin", ws_timeout=3600,
                 access_log=True, error_level="warn"):
    """The text of an nginx.conf for ``directory`` listening on ``port``."""
    if balance not in ("round_robin", "least_conn"):
        raise ValueError("balance: round_robin or least_conn, not %r" % balance)
    servers = "\n".join("        server %s:%d max_fails=1 fail_timeout=2s;" % (HOST, p)
                        for p in node_ports)
    http = _BALANCER.format(
        balance="        least_conn;\n" if balance == "least_conn" else "",
        servers=servers,
        host=HOST,
        port=port,
        ws_timeout=int(ws_timeout),
    )
    return process_config(directory, "a balancer for chatd nodes", http, access_log,
                          error_level)


def write_config(directory, text):
    """Write ``text`` as ``directory``/nginx.conf (and the temp folders); return its path."""
    os.makedirs(os.path.join(directory, "tmp"), exist_ok=True)
    path = os.path.join(directory, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def available():
    return shutil.which(NGINX) is not None


class Nginx:
    """One foreground nginx process balancing over ``node_ports``, or, with
    ``make_config`` (a function of the directory and the port returning the
    text of nginx.conf, e.g. built with ``process_config``), serving whatever
    that config says."""

    def __init__(self, directory, node_ports=(), port=None, make_config=None, **config):
        self.dir = os.path.abspath(directory)
        self.node_ports = list(node_ports)
        self.port = port
        self.config = config
        self.make_config = make_config or (
            lambda directory, port: nginx_config(directory, port, self.node_ports, **self.config))
        self.proc = None
        self.conf_path = None
        self._out = None

    def start(self, timeout=15.0):
        os.makedirs(self.dir, exist_ok=True)
        for _ in range(5):  # the free port may be taken between probe and bind
            port = self.port or free_port()
            self.conf_path = write_config(self.dir, self.make_config(self.dir, port))
            self._out = open(os.path.join(self.dir, "nginx.out"), "ab")
            self.proc = subprocess.Popen([NGINX, "-c", self.conf_path, "-p", self.dir + "/"],
                                         stdin=subprocess.DEVNULL, stdout=self._out,
                                         stderr=subprocess.STDOUT, **child_kwargs())
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if port_open(port):
                    self.port = port
                    return self
                time.sleep(0.02)
            if self.proc.poll() is None:
                self.stop()
                raise RuntimeError("nginx not listening within %.0f s; see %s"
                                   % (timeout, self.dir))
            self._out.close()
            self._out = None
            if self.port:  # a fixed port: do not try others
                break
        raise RuntimeError("nginx exited at start; error log:\n%s" % self.error_log())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM (nginx's fast shutdown), SIGKILL if it lingers. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.proc = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def error_log(self):
        text = ""
        for name in ("nginx.out", "error.log"):
            try:
                with open(os.path.join(self.dir, name), "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return text


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: balancer.py LISTEN_PORT NODE_PORT... (prints an nginx.conf)")
    sys.stdout.write(nginx_config(os.getcwd(), int(sys.argv[1]),
                                  [int(p) for p in sys.argv[2:]]))
