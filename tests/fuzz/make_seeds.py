#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

    tests/fuzz/make_seeds.py [--check]

Seeds are small, meaningful inputs: valid requests, handshakes, frames,
messages and configurations, plus typical malformed ones. Files this script
does not write (crash and leak reproducers saved by hand) are left alone.
--check only reports whether the committed seeds match this script.

Names used below come from tests/fuzz/world.c: the world's user is "fuzzer"
(password "fuzz-password-1"), "fuzzpeer" is an accepted connection, "fuzzthird"
has a pending invitation to "fuzzer", channel 1 is direct with fuzzpeer and
channel 2 a group. In fuzz_http inputs, $TOKEN stands for a live session token.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
MASK = b"\x12\x34\x56\x78"

USER, PEER, THIRD, PASSWORD = "fuzzer", "fuzzpeer", "fuzzthird", "fuzz-password-1"


def frame(opcode, payload=b"", fin=True, mask=MASK, rsv=0):
    """A client frame: masked unless mask is None."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    bit = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(obj):
    return json.dumps(obj, separators=(",", ":"))


def http(method, path, headers=(), body=b"", version="HTTP/1.1"):
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s %s" % (method, path, version), "Host: chatd"]
    lines += list(headers)
    if body and not any(h.lower().startswith(("content-length", "transfer-encoding"))
                        for h in headers):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


CREDS = text({"username": USER, "password": PASSWORD})
WS_HEADERS = ["Upgrade: websocket", "Connection: Upgrade",
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]


def http_seeds():
    s = {}
    s["get-healthz"] = http("GET", "/healthz")
    s["get-metrics"] = http("GET", "/metrics", ["Accept: text/plain"])
    s["get-unknown-path"] = http("GET", "/no/such/path?x=1&y=%41")
    s["get-percent-path"] = http("GET", "/%2e%2e/%41pi/v1%2fauth")
    s["get-bad-percent"] = http("GET", "/a%0gb%00")
    s["method-not-allowed"] = http("GET", "/api/v1/auth/login")
    s["register"] = http("POST", "/api/v1/auth/register", ["Content-Type: application/json"],
                         text({"username": "http.user-1", "password": "long enough pw"}))
    s["register-bad-name"] = http("POST", "/api/v1/auth/register", [],
                                  text({"username": "a b", "password": "x"}))
    s["register-not-object"] = http("POST", "/api/v1/auth/register", [], "[1,2,3]")
    s["login"] = http("POST", "/api/v1/auth/login", ["Content-Type: application/json"], CREDS)
    s["login-wrong-password"] = http("POST", "/api/v1/auth/login", [],
                                     text({"username": USER, "password": "wrong password"}))
    s["login-unknown-user"] = http("POST", "/api/v1/auth/login", [],
                                   text({"username": "nobody", "password": 12}))
    s["register-login-pipelined"] = (
        http("POST", "/api/v1/auth/register", [],
             text({"username": "pipeline", "password": "pipeline-pw"})) +
        http("POST", "/api/v1/auth/login", [],
             text({"username": "PIPELINE", "password": "pipeline-pw"})) +
        http("GET", "/healthz", ["Connection: close"]))
    s["logout-bearer"] = http("POST", "/api/v1/auth/logout", ["Authorization: Bearer $TOKEN"])
    s["logout-cookie"] = http("POST", "/api/v1/auth/logout",
                              ["Cookie: theme=dark; CHATSESSION=$TOKEN; other=1"])
    s["logout-no-token"] = http("POST", "/api/v1/auth/logout")
    s["unregister"] = http("POST", "/api/v1/auth/unregister", ["Authorization: Bearer $TOKEN"])
    s["ws-upgrade-bearer"] = (
        http("GET", "/ws/v1/message", WS_HEADERS + ["Authorization: Bearer $TOKEN"]) +
        frame(1, text({"type": "KEEP_ALIVE"})) +
        frame(1, text({"type": "FETCH_CONNECTIONS_REQUEST", "requestId": "r1"})) +
        frame(8, struct.pack(">H", 1000)))
    s["ws-upgrade-query-token"] = http(
        "GET", "/ws/v1/message?access_token=$TOKEN", WS_HEADERS + ["Origin: https://chat.example"])
    s["ws-upgrade-cookie"] = http("GET", "/ws/v1/message", WS_HEADERS + ["Cookie: CHATSESSION=$TOKEN"])
    s["ws-upgrade-bad-version"] = http(
        "GET", "/ws/v1/message", WS_HEADERS[:3] + ["Sec-WebSocket-Version: 8",
                                                   "Authorization: Bearer $TOKEN"])
    s["ws-upgrade-no-key"] = http("GET", "/ws/v1/message",
                                  ["Upgrade: websocket", "Connection: keep-alive, Upgrade"])
    s["ws-upgrade-no-session"] = http("GET", "/ws/v1/message",
                                      WS_HEADERS + ["Authorization: Bearer AAAA"])
    s["upgrade-elsewhere"] = http("POST", "/api/v1/auth/login", WS_HEADERS, CREDS)
    s["chunked-body"] = http("POST", "/api/v1/auth/login", ["Transfer-Encoding: chunked"],
                             "%x\r\n%s\r\n0\r\n\r\n" % (len(CREDS), CREDS))
    s["keepalive-pipeline"] = (http("GET", "/healthz") + http("GET", "/metrics") +
                               http("GET", "/healthz", ["Connection: close"]))
    s["http10"] = http("GET", "/healthz", version="HTTP/1.0")
    s["bad-header-name"] = b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n"
    s["bad-request-line"] = b"GET\x00/ HTTP/9.9\r\n\r\n"
    s["huge-content-length"] = http("POST", "/api/v1/auth/register",
                                    ["Content-Length: 99999999999"], "{}")
    s["short-body"] = http("POST", "/api/v1/auth/login", ["Content-Length: 100"], '{"user')
    s["connect"] = b"CONNECT chatd:443 HTTP/1.1\r\nHost: chatd:443\r\n\r\n"
    return s


def ws_seeds():
    s = {}
    s["text-keepalive"] = frame(1, text({"type": "KEEP_ALIVE"}))
    s["text-invitecode"] = frame(1, text({"type": "FETCH_USER_INVITECODE_REQUEST",
                                          "requestId": "a"}))
    s["two-messages"] = (frame(1, text({"type": "LEAVE_REQUEST"})) +
                         frame(1, text({"type": "FETCH_CHANNELS_LIST_REQUEST"})))
    msg = text({"type": "FETCH_MESSAGES_REQUEST", "channelId": 1, "limit": 5})
    s["fragmented-with-ping"] = (frame(1, msg[:10], fin=False) + frame(9, "ping!") +
                                 frame(0, msg[10:20], fin=False) + frame(0, msg[20:]))
    s["ping"] = frame(9, "hello")
    s["pong"] = frame(10, "unsolicited")
    s["close-normal"] = frame(8, struct.pack(">H", 1000) + b"bye")
    s["close-empty"] = frame(8)
    s["close-bad-code"] = frame(8, struct.pack(">H", 999))
    s["close-one-byte"] = frame(8, b"\x03")
    s["binary"] = frame(2, b"\x00\x01\x02\xff")
    s["invalid-utf8"] = frame(1, b'{"type":"KEEP_ALIVE","x":"\xc0\xaf"}')
    s["utf8-split-fragments"] = (frame(1, b'{"type":"KEEP_ALIVE","x":"\xe2\x82', fin=False) +
                                 frame(0, b'\xac"}'))
    s["unmasked"] = frame(1, text({"type": "KEEP_ALIVE"}), mask=None)
    s["length16"] = frame(1, text({"type": "WRITE_MESSAGE", "channelId": 1,
                                   "content": "x" * 300}))
    s["length64-huge"] = b"\x81\xff" + struct.pack(">Q", 1 << 40) + MASK + b"abcd"
    s["reserved-opcode"] = frame(3, "?")
    s["rsv-bits"] = frame(1, text({"type": "KEEP_ALIVE"}), rsv=4)
    s["long-ping"] = frame(9, "p" * 130)
    s["continuation-first"] = frame(0, "orphan")
    s["fragmented-control"] = frame(9, "frag", fin=False)
    s["text-then-eof-midframe"] = frame(1, text({"type": "KEEP_ALIVE"})) + b"\x81\x85" + MASK
    return s


def json_seeds():
    s = {}
    s["keep-alive"] = {"type": "KEEP_ALIVE"}
    s["fetch-user-invitecode"] = {"type": "FETCH_USER_INVITECODE_REQUEST", "requestId": "1"}
    s["fetch-connections"] = {"type": "FETCH_CONNECTIONS_REQUEST"}
    s["fetch-connections-status"] = {"type": "FETCH_CONNECTIONS_REQUEST", "status": "ACCEPTED"}
    s["fetch-connections-bad-status"] = {"type": "FETCH_CONNECTIONS_REQUEST", "status": "MAYBE"}
    s["invite"] = {"type": "INVITE_REQUEST", "userInviteCode": "ABCDEFGHJK", "requestId": "i"}
    s["accept"] = {"type": "ACCEPT_REQUEST", "username": THIRD}
    s["reject"] = {"type": "REJECT_REQUEST", "username": THIRD}
    s["disconnect"] = {"type": "DISCONNECT_REQUEST", "username": THIRD}
    s["create-direct"] = {"type": "CREATE_REQUEST", "title": "hello",
                          "participantUsername": PEER}
    s["create-group"] = {"type": "CREATE_REQUEST", "title": "t\u00e9am",
                         "participantUsernames": [PEER, PEER, THIRD]}
    s["create-both-fields"] = {"type": "CREATE_REQUEST", "title": "x",
                               "participantUsername": PEER, "participantUsernames": [PEER]}
    s["create-self"] = {"type": "CREATE_REQUEST", "title": "me", "participantUsername": USER}
    s["fetch-channel-invitecode"] = {"type": "FETCH_CHANNEL_INVITECODE_REQUEST",
                                     "channelId": {"id": 1}}
    s["join"] = {"type": "JOIN_REQUEST", "inviteCode": "ZZZZZZZZZZ"}
    s["fetch-channels-list"] = {"type": "FETCH_CHANNELS_LIST_REQUEST"}
    s["enter"] = {"type": "ENTER_REQUEST", "channelId": 1, "requestId": "e"}
    s["enter-object-id"] = {"type": "ENTER_REQUEST", "channelId": {"id": 2}}
    s["leave"] = {"type": "LEAVE_REQUEST"}
    s["quit"] = {"type": "QUIT_REQUEST", "channelId": 99}
    s["write-message"] = {"type": "WRITE_MESSAGE", "channelId": 1, "content": "hi there",
                          "clientMessageId": "c-1"}
    s["write-message-empty"] = {"type": "WRITE_MESSAGE", "channelId": 2, "content": ""}
    s["fetch-messages"] = {"type": "FETCH_MESSAGES_REQUEST", "channelId": 1,
                           "beforeSequence": 10, "limit": 20}
    s["fetch-messages-bad-limit"] = {"type": "FETCH_MESSAGES_REQUEST", "channelId": 1,
                                     "limit": 0}
    s["read-ack"] = {"type": "READ_ACK", "channelId": 1, "messageSequence": 2}
    s["read-ack-negative"] = {"type": "READ_ACK", "channelId": {"id": -1},
                              "messageSequence": -5}
    s["unknown-type"] = {"type": "NO_SUCH_TYPE", "requestId": "u"}
    s["type-not-string"] = {"type": 7}
    s["long-request-id"] = {"type": "KEEP_ALIVE", "requestId": "r" * 65}
    out = {k: text(v).encode() for k, v in s.items()}
    out["malformed-json"] = b'{"type":"KEEP_ALIVE",'
    out["json-array"] = b'[{"type":"KEEP_ALIVE"}]'
    out["duplicate-keys"] = b'{"type":"LEAVE_REQUEST","type":"KEEP_ALIVE"}'
    out["huge-channel-id"] = b'{"type":"ENTER_REQUEST","channelId":18446744073709551616}'
    out["float-channel-id"] = b'{"type":"ENTER_REQUEST","channelId":1.5e300}'
    out["nested"] = b'{"type":"WRITE_MESSAGE","channelId":{"id":{"id":1}},"content":[[[[]]]]}'
    out["escaped-nul"] = b'{"type":"WRITE_MESSAGE","channelId":1,"content":"a\\u0000b"}'
    return out


CONFIG = {
    "minimal": 'server = { listen = "127.0.0.1:0"; };\n',
    "empty": "",
    "all-groups": """server = { listen = "[::1]:8080"; data_dir = "d"; max_connections = 10;
  max_connections_per_addr = 2; shutdown_timeout = 0; plugin_dir = ""; sql_dir = ""; };
http = { max_head_size = 512; max_body_size = 0; keepalive_timeout = 1; web_root = "";
  allowed_origins = ["https://a.example", "https://b.example"]; };
ws = { max_message_size = 128; ping_interval = 1; idle_timeout = 1; handshake_timeout = 1;
  max_outbuf = 4096; rate_limit = 1; rate_burst = 1; max_connections_per_user = 1; };
session = { ttl = 1; backend = "sqlite"; };
storage = { readers = 1; cpu_workers = 1; batch_max = 1; batch_wait_us = 0; retries = 0;
  sqlite = { path = "x.db"; synchronous = "normal"; busy_timeout = 0; }; };
log = { level = "debug"; file = ""; };
""",
    "plugins": """plugins = (
  { name = "auth"; backend = "sqlite"; argon2_t_cost = 1; ratio = 0.5; on = true;
    nested = { list = (1, "two", [3, 4]); }; },
  { name = "push"; path = "/nonexistent/push.so"; file = "push.log"; }
);
""",
    "plugins-duplicate": 'plugins = ( { name = "a"; }, { name = "a"; } );\n',
    "plugins-no-name": 'plugins = ( { backend = "sqlite"; } );\n',
    "plugins-not-list": 'plugins = { name = "auth"; };\n',
    "plugins-path-not-string": 'plugins = ( { name = "auth"; path = 5; } );\n',
    "unknown-setting": 'server = { lisen = "127.0.0.1:1"; };\n',
    "unknown-group": 'storage = { redis = { host = "x"; }; };\nextra = 1;\n',
    "wrong-types": 'http = { max_head_size = "big"; allowed_origins = [1, 2]; };\nlog = { level = 3; };\n',
    "out-of-range": 'ws = { max_message_size = 1; max_outbuf = 9223372036854775807L; };\n',
    "origins-too-many": "http = { allowed_origins = [%s]; };\n" % ", ".join(
        '"o%d"' % i for i in range(40)),
    "libconfig-syntax": """# comment
// comment
/* comment */
server : { listen = "127.0.0.1:" "0"; max_connections = 0x10; shutdown_timeout = 10L; };
ws = { ping_interval = 30; rate_limit = 1.5e3; };
log = { level = "\\x69nfo"; };
""",
    "syntax-error": 'server = { listen = "127.0.0.1:0" \n',
    "override-listen": 'server.listen="0.0.0.0:9"',
    "override-plain-string": "log.level=debug",
    "override-plugin": "plugins.auth.argon2_t_cost=3",
    "override-plugin-index": 'plugins.[0].name="other"',
    "override-list": 'http.allowed_origins=["https://x.example"]',
    "override-new-group": "a.b.c.d=1",
    "override-no-path": "=value",
    "override-no-equals": "server.listen",
    "override-group-value": "server={listen=\"1.2.3.4:5\";}",
}


def write(target, seeds, check):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    stale = []
    for name, data in sorted(seeds.items()):
        if isinstance(data, str):
            data = data.encode()
        path = os.path.join(d, name)
        old = None
        if os.path.exists(path):
            with open(path, "rb") as f:
                old = f.read()
        if old != data:
            stale.append(path)
            if not check:
                with open(path, "wb") as f:
                    f.write(data)
    return stale


def main():
    check = "--check" in sys.argv[1:]
    config = dict(CONFIG)
    with open(os.path.join(HERE, "..", "..", "etc", "chatd.conf"), "rb") as f:
        config["etc-chatd.conf"] = f.read()
    stale = []
    stale += write("fuzz_http", http_seeds(), check)
    stale += write("fuzz_ws", ws_seeds(), check)
    stale += write("fuzz_json", json_seeds(), check)
    stale += write("fuzz_config", config, check)
    for p in stale:
        print(("stale: " if check else "wrote: ") + os.path.relpath(p))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
