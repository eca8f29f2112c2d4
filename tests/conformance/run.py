#!/usr/bin/python3
"""RFC 6455 conformance runner for chatd's WebSocket endpoint.

Each case opens its own authenticated WebSocket (``?access_token=``) over a raw
socket, writes exact bytes, and checks the server's answer against what RFC 6455
requires. Every frame the server sends is also checked (unmasked, no RSV bits,
known opcode, control frames short and unfragmented, text and close reasons valid
UTF-8, close codes allowed on the wire).

Output: one ``PASS <id> <name>`` / ``FAIL <id> <name>: <why>`` line per case, then
``N passed, M failed``. The exit status is 1 when any case failed.

Usage: run.py [-v] [-k SUBSTRING]...
  -k SUBSTRING   run only cases whose id or name contains SUBSTRING (repeatable)
  -v             on failure, also print the tail of the server log

Environment: CHATD_BIN and CHATD_CONF as for tests/e2e/harness.py.
"""

import base64
import hashlib
import json
import os
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402

HOST = harness.HOST
WS_PATH = harness.WS_PATH
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
KNOWN_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG)
OPNAMES = {OP_CONT: "continuation", OP_TEXT: "text", OP_BINARY: "binary",
           OP_CLOSE: "close", OP_PING: "ping", OP_PONG: "pong"}

READ_TIMEOUT = 5.0   # for a frame the server must send
EOF_TIMEOUT = 3.0    # for the TCP close after the closing handshake

REQ_TYPE = "FETCH_USER_INVITECODE_REQUEST"
RESP_TYPE = "FETCH_USER_INVITECODE_RESPONSE"

SMALL_LIMIT = 1024
LARGE_LIMIT = 262144


class Fail(Exception):
    """A case failed; the message says what was expected and what came."""


class Violation(Fail):
    """The server sent something RFC 6455 forbids."""


# ---- frames -----------------------------------------------------------------------


def mask_bytes(payload, key):
    if not payload:
        return b""
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, form=None, length=None,
          key=None):
    """One frame as bytes.

    ``form``: '7', '16' or '64' forces that payload length encoding (default: the
    minimal one). ``length`` overrides the announced length. ``key``: the 4-byte
    masking key (default: random).
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    if form is None:
        form = "7" if n < 126 else "16" if n < 65536 else "64"
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    mbit = 0x80 if mask else 0
    if form == "7":
        head = bytes([b0, mbit | n])
    elif form == "16":
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    if key is None:
        key = os.urandom(4)
    return head + key + mask_bytes(payload, key)


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


def request(rid, size=None):
    """A FETCH_USER_INVITECODE_REQUEST with requestId ``rid`` (str, or raw bytes that
    go between the quotes unchanged), padded with JSON whitespace to ``size`` bytes."""
    rid_bytes = rid if isinstance(rid, bytes) else json.dumps(rid)[1:-1].encode("utf-8")
    head = b'{"type":"' + REQ_TYPE.encode() + b'","requestId":"' + rid_bytes + b'"'
    if size is None:
        return head + b"}"
    pad = size - len(head) - 1
    if pad < 0:
        raise ValueError("request of %d bytes cannot be %d bytes" % (len(head) + 1, size))
    return head + b" " * pad + b"}"


def split_fragments(payload, pieces, opcode=OP_TEXT):
    """``payload`` cut into frames: a data frame then continuations, FIN on the last.
    ``pieces`` is a list of byte strings (empty ones allowed) whose join is payload."""
    assert b"".join(pieces) == payload
    out = b""
    for i, piece in enumerate(pieces):
        op = opcode if i == 0 else OP_CONT
        out += frame(op, piece, fin=(i == len(pieces) - 1))
    return out


def chunks(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def utf8_ok(data):
    try:
        data.decode("utf-8", "strict")  # rejects overlongs, surrogates, > U+10FFFF
        return True
    except UnicodeDecodeError:
        return False


def valid_close_code_on_wire(code):
    """Codes an endpoint may put in a Close frame (RFC 6455 section 7.4)."""
    if 1000 <= code <= 2999:
        return code not in (1004, 1005, 1006, 1015)
    return 3000 <= code <= 4999


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.masked = masked
        self.payload = payload

    @property
    def code(self):
        if self.opcode == OP_CLOSE and len(self.payload) >= 2:
            return struct.unpack("!H", self.payload[:2])[0]
        return None

    @property
    def reason(self):
        return self.payload[2:] if self.opcode == OP_CLOSE else b""

    def describe(self):
        name = OPNAMES.get(self.opcode, "opcode %#x" % self.opcode)
        if self.opcode == OP_CLOSE:
            if not self.payload:
                return "close frame with an empty payload (no status code)"
            if self.code is None:
                return "close frame with 1-byte payload %r" % self.payload
            return "close %d %r" % (self.code, self.reason[:60])
        text = self.payload[:120]
        more = "..." if len(self.payload) > 120 else ""
        return "%s frame (%d bytes) %r%s" % (name, len(self.payload), text, more)


# ---- the client -------------------------------------------------------------------


class Conn:
    """An authenticated WebSocket over a plain socket, with full control of the bytes."""

    def __init__(self, port, token, timeout=READ_TIMEOUT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False
        self.reset = False
        self.close_sent = False
        self.close_received = False
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s?access_token=%s HTTP/1.1\r\n"
               "Host: %s:%d\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (WS_PATH, token, HOST, port, key))
        self.sock.sendall(req.encode("ascii"))
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise Fail("opening handshake: connection ended before the response "
                           "head; got %r" % self.buf[:200])
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        status = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.status_line = lines[0]
        self.headers = headers
        if len(status) < 2 or status[1] != "101":
            raise Fail("opening handshake: expected 101, got %r" % lines[0])
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != want:
            raise Violation("opening handshake: Sec-WebSocket-Accept %r, expected %r"
                            % (headers.get("sec-websocket-accept"), want))
        if headers.get("upgrade", "").lower() != "websocket":
            raise Violation("opening handshake: Upgrade header %r" % headers.get("upgrade"))
        if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
            raise Violation("opening handshake: Connection header %r"
                            % headers.get("connection"))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- writing

    def send(self, data):
        """Write bytes. False if the server has already closed or reset the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def send_pieces(self, pieces, pause=0.002):
        """Each piece in its own write (TCP_NODELAY is on), with a short pause between."""
        for i, p in enumerate(pieces):
            if not self.send(p):
                return False
            if pause and i + 1 < len(pieces):
                time.sleep(pause)
        return True

    def send_bytewise(self, data, pause=0.002):
        return self.send_pieces([data[i:i + 1] for i in range(len(data))], pause)

    def send_until_answered(self, pieces, wait=0.3):
        """Write pieces one by one; stop early once the server has written something.

        For input the server may refuse part-way (too big): it is not made to close
        with unread bytes pending, which could reset the connection and lose its
        close frame. Returns the number of pieces written.
        """
        for i, p in enumerate(pieces):
            if self.buf or self.readable(0):
                return i
            if not self.send(p):
                return i
            if i + 1 < len(pieces) and self.readable(wait if i == 0 else 0.02):
                return i + 1
        return len(pieces)

    def readable(self, timeout):
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    # -- reading

    def _fill(self, deadline):
        """Read more into buf. False on EOF/reset; raises socket.timeout past deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _need(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                return False
        return True

    def read_frame(self, timeout=READ_TIMEOUT):
        """Next frame, validated; None on EOF (self.reset tells a reset apart).
        Raises socket.timeout when no complete frame arrives in time."""
        deadline = time.monotonic() + timeout
        if not self._need(2, deadline):
            return self._eof_mid_frame()
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if not self._need(4, deadline):
                return self._eof_mid_frame()
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
            if n < 126:
                raise Violation("server frame uses a 16-bit length for %d bytes "
                                "(RFC 6455 5.2: minimal encoding)" % n)
        elif n == 127:
            if not self._need(10, deadline):
                return self._eof_mid_frame()
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
            if n < 65536 or n >> 63:
                raise Violation("server frame uses a 64-bit length for %d bytes" % n)
        masked = bool(b1 & 0x80)
        key = None
        if masked:
            if not self._need(pos + 4, deadline):
                return self._eof_mid_frame()
            key = self.buf[pos:pos + 4]
            pos += 4
        if not self._need(pos + n, deadline):
            return self._eof_mid_frame()
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        if key is not None:
            payload = mask_bytes(payload, key)
        f = Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload)
        self._check_server_frame(f)
        return f

    def _eof_mid_frame(self):
        if self.buf:
            raise Violation("connection ended inside a server frame (%d bytes: %r)"
                            % (len(self.buf), self.buf[:40]))
        return None

    def _check_server_frame(self, f):
        """RFC 6455 rules for what a server may send."""
        if f.masked:
            raise Violation("server sent a masked frame (RFC 6455 5.1): " + f.describe())
        if f.rsv:
            raise Violation("server set RSV bits %#x without an extension: %s"
                            % (f.rsv, f.describe()))
        if f.opcode not in KNOWN_OPCODES:
            raise Violation("server sent reserved opcode %#x" % f.opcode)
        if self.close_received:
            raise Violation("server sent a frame after its close frame (RFC 6455 5.5.1): "
                            + f.describe())
        if f.opcode >= 0x8:
            if not f.fin or len(f.payload) > 125:
                raise Violation("server sent a fragmented or >125-byte control frame: "
                                + f.describe())
        if f.opcode == OP_CLOSE:
            self.close_received = True
            if len(f.payload) == 1:
                raise Violation("server close frame has a 1-byte payload")
            if f.code is not None and not valid_close_code_on_wire(f.code):
                raise Violation("server close frame carries code %d, which must not be sent "
                                "(RFC 6455 7.4)" % f.code)
            if not utf8_ok(f.reason):
                raise Violation("server close reason is not UTF-8: %r" % f.reason)
        elif f.opcode == OP_TEXT:
            if not f.fin:
                raise Violation("server fragments messages (chatd sends one frame each): "
                                + f.describe())
            if not utf8_ok(f.payload):
                raise Violation("server text frame is not valid UTF-8: %r" % f.payload[:80])
        elif f.opcode in (OP_BINARY, OP_CONT):
            raise Violation("server sent an unexpected %s" % f.describe())

    def next(self, timeout=READ_TIMEOUT, what="a frame"):
        """Next frame that is not a server ping (those are answered). Returns a Frame,
        or a string describing EOF / reset / timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self.read_frame(max(0.0, deadline - time.monotonic()))
            except socket.timeout:
                return "no frame within %.1f s" % timeout
            if f is None:
                return "TCP reset without a close frame" if self.reset else \
                    "TCP close without a close frame"
            if f.opcode == OP_PING and not self.close_sent:
                self.send(frame(OP_PONG, f.payload))
                continue
            return f

    # -- expectations

    def expect_answer(self, rid, inviteCode=None):
        """The next frame is the FETCH_USER_INVITECODE_RESPONSE for requestId ``rid``."""
        got = self.next()
        want = "%s for requestId %r" % (RESP_TYPE, rid)
        if not isinstance(got, Frame):
            raise Fail("expected %s, got %s" % (want, got))
        if got.opcode != OP_TEXT:
            raise Fail("expected %s, got %s" % (want, got.describe()))
        msg = parse_json(got)
        if msg.get("type") != RESP_TYPE or msg.get("requestId") != rid:
            raise Fail("expected %s, got %s" % (want, got.describe()))
        if inviteCode is not None and msg.get("inviteCode") != inviteCode:
            raise Fail("expected inviteCode %r, got %r" % (inviteCode, msg.get("inviteCode")))
        return msg

    def expect_answers(self, rids, inviteCode=None, pongs=()):
        """Answers for all ``rids`` (and pongs with the given payloads), each exactly
        once, in any order: RFC 6455 orders frames on the wire, not an application's
        replies, and chatd answers through worker pools."""
        want_r = list(rids)
        want_p = list(pongs)
        while want_r or want_p:
            got = self.next()
            if isinstance(got, str):
                raise Fail("expected answers for %s and %d pong(s), got %s"
                           % (summarize(want_r), len(want_p), got))
            if got.opcode == OP_PONG and got.payload in want_p:
                want_p.remove(got.payload)
                continue
            if got.opcode == OP_TEXT:
                msg = parse_json(got)
                rid = msg.get("requestId")
                if msg.get("type") == RESP_TYPE and rid in want_r:
                    if inviteCode is not None and msg.get("inviteCode") != inviteCode:
                        raise Fail("expected inviteCode %r, got %r"
                                   % (inviteCode, msg.get("inviteCode")))
                    want_r.remove(rid)
                    continue
            raise Fail("expected answers for %s and %d pong(s), got %s"
                       % (summarize(want_r), len(want_p), got.describe()))

    def expect_pong_burst(self, payloads):
        """After pings with ``payloads`` sent back to back: pongs in order, each echoing
        one of those pings, ending with the last. RFC 6455 5.5.3 lets a server that
        has not yet answered earlier pings answer only the most recent one, so some
        pongs may be missing, but none may be out of order, repeated or made up."""
        expect_from = 0
        while True:
            got = self.next()
            if not isinstance(got, Frame) or got.opcode != OP_PONG:
                raise Fail("expected pongs ending with payload %r, got %s"
                           % (payloads[-1], got if isinstance(got, str) else got.describe()))
            try:
                at = payloads.index(got.payload, expect_from)
            except ValueError:
                raise Fail("pong with payload %r out of order, repeated or not from a ping "
                           "(expected one of the pings from #%d on)"
                           % (got.payload[:40], expect_from))
            expect_from = at + 1
            if at == len(payloads) - 1:
                return

    def expect_error(self, code="BAD_REQUEST"):
        got = self.next()
        if not isinstance(got, Frame) or got.opcode != OP_TEXT:
            raise Fail("expected ERROR %s, got %s"
                       % (code, got if isinstance(got, str) else got.describe()))
        msg = parse_json(got)
        if msg.get("type") != "ERROR" or msg.get("code") != code:
            raise Fail("expected ERROR %s, got %s" % (code, got.describe()))
        return msg

    def expect_pong(self, payload):
        got = self.next()
        if not isinstance(got, Frame):
            raise Fail("expected a pong with %d-byte payload, got %s" % (len(payload), got))
        if got.opcode != OP_PONG:
            raise Fail("expected a pong with %d-byte payload, got %s"
                       % (len(payload), got.describe()))
        if got.payload != payload:
            raise Fail("expected a pong with payload %r, got pong with %r"
                       % (payload[:40], got.payload[:40]))

    def expect_close(self, codes, allow_no_code=False, allow_bare_tcp_close=False,
                     may_precede=()):
        """The server's next frame is a close with one of ``codes`` (allow_no_code
        also accepts an empty close payload); then, after our own close reply, the
        server closes TCP within EOF_TIMEOUT. Returns the close Frame (or None for a
        bare TCP close when that is allowed).

        ``may_precede``: requestIds of requests sent before the failing frame; their
        answers may come before the close, or not at all (a server that fails the
        connection, or answers a close, may drop replies still being prepared)."""
        codes = list(codes)
        want = "close " + " or ".join(str(c) for c in codes)
        if allow_no_code:
            want += " (or without a code)"
        pending = set(may_precede)
        while True:
            got = self.next()
            if not isinstance(got, Frame) or got.opcode != OP_TEXT or not pending:
                break
            msg = parse_json(got)
            if msg.get("type") != RESP_TYPE or msg.get("requestId") not in pending:
                break
            pending.discard(msg["requestId"])
        if isinstance(got, str):
            if allow_bare_tcp_close and got.startswith("TCP"):
                return None
            raise Fail("expected %s, got %s" % (want, got))
        if got.opcode != OP_CLOSE:
            raise Fail("expected %s, got %s" % (want, got.describe()))
        if got.code is None:
            if not allow_no_code:
                raise Fail("expected %s, got %s" % (want, got.describe()))
        elif got.code not in codes:
            raise Fail("expected %s, got %s" % (want, got.describe()))
        if not self.close_sent:
            # RFC 6455 5.5.1: answer the server's close with a close.
            echo = close_payload(got.code) if got.code is not None else b""
            self.send(frame(OP_CLOSE, echo))
            self.close_sent = True
        self.expect_eof()
        return got

    def expect_eof(self, timeout=EOF_TIMEOUT):
        """After the closing handshake the server closes TCP (RFC 6455 7.1.1)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = self.read_frame(max(0.0, deadline - time.monotonic()))
            except socket.timeout:
                raise Fail("server did not close the TCP connection within %.1f s of "
                           "the closing handshake" % timeout)
            if f is None:
                return
            # read_frame already rejects anything after the server's close frame


def summarize(items, n=5):
    items = list(items)
    if len(items) <= n:
        return repr(items)
    return "%r ... (%d in all)" % (items[:n], len(items))


def parse_json(f):
    try:
        msg = json.loads(f.payload.decode("utf-8"))
    except ValueError:
        raise Fail("server sent a text frame that is not JSON: %r" % f.payload[:120])
    if not isinstance(msg, dict):
        raise Fail("server sent JSON that is not an object: %r" % f.payload[:120])
    return msg


# ---- case registry ---------------------------------------------------------------

CASES = []


def case(cid, name, group="default", stops_server=False):
    def register(fn):
        CASES.append({"id": cid, "name": name, "group": group, "fn": fn,
                      "stops_server": stops_server})
        return fn
    return register


class Ctx:
    """What a case gets: the server, a user, and a way to open connections."""

    def __init__(self, server, user):
        self.server = server
        self.user = user
        self.conns = []

    def ws(self):
        c = Conn(self.server.port, self.user.token)
        self.conns.append(c)
        return c

    def check(self, c, rid="check"):
        """The connection still works: a request gets its answer."""
        c.send(frame(OP_TEXT, request(rid)))
        c.expect_answer(rid, self.user.invite_code)

    def done(self):
        for c in self.conns:
            c.close()
        self.conns = []


def finish_close(c, got):
    """After the server's close frame ``got``: reply with a close, expect TCP EOF."""
    c.send(frame(OP_CLOSE, close_payload(got.code)))
    c.close_sent = True
    c.expect_eof()


def answered(c, ctx, data, rid):
    """Send ``data`` (one request for ``rid``, framed any way) and expect the answer."""
    c.send(data)
    c.expect_answer(rid, ctx.user.invite_code)


PROTO = [1002]


# ---- 1. framing ----------------------------------------------------------------------


@case("1.1", "opening handshake answers 101 with the right Sec-WebSocket-Accept")
def _(ctx):
    c = ctx.ws()  # Conn checks status, Upgrade, Connection and the accept value
    ctx.check(c)


@case("1.2", "empty text message (7-bit length 0) is a message: ERROR BAD_REQUEST, "
             "connection stays open")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, b""))
    c.expect_error("BAD_REQUEST")
    ctx.check(c)


def length_case(cid, n, form):
    @case(cid, "text message of %d bytes (%s-bit length) is answered" % (n, form))
    def _(ctx):
        c = ctx.ws()
        data = frame(OP_TEXT, request("len%d" % n, n))
        hdr, marker = {"7": (2, n), "16": (4, 126), "64": (10, 127)}[form]
        assert data[1] & 0x7F == marker and len(data) == hdr + 4 + n
        answered(c, ctx, data, "len%d" % n)


length_case("1.3", 125, "7")
length_case("1.4", 126, "16")
length_case("1.5", 127, "16")
length_case("1.6", 128, "16")
length_case("1.7", 65535, "16")


@case("1.8", "text message of 65536 bytes (64-bit length) is within ws.max_message_size "
             "(65536): answered")
def _(ctx):
    c = ctx.ws()
    data = frame(OP_TEXT, request("len65536", 65536))
    assert data[1] & 0x7F == 127
    answered(c, ctx, data, "len65536")


@case("1.9", "text message of 65537 bytes (64-bit length) is over ws.max_message_size: "
             "close 1009")
def _(ctx):
    c = ctx.ws()
    data = frame(OP_TEXT, request("len65537", 65537))
    c.send_until_answered([data[:14 + 1024], data[14 + 1024:]])
    c.expect_close([1009])


@case("1.10", "non-minimal length: 5 bytes announced with a 16-bit length is answered "
              "or fails with 1002")
def _(ctx):
    nonminimal(ctx, 5, "16")


@case("1.11", "non-minimal length: 5 bytes announced with a 64-bit length is answered "
              "or fails with 1002")
def _(ctx):
    nonminimal(ctx, 5, "64")


@case("1.12", "non-minimal length: 300 bytes announced with a 64-bit length is answered "
              "or fails with 1002")
def _(ctx):
    nonminimal(ctx, 300, "64")


def nonminimal(ctx, n, form):
    # RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length";
    # a server receiving such a frame may treat it as a protocol error (7.1.7).
    # The one-byte request is too short for n=5, so the payload is any 5-byte text.
    c = ctx.ws()
    rid = "nm%d" % n
    payload = request(rid, n) if n >= len(request(rid)) else b"12345"[:n]
    c.send(frame(OP_TEXT, payload, form=form))
    got = c.next()
    if isinstance(got, str):
        raise Fail("expected an answer or close 1002, got %s" % got)
    if got.opcode == OP_CLOSE:
        if got.code != 1002:
            raise Fail("expected an answer or close 1002, got %s" % got.describe())
        finish_close(c, got)
        return
    if got.opcode != OP_TEXT:
        raise Fail("expected an answer or close 1002, got %s" % got.describe())
    msg = parse_json(got)
    if n >= len(request(rid)):
        if msg.get("type") != RESP_TYPE or msg.get("requestId") != rid:
            raise Fail("expected the answer to requestId %r, got %s" % (rid, got.describe()))
    elif msg.get("type") != "ERROR":
        raise Fail("expected ERROR BAD_REQUEST for payload '12345', got %s" % got.describe())
    ctx.check(c)


@case("1.13", "64-bit length with the most significant bit set fails the connection "
              "(1002, or 1009 as too big)")
def _(ctx):
    c = ctx.ws()
    c.send(bytes([0x81, 0xFF]) + b"\x80\x00\x00\x00\x00\x00\x00\x05" + os.urandom(4)
           + b"hello")
    c.expect_close([1002, 1009])


@case("1.14", "a 60-byte frame written one byte per TCP write is answered")
def _(ctx):
    c = ctx.ws()
    c.send_bytewise(frame(OP_TEXT, request("bytewise")))
    c.expect_answer("bytewise", ctx.user.invite_code)


@case("1.15", "a 300-byte frame (16-bit length) written one byte per TCP write is answered")
def _(ctx):
    c = ctx.ws()
    c.send_bytewise(frame(OP_TEXT, request("bytewise300", 300)), pause=0.001)
    c.expect_answer("bytewise300", ctx.user.invite_code)


@case("1.16", "a frame split at every header boundary (2+2+4+rest) across writes is answered")
def _(ctx):
    c = ctx.ws()
    data = frame(OP_TEXT, request("split", 200))
    c.send_pieces([data[:1], data[1:2], data[2:4], data[4:6], data[6:8], data[8:9],
                   data[9:100], data[100:]], pause=0.02)
    c.expect_answer("split", ctx.user.invite_code)


@case("1.17", "three frames in one TCP write are each answered once")
def _(ctx):
    c = ctx.ws()
    c.send(b"".join(frame(OP_TEXT, request("m%d" % i)) for i in range(3)))
    c.expect_answers(["m0", "m1", "m2"], ctx.user.invite_code)


@case("1.18", "request, ping, request in one TCP write: two answers and the pong")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, request("a")) + frame(OP_PING, b"between")
           + frame(OP_TEXT, request("b")))
    c.expect_answers(["a", "b"], ctx.user.invite_code, pongs=[b"between"])


@case("1.19", "one frame and half of the next in one write, the rest later: both answered")
def _(ctx):
    c = ctx.ws()
    a = frame(OP_TEXT, request("first"))
    b = frame(OP_TEXT, request("second"))
    c.send(a + b[:7])
    c.expect_answer("first", ctx.user.invite_code)
    time.sleep(0.05)
    c.send(b[7:])
    c.expect_answer("second", ctx.user.invite_code)


@case("1.20", "a frame masked with the all-zero key is still masked: answered")
def _(ctx):
    c = ctx.ws()
    answered(c, ctx, frame(OP_TEXT, request("zerokey"), key=b"\0\0\0\0"), "zerokey")


@case("1.21", "unmasked text frame from the client fails the connection "
              "(close 1002 or TCP close)")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, request("unmasked"), mask=False))
    c.expect_close(PROTO, allow_bare_tcp_close=True)


@case("1.22", "unmasked ping from the client fails the connection (close 1002 or TCP close)")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_PING, b"x", mask=False))
    c.expect_close(PROTO, allow_bare_tcp_close=True)


@case("1.23", "unmasked empty text frame right after a valid request (same write) fails "
              "the connection")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, request("before")) + frame(OP_TEXT, b"", mask=False))
    c.expect_close(PROTO, allow_bare_tcp_close=True, may_precede=["before"])


# ---- 2. ping and pong ---------------------------------------------------------------


@case("2.1", "ping without payload gets a pong without payload")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_PING))
    c.expect_pong(b"")
    ctx.check(c)


@case("2.2", "ping with 125-byte payload gets a pong with the same payload")
def _(ctx):
    c = ctx.ws()
    payload = bytes(range(125))
    c.send(frame(OP_PING, payload))
    c.expect_pong(payload)
    ctx.check(c)


@case("2.3", "ping with a 125-byte binary payload (not UTF-8) gets it back unchanged")
def _(ctx):
    c = ctx.ws()
    payload = bytes((0xFF - i) for i in range(125))
    c.send(frame(OP_PING, payload))
    c.expect_pong(payload)


@case("2.4", "ping with 126-byte payload (control frames carry at most 125) fails with 1002")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_PING, b"p" * 126))
    c.expect_close(PROTO)


@case("2.5", "ping announcing 125 bytes with a 16-bit length is answered or fails with 1002")
def _(ctx):
    c = ctx.ws()
    payload = b"q" * 125
    c.send(frame(OP_PING, payload, form="16"))
    got = c.next()
    if isinstance(got, Frame) and got.opcode == OP_PONG and got.payload == payload:
        ctx.check(c)
        return
    if isinstance(got, Frame) and got.opcode == OP_CLOSE and got.code == 1002:
        finish_close(c, got)
        return
    raise Fail("expected the pong or close 1002, got %s"
               % (got if isinstance(got, str) else got.describe()))


@case("2.6", "fragmented ping (FIN=0) fails with 1002")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_PING, b"frag", fin=False) + frame(OP_CONT, b"ment"))
    c.expect_close(PROTO)


@case("2.7", "unsolicited pong with payload is ignored: the next request is answered first")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_PONG, b"unsolicited") + frame(OP_TEXT, request("afterpong")))
    c.expect_answer("afterpong", ctx.user.invite_code)


@case("2.8", "unsolicited empty pong is ignored")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_PONG))
    ctx.check(c)


@case("2.9", "ten pings in one TCP write: pongs in order with the same payloads, the last "
             "ping's included (RFC 5.5.3 allows skipping earlier ones)")
def _(ctx):
    c = ctx.ws()
    payloads = [b"ping-%d" % i for i in range(10)]
    c.send(b"".join(frame(OP_PING, p) for p in payloads))
    c.expect_pong_burst(payloads)
    ctx.check(c)


@case("2.12", "ten pings, each sent after the previous pong: ten pongs with the same "
              "payloads")
def _(ctx):
    c = ctx.ws()
    for i in range(10):
        c.send(frame(OP_PING, b"turn-%d" % i))
        c.expect_pong(b"turn-%d" % i)
    ctx.check(c)


@case("2.10", "ping written one byte per TCP write gets its pong")
def _(ctx):
    c = ctx.ws()
    c.send_bytewise(frame(OP_PING, b"slow ping"))
    c.expect_pong(b"slow ping")


@case("2.11", "pong with 126-byte payload fails with 1002")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_PONG, b"p" * 126))
    c.expect_close(PROTO)


# ---- 3. reserved bits -------------------------------------------------------------


def rsv_case(cid, rsv, opcode, payload, what):
    @case(cid, "%s with RSV=%d%d%d and no extension fails with 1002"
          % (what, rsv >> 2 & 1, rsv >> 1 & 1, rsv & 1))
    def _(ctx):
        c = ctx.ws()
        c.send(frame(opcode, payload, rsv=rsv))
        c.expect_close(PROTO)


rsv_case("3.1", 4, OP_TEXT, request("rsv1"), "text frame")
rsv_case("3.2", 2, OP_TEXT, request("rsv2"), "text frame")
rsv_case("3.3", 1, OP_TEXT, request("rsv3"), "text frame")
rsv_case("3.4", 7, OP_TEXT, request("rsv7"), "text frame")
rsv_case("3.5", 5, OP_PING, b"rsv", "ping")
rsv_case("3.6", 6, OP_CLOSE, close_payload(1000), "close frame")


@case("3.7", "valid request then a text frame with RSV1 in one write: 1002 (the first "
             "answer may precede it)")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, request("ok")) + frame(OP_TEXT, request("bad"), rsv=4))
    c.expect_close(PROTO, may_precede=["ok"])


@case("3.9", "text frame with RSV1 on a connection that has already been answered: 1002")
def _(ctx):
    c = ctx.ws()
    ctx.check(c)
    c.send(frame(OP_TEXT, request("bad"), rsv=4))
    c.expect_close(PROTO)


@case("3.8", "continuation frame with RSV2 inside a fragmented message fails with 1002")
def _(ctx):
    c = ctx.ws()
    data = request("rsvcont")
    c.send(frame(OP_TEXT, data[:10], fin=False) + frame(OP_CONT, data[10:], rsv=2))
    c.expect_close(PROTO)


# ---- 4. opcodes -----------------------------------------------------------------


def opcode_case(cid, op):
    kind = "data" if op < 8 else "control"
    @case(cid, "reserved %s opcode %#x fails with 1002" % (kind, op))
    def _(ctx):
        c = ctx.ws()
        c.send(frame(op, b"reserved"))
        c.expect_close(PROTO)


for _i, _op in enumerate([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]):
    opcode_case("4.%d" % (_i + 1), _op)


@case("4.11", "valid request, reserved opcode 0x5, request in one write: 1002, and the "
              "request after the bad frame is never answered")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, request("pre")) + frame(5, b"")
           + frame(OP_TEXT, request("post")))
    c.expect_close(PROTO, may_precede=["pre"])


@case("4.12", "reserved opcode 0xB with FIN=0 fails with 1002")
def _(ctx):
    c = ctx.ws()
    c.send(frame(0xB, b"", fin=False))
    c.expect_close(PROTO)


@case("4.13", "binary frame: close 1003 (chatd policy: text messages only)")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_BINARY, request("bin")))
    c.expect_close([1003])


@case("4.14", "empty binary frame: close 1003 (chatd policy: text messages only)")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_BINARY, b""))
    c.expect_close([1003])


# ---- 5. fragmentation ------------------------------------------------------------


@case("5.1", "request in two fragments (text FIN=0 + continuation FIN=1) is answered")
def _(ctx):
    c = ctx.ws()
    data = request("two")
    answered(c, ctx, split_fragments(data, [data[:20], data[20:]]), "two")


@case("5.2", "request in one fragment per byte (60+ frames) is answered")
def _(ctx):
    c = ctx.ws()
    data = request("many")
    answered(c, ctx, split_fragments(data, chunks(data, 1)), "many")


@case("5.3", "fragments in separate TCP writes with pauses are answered")
def _(ctx):
    c = ctx.ws()
    data = request("paused")
    pieces = chunks(data, 9)
    frames = [frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == len(pieces) - 1))
              for i, p in enumerate(pieces)]
    c.send_pieces(frames, pause=0.03)
    c.expect_answer("paused", ctx.user.invite_code)


@case("5.4", "ping between fragments: the pong arrives, then the answer")
def _(ctx):
    c = ctx.ws()
    data = request("pinged")
    c.send(frame(OP_TEXT, data[:15], fin=False) + frame(OP_PING, b"mid"))
    c.expect_pong(b"mid")
    c.send(frame(OP_CONT, data[15:]))
    c.expect_answer("pinged", ctx.user.invite_code)


@case("5.5", "pings between fragments, one in the same write as the final fragment: "
             "every pong and the answer")
def _(ctx):
    c = ctx.ws()
    data = request("pinged2")
    c.send(frame(OP_TEXT, data[:15], fin=False) + frame(OP_PING, b"one"))
    c.expect_pong(b"one")
    c.send(frame(OP_CONT, data[15:30], fin=False) + frame(OP_PING, b"two")
           + frame(OP_CONT, data[30:]))
    c.expect_answers(["pinged2"], ctx.user.invite_code, pongs=[b"two"])


@case("5.6", "pong between fragments is ignored; the message is answered")
def _(ctx):
    c = ctx.ws()
    data = request("ponged")
    c.send(frame(OP_TEXT, data[:15], fin=False) + frame(OP_PONG, b"x")
           + frame(OP_CONT, data[15:]))
    c.expect_answer("ponged", ctx.user.invite_code)


@case("5.7", "empty first and middle fragments, payload in the last: answered")
def _(ctx):
    c = ctx.ws()
    data = request("empties")
    answered(c, ctx, split_fragments(data, [b"", b"", data]), "empties")


@case("5.8", "payload in the first fragment, empty final continuation: answered")
def _(ctx):
    c = ctx.ws()
    data = request("emptyfin")
    answered(c, ctx, split_fragments(data, [data, b""]), "emptyfin")


@case("5.9", "continuation frame (FIN=1) with no message open fails with 1002")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_CONT, request("orphan")))
    c.expect_close(PROTO)


@case("5.10", "continuation frame (FIN=0) with no message open fails with 1002")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_CONT, b"orphan", fin=False))
    c.expect_close(PROTO)


@case("5.11", "continuation right after a complete message (same write) fails with 1002")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, request("whole")) + frame(OP_CONT, b" "))
    c.expect_close(PROTO, may_precede=["whole"])


@case("5.12", "new text frame (FIN=1) while a fragmented message is open fails with 1002")
def _(ctx):
    c = ctx.ws()
    data = request("open")
    c.send(frame(OP_TEXT, data[:10], fin=False) + frame(OP_TEXT, request("intruder")))
    c.expect_close(PROTO)


@case("5.13", "new text frame (FIN=0) while a fragmented message is open fails with 1002")
def _(ctx):
    c = ctx.ws()
    data = request("open2")
    c.send(frame(OP_TEXT, data[:10], fin=False) + frame(OP_TEXT, data[10:], fin=False))
    c.expect_close(PROTO)


@case("5.14", "binary frame while a fragmented text message is open fails with 1002")
def _(ctx):
    c = ctx.ws()
    data = request("open3")
    c.send(frame(OP_TEXT, data[:10], fin=False) + frame(OP_BINARY, data[10:]))
    c.expect_close(PROTO)


@case("5.15", "fragmented ping inside a fragmented message fails with 1002")
def _(ctx):
    c = ctx.ws()
    data = request("open4")
    c.send(frame(OP_TEXT, data[:10], fin=False) + frame(OP_PING, b"p", fin=False))
    c.expect_close(PROTO)


@case("5.16", "fragmented binary message: close 1003 (chatd policy: text only)")
def _(ctx):
    c = ctx.ws()
    data = request("binfrag")
    c.send(split_fragments(data, [data[:10], data[10:]], opcode=OP_BINARY))
    c.expect_close([1003])


@case("5.17", "close between fragments is honoured: the server answers close 1000")
def _(ctx):
    c = ctx.ws()
    data = request("closed")
    c.send(frame(OP_TEXT, data[:10], fin=False) + frame(OP_CLOSE, close_payload(1000)))
    c.close_sent = True
    c.expect_close([1000])


@case("5.18", "two fragmented messages back to back are both answered")
def _(ctx):
    c = ctx.ws()
    a, b = request("fa"), request("fb")
    c.send(split_fragments(a, chunks(a, 7)) + split_fragments(b, chunks(b, 11)))
    c.expect_answers(["fa", "fb"], ctx.user.invite_code)


@case("5.19", "message of exactly ws.max_message_size (1024) in 4 fragments is answered",
      group="small")
def _(ctx):
    c = ctx.ws()
    data = request("limit", SMALL_LIMIT)
    answered(c, ctx, split_fragments(data, chunks(data, 256)), "limit")


@case("5.20", "fragments totalling ws.max_message_size + 1 (1025): close 1009", group="small")
def _(ctx):
    c = ctx.ws()
    data = request("over1", SMALL_LIMIT + 1)
    # The crossing fragment is the last byte sent: the server never closes with
    # unread input pending (which could reset the connection and lose the close).
    c.send(split_fragments(data, chunks(data, 256)))
    c.expect_close([1009])


@case("5.21", "three 512-byte fragments (1536 > 1024): close 1009", group="small")
def _(ctx):
    c = ctx.ws()
    data = request("over2", 1536)
    c.send(split_fragments(data, chunks(data, 512)))
    c.expect_close([1009])


@case("5.22", "eleven 100-byte fragments, no final one (1100 > 1024): close 1009 without "
              "waiting for the end of the message", group="small")
def _(ctx):
    c = ctx.ws()
    frames = [frame(OP_TEXT, b" " * 100, fin=False)]
    frames += [frame(OP_CONT, b" " * 100, fin=False) for _ in range(10)]
    c.send(b"".join(frames))
    c.expect_close([1009])


@case("5.23", "single 1025-byte text frame: close 1009", group="small")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, request("single", SMALL_LIMIT + 1)))
    c.expect_close([1009])


@case("5.24", "single 1024-byte text frame is answered", group="small")
def _(ctx):
    c = ctx.ws()
    answered(c, ctx, frame(OP_TEXT, request("single1024", SMALL_LIMIT)), "single1024")


@case("5.25", "ping with 125-byte payload between fragments near the limit does not count "
              "toward ws.max_message_size", group="small")
def _(ctx):
    c = ctx.ws()
    data = request("ctrlfree", SMALL_LIMIT)
    c.send(frame(OP_TEXT, data[:600], fin=False) + frame(OP_PING, b"z" * 125)
           + frame(OP_CONT, data[600:]))
    c.expect_answers(["ctrlfree"], ctx.user.invite_code, pongs=[b"z" * 125])


# ---- 6. UTF-8 -----------------------------------------------------------------------


def utf8_good_case(cid, text, what):
    @case(cid, "valid UTF-8 %s in a JSON string is answered (requestId echoed intact)" % what)
    def _(ctx):
        c = ctx.ws()
        raw = text.encode("utf-8")
        answered(c, ctx, frame(OP_TEXT, request(raw)), text)


utf8_good_case("6.1", "caf\u00e9 \u00a9", "2-byte sequences (U+00E9, U+00A9)")
utf8_good_case("6.2", "\u20ac \u4e2d\u6587", "3-byte sequences (U+20AC, U+4E2D)")
utf8_good_case("6.3", "\U0001D11E \U0001F600", "4-byte sequences (U+1D11E, U+1F600)")
utf8_good_case("6.4", "\u0080\u07ff\u0800\ud7ff\ue000\ufffd\uffff",
               "boundary code points U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFD, U+FFFF")
utf8_good_case("6.5", "\U00010000\U0010ffff", "boundary code points U+10000 and U+10FFFF")
utf8_good_case("6.6", "\u03ba\u1f79\u03c3\u03bc\u03b5", "Greek text")


@case("6.7", "valid 4-byte character split across two fragments (F0 9F | 98 80) is answered")
def _(ctx):
    c = ctx.ws()
    data = request("\U0001F600".encode("utf-8"))
    cut = data.index(b"\xf0") + 2
    answered(c, ctx, split_fragments(data, [data[:cut], data[cut:]]), "\U0001F600")


@case("6.8", "valid 4-byte character split over four fragments, one byte each, is answered")
def _(ctx):
    c = ctx.ws()
    data = request("\U0001F600".encode("utf-8"))
    at = data.index(b"\xf0")
    pieces = [data[:at + 1], data[at + 1:at + 2], data[at + 2:at + 3], data[at + 3:]]
    answered(c, ctx, split_fragments(data, pieces), "\U0001F600")


@case("6.9", "valid 3-byte character split across fragments (E2 | 82 AC) is answered")
def _(ctx):
    c = ctx.ws()
    data = request("\u20ac".encode("utf-8"))
    cut = data.index(b"\xe2") + 1
    answered(c, ctx, split_fragments(data, [data[:cut], data[cut:]]), "\u20ac")


BAD_UTF8 = [
    ("6.10", b"\xc0\xaf", "overlong 2-byte '/' (C0 AF)"),
    ("6.11", b"\xe0\x80\xaf", "overlong 3-byte '/' (E0 80 AF)"),
    ("6.12", b"\xf0\x80\x80\xaf", "overlong 4-byte '/' (F0 80 80 AF)"),
    ("6.13", b"\xc0\x80", "overlong NUL (C0 80)"),
    ("6.14", b"\xc1\xbf", "overlong U+007F (C1 BF)"),
    ("6.15", b"\xe0\x9f\xbf", "overlong U+07FF (E0 9F BF)"),
    ("6.16", b"\xf0\x8f\xbf\xbf", "overlong U+FFFF (F0 8F BF BF)"),
    ("6.17", b"\xed\xa0\x80", "surrogate half U+D800 (ED A0 80)"),
    ("6.18", b"\xed\xbf\xbf", "surrogate half U+DFFF (ED BF BF)"),
    ("6.19", b"\xed\xa0\xbd\xed\xb8\x80", "surrogate pair encoded as two 3-byte sequences"),
    ("6.20", b"\xf4\x90\x80\x80", "code point above U+10FFFF (F4 90 80 80)"),
    ("6.21", b"\xf5\x80\x80\x80", "lead byte F5"),
    ("6.22", b"\xf8\x88\x80\x80\x80", "5-byte sequence (F8 88 80 80 80)"),
    ("6.23", b"\xfc\x84\x80\x80\x80\x80", "6-byte sequence (FC 84 80 80 80 80)"),
    ("6.24", b"\xfe", "byte FE"),
    ("6.25", b"\xff", "byte FF"),
    ("6.26", b"\x80", "lone continuation byte 80"),
    ("6.27", b"\xbf", "lone continuation byte BF"),
    ("6.28", b"\x80\x80\x80", "three continuation bytes"),
    ("6.29", b"\xc3A", "2-byte lead followed by ASCII (C3 41)"),
    ("6.30", b"\xe2\x82A", "3-byte sequence cut by ASCII (E2 82 41)"),
    ("6.31", b"\xf0\x9f\x98A", "4-byte sequence cut by ASCII (F0 9F 98 41)"),
]


def utf8_bad_case(cid, bad, what):
    @case(cid, "invalid UTF-8 in a text message, %s: close 1007" % what)
    def _(ctx):
        c = ctx.ws()
        c.send(frame(OP_TEXT, request(bad)))
        c.expect_close([1007])


for _cid, _bad, _what in BAD_UTF8:
    utf8_bad_case(_cid, _bad, _what)


def utf8_tail_case(cid, tail, what):
    @case(cid, "text message ending in a truncated sequence %s: close 1007" % what)
    def _(ctx):
        c = ctx.ws()
        c.send(frame(OP_TEXT, request("t") + tail))
        c.expect_close([1007])


utf8_tail_case("6.32", b"\xc3", "(C3)")
utf8_tail_case("6.33", b"\xe2\x82", "(E2 82)")
utf8_tail_case("6.34", b"\xf0\x9f\x98", "(F0 9F 98)")


@case("6.35", "overlong sequence split across fragments (C0 | AF): close 1007")
def _(ctx):
    c = ctx.ws()
    data = request(b"\xc0\xaf")
    cut = data.index(b"\xc0") + 1
    c.send(split_fragments(data, [data[:cut], data[cut:]]))
    c.expect_close([1007])


@case("6.36", "surrogate split across fragments (ED | A0 80): close 1007")
def _(ctx):
    c = ctx.ws()
    data = request(b"\xed\xa0\x80")
    cut = data.index(b"\xed") + 1
    c.send(split_fragments(data, [data[:cut], data[cut:]]))
    c.expect_close([1007])


@case("6.37", "4-byte lead at the end of a fragment followed by ASCII in the next "
              "(F0 | 41): close 1007")
def _(ctx):
    c = ctx.ws()
    data = request(b"\xf0A")
    cut = data.index(b"\xf0") + 1
    c.send(split_fragments(data, [data[:cut], data[cut:]]))
    c.expect_close([1007])


@case("6.38", "valid first fragment, invalid byte (FF) in the last: close 1007")
def _(ctx):
    c = ctx.ws()
    data = request(b"ok\xff")
    cut = data.index(b"ok")
    c.send(split_fragments(data, [data[:cut], data[cut:]]))
    c.expect_close([1007])


@case("6.39", "message whose final fragment ends inside a character (E2 82 |): close 1007")
def _(ctx):
    c = ctx.ws()
    data = request("x") + b"\xe2\x82"
    c.send(split_fragments(data, [data[:20], data[20:]]))
    c.expect_close([1007])


@case("6.40", "invalid byte in the first fragment, rest sent later: close 1007 "
              "(now, or once the message completes)")
def _(ctx):
    c = ctx.ws()
    data = request(b"\xff")
    cut = data.index(b"\xff") + 1
    c.send(frame(OP_TEXT, data[:cut], fin=False))
    if not c.readable(0.3):
        c.send(frame(OP_CONT, data[cut:]))
    c.expect_close([1007])


@case("6.41", "invalid UTF-8 in a message that is not JSON: close 1007, not an ERROR")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, b"hello \xc0\xaf world"))
    c.expect_close([1007])


# ---- 7. closing handshake ---------------------------------------------------------


def client_close(c, payload, fin=True, extra=b""):
    c.send(frame(OP_CLOSE, payload, fin=fin) + extra)
    c.close_sent = True


@case("7.1", "close 1000 with a reason: the server answers close 1000 and closes TCP")
def _(ctx):
    c = ctx.ws()
    client_close(c, close_payload(1000, "bye"))
    c.expect_close([1000])


@case("7.2", "close without payload: the server answers close (1000 or no code) and "
             "closes TCP")
def _(ctx):
    c = ctx.ws()
    client_close(c, b"")
    c.expect_close([1000], allow_no_code=True)


@case("7.3", "close with a 1-byte payload fails with 1002")
def _(ctx):
    c = ctx.ws()
    client_close(c, b"\x03")
    c.expect_close(PROTO)


INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]


def invalid_code_case(cid, code):
    @case(cid, "close with code %d (not valid on the wire) fails with 1002" % code)
    def _(ctx):
        c = ctx.ws()
        client_close(c, close_payload(code))
        c.expect_close(PROTO)


def valid_code_case(cid, code):
    echo = "1000 echoed" if code == 1000 else "%d echoed, or 1000" % code
    @case(cid, "close with code %d: the server answers close (%s) and closes TCP"
          % (code, echo))
    def _(ctx):
        c = ctx.ws()
        client_close(c, close_payload(code, "code %d" % code))
        c.expect_close(sorted({code, 1000}), allow_no_code=True)


_n = 4
for _code in INVALID_CODES:
    invalid_code_case("7.%d" % _n, _code)
    _n += 1
for _code in VALID_CODES:
    valid_code_case("7.%d" % _n, _code)
    _n += 1
# 7.4 .. 7.28


@case("7.29", "close reason with invalid UTF-8 (1000, C0 AF): fails with 1007 (or 1002)")
def _(ctx):
    c = ctx.ws()
    client_close(c, close_payload(1000, b"bad \xc0\xaf reason"))
    c.expect_close([1007, 1002])


@case("7.30", "close reason ending in a truncated sequence (1000, E2 82): fails with 1007 "
              "(or 1002)")
def _(ctx):
    c = ctx.ws()
    client_close(c, close_payload(1000, b"cut \xe2\x82"))
    c.expect_close([1007, 1002])


@case("7.31", "close reason with valid multi-byte UTF-8 is accepted: close 1000")
def _(ctx):
    c = ctx.ws()
    client_close(c, close_payload(1000, "\u00e9\u20ac\U0001F600"))
    c.expect_close([1000])


@case("7.32", "close with 125-byte payload (code + 123-byte reason) is accepted: close 1000")
def _(ctx):
    c = ctx.ws()
    client_close(c, close_payload(1000, "r" * 123))
    c.expect_close([1000])


@case("7.33", "close with 126-byte payload fails with 1002")
def _(ctx):
    c = ctx.ws()
    client_close(c, close_payload(1000, "r" * 124))
    c.expect_close(PROTO)


@case("7.34", "fragmented close (FIN=0) fails with 1002")
def _(ctx):
    c = ctx.ws()
    client_close(c, close_payload(1000), fin=False)
    c.expect_close(PROTO)


@case("7.35", "text frame after the client's close (same write) is not processed: only "
              "the close comes back")
def _(ctx):
    c = ctx.ws()
    client_close(c, close_payload(1000), extra=frame(OP_TEXT, request("late")))
    c.expect_close([1000])


@case("7.36", "ping after the client's close (same write) gets no pong")
def _(ctx):
    c = ctx.ws()
    client_close(c, close_payload(1000), extra=frame(OP_PING, b"late"))
    c.expect_close([1000])


@case("7.37", "text frame sent after the server's close reply is ignored; TCP closes")
def _(ctx):
    c = ctx.ws()
    client_close(c, close_payload(1000))
    got = c.next()
    if not isinstance(got, Frame) or got.opcode != OP_CLOSE or got.code != 1000:
        raise Fail("expected close 1000, got %s"
                   % (got if isinstance(got, str) else got.describe()))
    c.send(frame(OP_TEXT, request("afterclose")))
    c.expect_eof()


@case("7.38", "request then close in one write: close 1000 (the answer may precede it)")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, request("last")))
    client_close(c, close_payload(1000))
    c.expect_close([1000], may_precede=["last"])


@case("7.41", "request answered, then close 1000: the server answers close 1000")
def _(ctx):
    c = ctx.ws()
    ctx.check(c)
    client_close(c, close_payload(1000, "done"))
    c.expect_close([1000])


@case("7.39", "close written one byte per TCP write: close 1000")
def _(ctx):
    c = ctx.ws()
    c.send_bytewise(frame(OP_CLOSE, close_payload(1000, "slow")))
    c.close_sent = True
    c.expect_close([1000])


@case("7.40", "server shutdown (SIGTERM) closes open WebSockets with 1001", group="shutdown",
      stops_server=True)
def _(ctx):
    c = ctx.ws()
    ctx.check(c)
    errors = []

    def stop():
        try:
            ctx.server.stop()
        except Exception as e:  # noqa: BLE001 - reported as the case's failure
            errors.append(e)

    t = threading.Thread(target=stop)
    t.start()
    try:
        c.expect_close([1001])
    finally:
        t.join(15)
    if errors:
        raise Fail("server did not shut down cleanly: %s" % str(errors[0]).splitlines()[0])


# ---- 9. limits and volume -----------------------------------------------------------


@case("9.1", "65535-byte valid UTF-8 text that is not JSON is accepted: ERROR BAD_REQUEST")
def _(ctx):
    c = ctx.ws()
    c.send(frame(OP_TEXT, b"a" * 65535))
    c.expect_error("BAD_REQUEST")
    ctx.check(c)


@case("9.2", "65535-byte request of 3-byte characters and padding is answered")
def _(ctx):
    c = ctx.ws()
    rid = "\u20ac" * 20
    answered(c, ctx, frame(OP_TEXT, request(rid, 65535)), rid)


@case("9.3", "65535-byte request in 64 fragments of about 1 KiB is answered")
def _(ctx):
    c = ctx.ws()
    data = request("frag64k", 65535)
    answered(c, ctx, split_fragments(data, chunks(data, 1024)), "frag64k")


@case("9.4", "65535-byte request written in 1000-byte TCP writes is answered")
def _(ctx):
    c = ctx.ws()
    data = frame(OP_TEXT, request("chunky", 65535))
    c.send_pieces(chunks(data, 1000), pause=0.0005)
    c.expect_answer("chunky", ctx.user.invite_code)


@case("9.5", "1000 small requests in one TCP write are each answered exactly once")
def _(ctx):
    c = ctx.ws()
    c.send(b"".join(frame(OP_TEXT, request("r%d" % i)) for i in range(1000)))
    c.expect_answers(["r%d" % i for i in range(1000)], ctx.user.invite_code)


@case("9.6", "100 pings with distinct payloads in one write: pongs in order, matching, "
             "ending with the last ping's")
def _(ctx):
    c = ctx.ws()
    payloads = [b"%03d" % i * 10 for i in range(100)]
    c.send(b"".join(frame(OP_PING, p) for p in payloads))
    c.expect_pong_burst(payloads)
    ctx.check(c)


@case("9.7", "10 connections open at once each get their answer")
def _(ctx):
    conns = [ctx.ws() for _ in range(10)]
    for i, c in enumerate(conns):
        c.send(frame(OP_TEXT, request("conn%d" % i)))
    for i, c in enumerate(conns):
        c.expect_answer("conn%d" % i, ctx.user.invite_code)


@case("9.8", "131072-byte request (64-bit length) is answered when ws.max_message_size "
             "is 262144", group="large")
def _(ctx):
    c = ctx.ws()
    answered(c, ctx, frame(OP_TEXT, request("big", 131072)), "big")


@case("9.9", "262144-byte request (the limit) in 16 fragments is answered", group="large")
def _(ctx):
    c = ctx.ws()
    data = request("biglimit", LARGE_LIMIT)
    answered(c, ctx, split_fragments(data, chunks(data, 16384)), "biglimit")


@case("9.10", "262145-byte message (limit + 1): close 1009", group="large")
def _(ctx):
    c = ctx.ws()
    data = frame(OP_TEXT, request("bigover", LARGE_LIMIT + 1))
    c.send_until_answered([data[:14 + 4096], data[14 + 4096:]])
    c.expect_close([1009])


@case("9.11", "65536-byte request announced with a 64-bit length is answered", group="large")
def _(ctx):
    c = ctx.ws()
    data = frame(OP_TEXT, request("len65536", 65536))
    assert data[1] & 0x7F == 127
    answered(c, ctx, data, "len65536")


# ---- runner ------------------------------------------------------------------------

GROUPS = {
    "default": [],
    "small": ["ws.max_message_size=%d" % SMALL_LIMIT],
    "large": ["ws.max_message_size=%d" % LARGE_LIMIT],
    "shutdown": [],
}


def main(argv):
    verbose = "-v" in argv
    filters = [argv[i + 1] for i, a in enumerate(argv) if a == "-k" and i + 1 < len(argv)]
    selected = [c for c in CASES
                if not filters or any(f in c["id"] or f in c["name"] for f in filters)]
    ids = [c["id"] for c in CASES]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        print("duplicate case ids: %s" % ", ".join(dupes))
        return 2
    passed = failed = 0
    started = time.monotonic()
    for group, sets in GROUPS.items():
        cases = sorted((c for c in selected if c["group"] == group),
                       key=lambda c: tuple(int(x) for x in c["id"].split(".")))
        if not cases:
            continue
        server = user = None
        start_error = None
        for cs in cases:
            label = "%s %s" % (cs["id"], cs["name"])
            error = None
            if start_error is not None:
                failed += 1
                print("FAIL %s: no server: %s" % (label, start_error))
                continue
            try:
                if server is None:
                    try:
                        server = harness.Server(sets).start()
                        user = server.new_user("conf")
                    except Exception as e:  # noqa: BLE001
                        start_error = "%s: %s" % (type(e).__name__,
                                                  str(e).splitlines()[0] if str(e) else "")
                        server = None
                        raise Fail("no server: " + start_error)
                ctx = Ctx(server, user)
                try:
                    cs["fn"](ctx)
                finally:
                    ctx.done()
            except Fail as e:
                error = str(e)
            except AssertionError as e:
                error = "assertion: %s" % (str(e).splitlines()[0] if str(e) else repr(e))
            except Exception as e:  # noqa: BLE001 - any error is the case's failure
                error = "%s: %s" % (type(e).__name__, e)
            if server is not None and not cs["stops_server"] and not server.alive():
                why = "chatd died (exit %s; log in %s)" % (server.proc.returncode,
                                                          server.log_path)
                error = why if error is None else "%s; %s" % (why, error)
                server._close_log()
                if verbose:
                    print(server.log_tail(30))
                server = None  # the next case starts a fresh one
            elif cs["stops_server"]:
                server = None
            if error is None:
                passed += 1
                print("PASS %s" % label)
            else:
                failed += 1
                print("FAIL %s: %s" % (label, error))
                if verbose and server is not None:
                    print("  server log tail:\n    "
                          + server.log_tail(10).replace("\n", "\n    "))
            sys.stdout.flush()
        if server is not None:
            try:
                server.stop()
            except AssertionError as e:
                failed += 1
                print("FAIL %s server stop: %s" % (group, str(e).splitlines()[0]))
    print("total time %.1f s" % (time.monotonic() - started))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
