"""The answer to a NAT-traversal Info-Request (type 7, R=0): an Info-Reply.

RFC 9301 keeps type 7 for the NAT-traversal messages of
draft-ermagan-lisp-nat-traversal (WIRE-FORMAT.md 9.2).  A node behind a NAT (and
lispers.net's ``lig`` whenever its own address is private) sends an Info-Request
to a Map-Server and waits for the Info-Reply, which tells it its global address
and port as the Map-Server saw them.  This node answers from UDP 4342 with:

* the request's nonce, EID-prefix and key ID (no authentication data: lispers.net
  sends key ID 0 and no data, and the reply only tells the sender where it is);
* a NAT-Traversal LCAF (type 7): Map-Server port, ETR port (the request's source
  port), the global ETR RLOC (the request's source address), this node's
  Map-Server RLOC (the address the request arrived on), no private ETR RLOC
  (AFI 0: the request does not carry it) and no RTR (AFI 0).

Pure: no I/O; the caller sends the bytes to the request's source.
"""

from __future__ import annotations

import struct
from ipaddress import ip_address

from common.wire.addr import NO_ADDRESS, OpaqueLcaf, encode_address
from common.wire.messages import InfoMessage, encode_message

LCAF_NAT_TRAVERSAL = 7
INFO_REPLY_TTL = 1440   # minutes the requester may keep what the reply says


def nat_traversal_lcaf(ms_port: int, etr_port: int, global_etr, ms_rloc,
                       private_etr=NO_ADDRESS, rtrs=()) -> OpaqueLcaf:
    """The NAT-Traversal LCAF body: ports, then global ETR, MS, private ETR and RTR RLOCs
    (one AFI 0 when there is no RTR)."""
    body = struct.pack("!HH", ms_port, etr_port) + b"".join(
        encode_address(a) for a in (global_etr, ms_rloc, private_etr, *(rtrs or (NO_ADDRESS,))))
    return OpaqueLcaf(LCAF_NAT_TRAVERSAL, body)


def info_reply(req: InfoMessage, src: tuple, local: str, ms_port: int = 4342) -> bytes:
    """The encoded Info-Reply to Info-Request ``req`` received from ``src`` =
    (address, port) on this node's address ``local``."""
    nat = nat_traversal_lcaf(ms_port, src[1], ip_address(src[0]), ip_address(local))
    reply = InfoMessage(req.nonce, req.eid, req.mask_len, reply=True, key_id=req.key_id,
                        alg_id=0, auth_data=b"", ttl=INFO_REPLY_TTL, payload=nat)
    return encode_message(reply)


__all__ = ["INFO_REPLY_TTL", "LCAF_NAT_TRAVERSAL", "info_reply", "nat_traversal_lcaf"]
