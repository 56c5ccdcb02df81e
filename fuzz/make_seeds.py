#!/usr/bin/env python3
"""Writes the hand-made seed corpora under corpus/TARGET/seed-*.

Run from anywhere: python3 fuzz/make_seeds.py. The files are committed; this
script documents how they were built and rebuilds them after a format
change. Input layouts are described in README.md.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- frames

def frame(opcode, payload, fin=True, rsv1=False, mask=None):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    m = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n <= 0xFFFF:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask is not None:
        head += bytes(mask)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def deflate_raw(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


HELLO_DEFLATED = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])  # RFC 7692 §7.2.3.1
KEY = [0x37, 0xFA, 0x21, 0x3D]

# frame_header: every length form, masked or not, plus near misses.
for name, data in {
    "text-hello": bytes([0x81, 0x05]) + b"Hello",
    "masked": bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D]),
    "len16": bytes([0x82, 0x7E, 0x01, 0x00]),
    "len64": bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
    "len64-masked": bytes([0x02, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4]),
    "rsv-bits": bytes([0xF1, 0x00]),
    "close": bytes([0x88, 0x02, 0x03, 0xE8]),
    "nonminimal16": bytes([0x82, 0x7E, 0x00, 0x7D]),
    "nonminimal64": bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]),
    "topbit": bytes([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
    "reserved-op": bytes([0x83, 0x00]),
    "partial": bytes([0x82, 0x7F, 0, 0]),
}.items():
    write("frame_header", name, data)

# ---------------------------------------------------------------- connections
# [10 config bytes][n][n x (op, size)][wire]
# config: frame, message, fragments, flags, server bits, client bits,
#         pending pong /4, read chunk /8, level, threshold
# flags: 1 auto_pong, 2 deflate, 4 server_nct, 8 client_nct,
#        0x10 keep output, 0x20 eof, 0x40 leftover, 0x80 echo


def config(flags, frame=0xA0, message=0xA0, fragments=16, sbits=6, cbits=6,
           pending=64, chunk=8, level=1, threshold=0):
    return bytes([frame, message, fragments, flags, sbits, cbits, pending,
                  chunk, level, threshold])


def script(*ops):
    out = bytes([len(ops)])
    for op, size in ops:
        out += bytes([op, size])
    return out


def conn_seeds(target, mask):
    def f(opcode, payload, fin=True, rsv1=False):
        return frame(opcode, payload, fin, rsv1, mask)

    plain = [
        f(0x1, b"Hello"),
        f(0x1, b"Hel", fin=False) + f(0x9, b"ping") + f(0x0, b"lo", fin=True),
        f(0x2, bytes(range(200))),
        f(0x9, b"") + f(0xA, b"pong"),
        f(0x1, "h\u00e9llo \u2603".encode()),
        f(0x8, struct.pack(">H", 1000) + b"bye"),
    ]
    whole = b"".join(plain)
    write(target, "plain-whole", config(0x01) + script() + whole)
    write(target, "plain-split", config(0x01) + script((0, 2), (3, 6), (1, 0)) + whole)
    write(target, "plain-keep-eof", config(0x31) + script((0, 40), (5, 4), (4, 0)) + whole[:-9])
    write(target, "leftover-close", config(0x41) + script((0, 7), (6, 3)) + whole)
    write(target, "tiny-limits", config(0x01, frame=8, message=12, fragments=2)
          + script((0, 1)) + f(0x1, b"ab", fin=False) + f(0x0, b"cd", fin=False)
          + f(0x0, b"ef"))
    write(target, "bad-utf8", config(0x01) + script((0, 3))
          + f(0x1, b"ok\xc3", fin=False) + f(0x0, b"(x"))
    write(target, "bad-close", config(0x01) + script() + f(0x8, struct.pack(">H", 1005)))
    # Echo: messages of 16 bytes or more go back from the input buffer;
    # a piece arriving before the output is drained forces the copy.
    echo = f(0x2, bytes(range(40))) + f(0x9, b"p") + f(0x1, b"x" * 30) + f(0x1, b"short")
    write(target, "echo-split", config(0x81) + script((0, 20), (3, 50)) + echo)
    write(target, "echo-keep", config(0x91, pending=1) + script((0, 30), (4, 0)) + echo)
    write(target, "ping-flood", config(0x11, pending=1) + script((0, 5))
          + b"".join(f(0x9, bytes([i]) * 20) for i in range(8)))
    # permessage-deflate, both takeover modes.
    comp = [
        f(0x1, HELLO_DEFLATED, rsv1=True),
        f(0x1, HELLO_DEFLATED[:3], fin=False, rsv1=True) + f(0x0, HELLO_DEFLATED[3:]),
        f(0x2, deflate_raw(b"abcabcabc" * 40), rsv1=True),
        f(0x1, b"uncompressed"),
        f(0x1, b"\x00", rsv1=True),  # empty message (§7.2.3.6)
    ]
    write(target, "deflate-nct", config(0x0F) + script((0, 9)) + b"".join(comp))
    write(target, "deflate-takeover", config(0x03, sbits=0, cbits=3) + script((3, 30))
          + b"".join(comp))
    bomb = deflate_raw(b"\x00" * 100000)
    write(target, "deflate-bomb", config(0x0F) + script((0, 100))
          + f(0x2, bomb, rsv1=True))
    write(target, "deflate-corrupt", config(0x03) + script()
          + f(0x1, b"\xff\xff\xff\xff", rsv1=True))


conn_seeds("server_connection", KEY)
conn_seeds("client_connection", None)

# ---------------------------------------------------------------- handshakes
REQ = (b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
       b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       b"Sec-WebSocket-Version: 13\r\n")
# handshake_request: [mode byte][...]; mode even = raw bytes follow.
for name, data in {
    "rfc": REQ + b"\r\n",
    "deflate": REQ + b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
    "deflate-params": REQ + b"Sec-WebSocket-Extensions: permessage-deflate; "
    b"server_max_window_bits=10; client_max_window_bits=9; server_no_context_takeover, "
    b"permessage-deflate\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n",
    "frames-after": REQ + b"\r\n" + frame(1, b"hi", mask=KEY),
    "deflate-case": REQ + b"Sec-WebSocket-Extensions: Permessage-Deflate\r\n\r\n",
    "version-8": REQ.replace(b"13", b"8") + b"\r\n",
    "bad-key": REQ.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short") + b"\r\n",
    "absolute": REQ.replace(b"/chat?room=1", b"https://example.com/x") + b"\r\n",
    "partial": REQ[:40],
    "post": REQ.replace(b"GET", b"POST") + b"Content-Length: 3\r\n\r\nabc",
}.items():
    write("handshake_request", name, b"\x00" + data)
# Structured mode (odd first byte): the rest is decoded by `arbitrary`.
write("handshake_request", "structured", b"\x01" + bytes(range(64)))

# handshake_response: [mode][...]; raw mode replaces $ACCEPT with the
# correct Sec-WebSocket-Accept for the handshake's key.
RESP = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: $ACCEPT\r\n")
for name, data in {
    "ok": RESP + b"\r\n",
    "deflate": RESP + b"Sec-WebSocket-Extensions: permessage-deflate; "
    b"server_no_context_takeover; client_max_window_bits=10\r\n\r\n",
    "deflate-bad": RESP + b"Sec-WebSocket-Extensions: permessage-deflate; "
    b"server_max_window_bits=7\r\n\r\n",
    "protocol": RESP + b"Sec-WebSocket-Protocol: chat\r\n\r\n",
    "wrong-accept": RESP.replace(b"$ACCEPT", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") + b"\r\n",
    "frames-after": RESP + b"\r\n" + frame(1, b"hi"),
    "404": b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    "http10": RESP.replace(b"1.1", b"1.0") + b"\r\n",
    "partial": RESP[:50],
}.items():
    write("handshake_response", name, b"\x00" + data)
write("handshake_response", "structured", b"\x01" + bytes(range(64)))

# ---------------------------------------------------------------- inflate
# [flags][max_out lo][max_out hi][n][n piece sizes][stream]
# flags: 1 no_context_takeover, 2 deflater mode (stream is plaintext,
#        compressed then mutated by the piece bytes), 4 two messages
text = b"The quick brown fox jumps over the lazy dog. " * 8
write("inflate", "hello", bytes([0, 0, 1, 0]) + HELLO_DEFLATED)
write("inflate", "hello-pieces", bytes([1, 0, 1, 3, 2, 1, 3]) + HELLO_DEFLATED)
write("inflate", "text", bytes([1, 0, 4, 2, 9, 50]) + deflate_raw(text))
write("inflate", "bomb", bytes([1, 64, 0, 1, 200]) + deflate_raw(b"\x00" * 50000))
write("inflate", "bfinal", bytes([0, 0, 1, 0]) + zlib.compress(b"x", 9)[2:-4] + b"\x00")
write("inflate", "stored", bytes([0, 0, 1, 0]) + b"\x00\x05\x00\xfa\xffHello")
write("inflate", "deflater", bytes([6, 0, 2, 2, 7, 40]) + text)
write("inflate", "deflater-nct", bytes([7, 200, 0, 0]) + text[:100])

# ---------------------------------------------------------------- roundtrip
# Structured (`arbitrary`): any bytes decode to some scenario; these give
# the fuzzer a few shapes to start from.
write("roundtrip", "text", b"\x00\x00\x06\x01\x00" + "héllo wörld".encode() * 3)
write("roundtrip", "mixed", bytes(range(0, 256, 3)))
write("roundtrip", "deflate", b"\x03\x0f\x0f\x05" + text[:120])

# ------------------------------------------------- engineio_packet_payload
# Raw bytes: one Engine.IO packet, a polling body, a query (docs/socketio.md
# §2-§3); the suites' shapes.
write("engineio_packet_payload", "message", b"4hello")
write("engineio_packet_payload", "probe", b"2probe")
write("engineio_packet_payload", "body", b"4test1\x1e4test2\x1ebAQIDBA==\x1e3\x1e1")
write("engineio_packet_payload", "utf8", "4€ é\x1e4😀".encode())
write("engineio_packet_payload", "query",
      b"EIO=4&transport=polling&t=N8hyd6w&sid=AAECAwQFBgcICQoLDA0ODw")

# --------------------------------------------------------- socketio_packet
# Structured (`arbitrary`: a list of text and binary frames); any bytes
# decode to some list. These start from Socket.IO packets (§4).
write("socketio_packet", "event", b'\x00\x0d2["hello",1]\x01\x03abc')
write("socketio_packet", "binary-event",
      b'\x00\x3051-["up",{"_placeholder":true,"num":0}]\x01\x04\x01\x02\x03\x04')
write("socketio_packet", "namespace-ack", b'\x00\x133/admin,12["ok",{}]')
write("socketio_packet", "connect", b'\x00\x0f0/chat,{"a":"b"}')
