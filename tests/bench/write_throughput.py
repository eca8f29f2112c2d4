#!/usr/bin/python3
"""Durable write throughput of chatd on the embedded store: acknowledged
WRITE_MESSAGEs per second (each also delivered to an entered reader), with
group commit (storage.batch_max=128) and without it (storage.batch_max=1:
one transaction and one fsync per message). Starts its own chatd per run on a
free loopback port, drives it from several client processes, prints one
table, and stops by itself after --seconds per run.

    tests/bench/write_throughput.py [--seconds 5] [--pairs 16] [--window 32]
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402

PAYLOAD = "x" * 64


async def open_ws(uri, token):
    import websockets
    return await websockets.connect(uri, extra_headers=[("Authorization", "Bearer " + token)],
                                    max_size=1 << 22, ping_interval=None)


async def pair_loop(uri, pair, seconds, window, start_at):
    """A writer keeps `window` writes in flight; its partner, entered in their
    direct channel, reads the deliveries. Returns (acked, delivered, latencies)."""
    channel, wtok, rtok = pair
    ws, rd = await open_ws(uri, wtok), await open_ws(uri, rtok)
    await rd.send(json.dumps({"type": "ENTER_REQUEST", "channelId": channel}))
    assert json.loads(await rd.recv())["type"] == "ENTER_RESPONSE"
    while time.time() < start_at:
        await asyncio.sleep(0.005)
    state = {"sent": 0, "acked": 0, "delivered": 0}
    lat, t_sent = [], {}
    deadline = time.monotonic() + seconds

    async def send_one():
        rid = str(state["sent"])
        t_sent[rid] = time.monotonic()
        state["sent"] += 1
        await ws.send(json.dumps({"type": "WRITE_MESSAGE", "channelId": channel,
                                  "content": PAYLOAD, "requestId": rid}))

    async def reader():
        async for raw in rd:
            if json.loads(raw).get("type") == "NOTIFY_MESSAGE":
                state["delivered"] += 1

    rtask = asyncio.ensure_future(reader())
    for _ in range(window):
        await send_one()
    while state["acked"] < state["sent"]:
        msg = json.loads(await ws.recv())
        if msg.get("type") == "WRITE_MESSAGE_ACK":
            state["acked"] += 1
            lat.append(time.monotonic() - t_sent.pop(msg["requestId"]))
            if time.monotonic() < deadline:
                await send_one()
        elif msg.get("type") == "ERROR":
            raise RuntimeError("server error: %r" % msg)
    for _ in range(200):  # let the last deliveries arrive
        if state["delivered"] >= state["acked"]:
            break
        await asyncio.sleep(0.01)
    rtask.cancel()
    await ws.close()
    await rd.close()
    return state["acked"], state["delivered"], lat


def client_proc(args):
    pairs, uri, seconds, window, start_at = args

    async def all_pairs():
        return await asyncio.gather(*[pair_loop(uri, p, seconds, window, start_at)
                                      for p in pairs])
    res = asyncio.run(all_pairs())
    return sum(r[0] for r in res), sum(r[1] for r in res), [x for r in res for x in r[2]]


async def request(ws, msg, want):
    """Send msg and return the reply of type want, skipping notifications."""
    await harness.ws_send(ws, msg)
    while True:
        r = await harness.ws_recv(ws)
        if r["type"] in (want, "ERROR"):
            return r


async def setup(srv, n):
    """n pairs of friends, each with a direct channel: (channel, writer token, reader token)."""
    pairs = []
    for _ in range(n):
        a, b = srv.new_user("bw"), srv.new_user("br")
        wa, wb = await harness.ws_connect(srv, a.token), await harness.ws_connect(srv, b.token)
        await request(wa, {"type": "INVITE_REQUEST", "userInviteCode": b.invite_code},
                      "INVITE_RESPONSE")
        await request(wb, {"type": "ACCEPT_REQUEST", "username": a.username}, "ACCEPT_RESPONSE")
        r = await request(wa, {"type": "CREATE_REQUEST", "title": "bench",
                               "participantUsername": b.username}, "CREATE_RESPONSE")
        pairs.append((r["channelId"]["id"], a.token, b.token))
        await wa.close()
        await wb.close()
    return pairs


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(label, sets, args):
    with harness.Server(sets + ["plugins.auth.login_max_failures_per_addr=1000000"]) as srv:
        pairs = asyncio.run(setup(srv, args.pairs))
        procs = max(1, min(args.processes, len(pairs)))
        chunks = [pairs[i::procs] for i in range(procs)]
        start_at = time.time() + 1.0
        with multiprocessing.Pool(procs) as pool:
            pending = pool.map_async(client_proc, [(c, srv.ws_uri(), args.seconds, args.window,
                                                    start_at) for c in chunks])
            time.sleep(max(0.0, start_at - time.time()))
            cpu0, t0 = cpu_seconds(srv.proc.pid), time.monotonic()
            results = pending.get()
        wall = time.monotonic() - t0
        cpu = cpu_seconds(srv.proc.pid) - cpu0
    acked = sum(r[0] for r in results)
    delivered = sum(r[1] for r in results)
    lat = sorted(x for r in results for x in r[2])

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else 0.0
    print("%-22s %8d %9d %9.0f %8.2f %8.2f %8.2f %6.2f" % (
        label, acked, delivered, acked / wall, pct(0.5), pct(0.99), pct(0.999), cpu / wall))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pairs", type=int, default=16, help="writer/reader pairs")
    ap.add_argument("--window", type=int, default=32, help="writes in flight per writer")
    ap.add_argument("--processes", type=int, default=2, help="client processes")
    args = ap.parse_args()
    print("%d writer/reader pairs in direct channels, %d writes in flight per writer, "
          "%.0f s per run, 64-byte messages, synchronous=full"
          % (args.pairs, args.window, args.seconds))
    print("%-22s %8s %9s %9s %8s %8s %8s %6s" % ("run", "acked", "delivered", "acks/s",
                                                "p50 ms", "p99 ms", "p999 ms", "cores"))
    run_once("group commit (128)", ["storage.batch_max=128"], args)
    run_once("no group commit (1)", ["storage.batch_max=1"], args)


if __name__ == "__main__":
    main()
