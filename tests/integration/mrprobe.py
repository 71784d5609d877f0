"""A helper the multi-host tests run inside a network namespace (``ip netns exec``).

    python -m tests.integration.mrprobe watch MR EID SECONDS [--interval S] [--src A]
        one ECM Map-Request to MR:4342 every interval for SECONDS; prints a JSON list
        of [wall-clock time, answer] with answer null (nothing within 0.2 s), "negative" or the
        prefix of a positive answer
    python -m tests.integration.mrprobe register MR EID --key K [--ttl M] [--nonce N]
        one Map-Register (proxy-reply, want-map-notify) for EID to MR:4342, re-sent
        (nonce N+1, N+2, ...: at most 5 tries) until a Map-Notify comes back; prints
        whether one did (true/false)
    python -m tests.integration.mrprobe zmq ENDPOINT SERVER_KEY [--secret Z85] ...
        a raw ZeroMQ peer (see :func:`raw_zmq`)
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

from common.wire.addr import eid_from_wire
from common.wire.eidtext import format_eid
from common.wire.messages import MapReply, decode_message


def ask(mr: str, eid: str, src: str, timeout: float = 0.2):
    from tests.unit.msfixtures import ecm_request
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((src, 0))
        s.settimeout(timeout)
        s.sendto(ecm_request(eid, itr=src, sport=s.getsockname()[1]), (mr, 4342))
        try:
            data = s.recvfrom(65535)[0]
        except socket.timeout:
            return None
    finally:
        s.close()
    msg = decode_message(data)
    if not isinstance(msg, MapReply) or not msg.records:
        return "other"
    rec = msg.records[0]
    if not rec.locators:
        return "negative"
    return format_eid(eid_from_wire(rec.eid, rec.mask_len))


def watch(args) -> None:
    t0, out = time.monotonic(), []
    while True:                  # at least one lookup, then until SECONDS have passed
        out.append([time.time(), ask(args.mr, args.eid, args.src)])
        if time.monotonic() - t0 >= args.seconds:
            break
        time.sleep(args.interval)
    print(json.dumps(out))


def register(args) -> None:
    from tests.unit.msfixtures import register as build
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((args.src, 0))
    s.settimeout(1.0)
    got = False
    for k in range(5):                   # bounded: the Map-Notify or five tries
        # each try a new nonce (NONCE + try): a re-sent one would be a replay
        data = build([args.eid], nonce=args.nonce + k, key=args.key.encode(), ttl=args.ttl,
                     proxy=True, rlocs=(args.rloc,))
        s.sendto(data, (args.mr, 4342))
        try:
            got = s.recvfrom(65535)[0][0] >> 4 == 4
            break
        except socket.timeout:
            continue
    print(json.dumps(got))


def raw_zmq(args) -> None:
    """Subscribe (``hb.``) and publish (``hb.intruder.0``) with the given keys for
    ``--seconds``; prints {"received": n of messages received}.  No secret: a plain
    (NULL mechanism) peer."""
    import zmq
    from bus import envelope
    z = zmq.Context()
    base = args.endpoint.rsplit(":", 1)
    host, port = base[0], int(base[1])

    def sock(kind, offset):
        s = z.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if args.secret:
            s.setsockopt(zmq.CURVE_SERVERKEY, args.server_key.encode())
            s.setsockopt(zmq.CURVE_SECRETKEY, args.secret.encode())
            s.setsockopt(zmq.CURVE_PUBLICKEY, zmq.curve_public(args.secret.encode()))
        s.connect(f"{host}:{port + offset}")
        return s
    sub = sock(zmq.SUB, 1)
    sub.setsockopt(zmq.SUBSCRIBE, b"hb.")
    pub = sock(zmq.PUB, 0)
    stamper = envelope.Stamper("intruder", 0, "0123456789abcdef")
    n, deadline = 0, time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        pub.send_multipart(envelope.encode("hb.intruder.0", stamper.header("role.heartbeat"),
                                           {"pid": 1, "host": "intruder"}))
        if sub.poll(100):
            sub.recv_multipart()
            n += 1
    print(json.dumps({"received": n}))
    z.destroy(linger=0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mrprobe")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch")
    w.add_argument("mr")
    w.add_argument("eid")
    w.add_argument("seconds", type=float)
    w.add_argument("--interval", type=float, default=0.1)
    w.add_argument("--src", default=None)
    r = sub.add_parser("register")
    r.add_argument("mr")
    r.add_argument("eid")
    r.add_argument("--key", required=True)
    r.add_argument("--ttl", type=int, default=1440)
    r.add_argument("--nonce", type=int, default=1)
    r.add_argument("--rloc", default="192.0.2.1")
    r.add_argument("--src", default=None)
    z = sub.add_parser("zmq")
    z.add_argument("endpoint")
    z.add_argument("server_key")
    z.add_argument("--secret", default=None)
    z.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    if getattr(args, "src", None) is None and args.cmd != "zmq":
        args.src = args.mr
    {"watch": watch, "register": register, "zmq": raw_zmq}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
