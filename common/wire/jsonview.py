"""Messages as JSON-ready dicts and as operator text (what `decent decode` prints).

Records are written ``[<iid>]<address>/<len>`` (or the (S,G) form); every RLOC is an
object with at least ``address``, ``priority`` and ``weight``.

In JSON an address is its text when it has one (IPv4, IPv6, MAC, ``'name'``,
``no-address``); an LCAF is an object programs can read (:func:`address_json`):
an RLE ``{"rle": [{"address", "level"[, "name"]}]}``, an AFI list
``{"afi_list": [...]}``, multicast info ``{"multicast": {"iid", "group",
"group_len", "source", "source_len"}}``, an instance-ID ``{"iid", "address"}``,
NAT traversal ``{"nat_traversal": {"ms_port", "etr_port", "global_etr", "ms",
"private_etr", "rtrs"}}``, anything else ``{"lcaf_type", "body"}`` (hex).  The
text output keeps the one-line forms (``rle(...)``).
"""

from __future__ import annotations

import struct

from common.wire.addr import (AfiList, Eid, InstanceIdAddr, MulticastInfo, OpaqueLcaf, Rle,
                              decode_address, eid_from_wire)
from common.wire.errors import DecodeError
from common.wire.eidtext import format_address, format_eid
from common.wire.ecm import Ecm
from common.wire.messages import (InfoMessage, MapReferral, MapReply, MapRequest, message_type_name)
from common.wire.records import ACTION_NAMES, EidRecord, Locator
from common.wire.register import MapNotify, MapNotifyAck, MapRegister

REFERRAL_ACTIONS = {0: "node-referral", 1: "ms-referral", 2: "ms-ack", 3: "ms-not-registered",
                    4: "delegation-hole", 5: "not-authoritative"}


def eid_text(addr: object, mask_len: int) -> str:
    try:
        return format_eid(eid_from_wire(addr, mask_len))
    except Exception:  # an exotic address (AFI list, opaque LCAF) has no prefix form
        return f"{format_address(addr)}/{mask_len}"


LCAF_NAT_TRAVERSAL = 7


def address_json(addr: object):
    """An address for JSON: its text, or for an LCAF an object (see the module doc)."""
    if isinstance(addr, Rle):
        out = []
        for e in addr.entries:
            item = {"address": address_json(e.address), "level": e.level}
            if e.name is not None:
                item["name"] = e.name
            out.append(item)
        return {"rle": out}
    if isinstance(addr, AfiList):
        return {"afi_list": [address_json(a) for a in addr.items]}
    if isinstance(addr, MulticastInfo):
        return {"multicast": {"iid": addr.iid, "group": address_json(addr.group),
                              "group_len": addr.group_len, "source": address_json(addr.source),
                              "source_len": addr.source_len}}
    if isinstance(addr, InstanceIdAddr):
        return {"iid": addr.iid, "address": address_json(addr.address)}
    if isinstance(addr, OpaqueLcaf):
        if addr.lcaf_type == LCAF_NAT_TRAVERSAL:
            nat = _nat_traversal(addr.body)
            if nat is not None:
                return {"nat_traversal": nat}
        return {"lcaf_type": addr.lcaf_type, "body": addr.body.hex()}
    return format_address(addr)


def _nat_traversal(body: bytes) -> dict | None:
    """The fields of a NAT-Traversal LCAF body, or None when it does not parse."""
    if len(body) < 4:
        return None
    ms_port, etr_port = struct.unpack_from("!HH", body, 0)
    addrs, q = [], 4
    try:
        while q < len(body):
            a, q = decode_address(body, q, len(body), "nat")
            addrs.append(a)
    except DecodeError:
        return None
    if len(addrs) < 3:
        return None
    return {"ms_port": ms_port, "etr_port": etr_port, "global_etr": address_json(addrs[0]),
            "ms": address_json(addrs[1]), "private_etr": address_json(addrs[2]),
            "rtrs": [address_json(a) for a in addrs[3:] if format_address(a) != "no-address"]}


def locator_json(loc: Locator, structured: bool = True) -> dict:
    address = address_json(loc.address) if structured else format_address(loc.address)
    return {"address": address, "priority": loc.priority, "weight": loc.weight,
            "mpriority": loc.mpriority, "mweight": loc.mweight, "local": loc.local,
            "probed": loc.probed, "reachable": loc.reachable}


def record_json(rec: EidRecord, referral: bool = False, structured: bool = True) -> dict:
    d = {"eid": eid_text(rec.eid, rec.mask_len), "ttl": rec.ttl,
         "action": (REFERRAL_ACTIONS if referral else ACTION_NAMES).get(rec.action, str(rec.action)),
         "authoritative": rec.authoritative, "map_version": rec.map_version,
         "rlocs": [locator_json(loc, structured) for loc in rec.locators]}
    if referral:
        d["incomplete"] = bool(rec.reserved & 0x800)
        d["signatures"] = len(rec.signatures)
    return d


def _register_like(m, d: dict, structured: bool = True) -> None:
    d["key_id"] = m.key_id
    d["alg_id"] = m.alg_id
    d["auth_len"] = len(m.auth_data)
    d["auth_data"] = m.auth_data.hex()
    d["records"] = [record_json(r, structured=structured) for r in m.records]
    if m.xtr_id is not None:
        d["xtr_id"] = m.xtr_id.hex()
        d["site_id"] = m.site_id.hex() if m.site_id is not None else None


def message_json(m, structured: bool = True) -> dict:
    """A JSON-ready dict with at least ``type`` and ``nonce`` (ECMs: ``inner``).
    ``structured``: LCAF addresses as objects (False: as their one-line text)."""
    if isinstance(m, Ecm):
        return {"type": "ecm", "nonce": getattr(m.inner, "nonce", 0),
                "flags": {"security": m.security, "ddt": m.ddt, "to_etr": m.to_etr, "to_ms": m.to_ms},
                "inner_ip": {"src": format_address(m.ip.src), "dst": format_address(m.ip.dst),
                             "sport": m.ip.sport, "dport": m.ip.dport, "ttl": m.ip.ttl},
                "records": [], "inner": message_json(m.inner, structured)}
    d: dict = {"type": message_type_name(m), "nonce": m.nonce}
    if isinstance(m, MapRequest):
        d["flags"] = {k: getattr(m, k) for k in ("authoritative", "probe", "smr", "pitr", "smr_invoked",
                                                  "local_xtr", "dont_map_reply")}
        show = address_json if structured else format_address
        d["source_eid"] = show(m.source_eid)
        d["itr_rlocs"] = [show(a) for a in m.itr_rlocs]
        d["records"] = [{"eid": eid_text(r.eid, r.mask_len)} for r in m.records]
        if m.map_reply is not None:
            d["map_reply"] = record_json(m.map_reply, structured=structured)
        if m.xtr_id is not None:
            d["xtr_id"] = m.xtr_id.hex()
    elif isinstance(m, MapReply):
        d["flags"] = {"probe": m.probe, "echo_nonce": m.echo_nonce, "security": m.security}
        d["records"] = [record_json(r, structured=structured) for r in m.records]
    elif isinstance(m, MapRegister):
        d["flags"] = {k: getattr(m, k) for k in ("proxy_reply", "security_capable", "eid_notify",
                                                  "ttl_is_lifetime", "merge", "want_map_notify")}
        _register_like(m, d, structured)
    elif isinstance(m, (MapNotify, MapNotifyAck)):
        _register_like(m, d, structured)
    elif isinstance(m, MapReferral):
        d["records"] = [record_json(r, referral=True, structured=structured) for r in m.records]
    elif isinstance(m, InfoMessage):
        d["reply"] = m.reply
        d["key_id"], d["alg_id"], d["auth_len"] = m.key_id, m.alg_id, len(m.auth_data)
        d["ttl"] = m.ttl
        d["records"] = [{"eid": eid_text(m.eid, m.mask_len), "ttl": m.ttl, "rlocs": []}]
        d["payload"] = address_json(m.payload) if structured else format_address(m.payload)
    return d


def message_text(m, indent: str = "") -> str:
    """Human-readable, lig-like text of a message."""
    d = message_json(m, structured=False)
    lines = [f"{indent}{d['type']} nonce 0x{d['nonce']:016x}"]
    if isinstance(m, Ecm):
        ip = d["inner_ip"]
        flags = ",".join(k for k, v in d["flags"].items() if v) or "none"
        lines.append(f"{indent}  flags {flags}; inner {ip['src']}:{ip['sport']} -> {ip['dst']}:{ip['dport']}")
        lines.append(message_text(m.inner, indent + "  "))
        return "\n".join(lines)
    flags = [k for k, v in d.get("flags", {}).items() if v]
    if flags:
        lines.append(f"{indent}  flags: {', '.join(flags)}")
    if "key_id" in d:
        lines.append(f"{indent}  key-id {d['key_id']} alg-id {d['alg_id']} auth-len {d['auth_len']}")
    if "xtr_id" in d:
        lines.append(f"{indent}  xtr-id {d['xtr_id']} site-id {d.get('site_id')}")
    if isinstance(m, MapRequest):
        lines.append(f"{indent}  source-eid {d['source_eid']}, itr-rlocs {', '.join(d['itr_rlocs'])}")
        for r in d["records"]:
            lines.append(f"{indent}  request {r['eid']}")
        if "map_reply" in d:
            lines.extend(_record_lines(d["map_reply"], indent + "  "))
        return "\n".join(lines)
    for r in d.get("records", []):
        lines.extend(_record_lines(r, indent + "  "))
    return "\n".join(lines)


def _record_lines(r: dict, indent: str) -> list[str]:
    head = f"{indent}{r['eid']}, record-ttl {r['ttl']}"
    if "authoritative" in r:
        head += ", auth" if r["authoritative"] else ", not-auth"
    if not r.get("rlocs"):
        head += f", negative, action {r.get('action', 'no-action')}"
    out = [head]
    for loc in r.get("rlocs", []):
        fl = "".join(c for c, on in (("L", loc.get("local")), ("p", loc.get("probed")),
                                     ("R", loc.get("reachable"))) if on)
        out.append(f"{indent}  {loc['address']:<40} priority/weight {loc['priority']}/{loc['weight']}"
                   f" mpri/mwt {loc.get('mpriority')}/{loc.get('mweight')} flags {fl or '-'}")
    return out


__all__ = ["address_json", "message_json", "message_text", "record_json", "locator_json", "eid_text",
           "Eid"]
