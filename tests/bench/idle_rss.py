#!/usr/bin/python3
"""Measure chatd's resident memory idle and with N idle authenticated
WebSockets open (default 1000). Starts its own chatd on a free loopback port,
prints the figures, and stops by itself.

    tests/bench/idle_rss.py [--connections N] [--users U] [--bin build/core/chatd]
"""
import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402


async def hold(server, tokens, n):
    socks = []
    for i in range(n):
        socks.append(await harness.ws_connect(server, tokens[i % len(tokens)]))
    # every socket answers a request, so all are authenticated and dispatched
    for ws in socks[:: max(1, n // 50)]:
        await harness.ws_request(ws, {"type": "FETCH_USER_INVITECODE_REQUEST"})
    await asyncio.sleep(1.0)
    rss = harness.rss_kib(server.proc.pid)
    for ws in socks:
        await ws.close()
    return rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--bin", default=None)
    args = ap.parse_args()
    if args.bin:
        os.environ["CHATD_BIN"] = os.path.abspath(args.bin)
    with harness.Server(["plugins.auth.login_max_failures_per_addr=1000000"]) as srv:
        time.sleep(0.5)
        idle = harness.rss_kib(srv.proc.pid)
        tokens = [srv.new_user("rss").token for _ in range(args.users)]
        time.sleep(0.3)
        before = harness.rss_kib(srv.proc.pid)
        held = asyncio.run(hold(srv, tokens, args.connections))
        print("idle RSS:                      %7d KiB" % idle)
        print("after %d logins:              %7d KiB" % (args.users, before))
        print("with %d idle WebSockets:     %7d KiB" % (args.connections, held))
        print("growth per WebSocket:          %7.2f KiB" % ((held - before) / args.connections))


if __name__ == "__main__":
    main()
