"""Run tshark on a capture and turn its dissection into one flat dict per packet.

tshark is run three ways:
  * ``-G fields`` once per binary: the FT_* type of every field, so a value can be
    given its Python type (int, bool, hex bytes, text);
  * ``-T pdml``: the full protocol tree of every packet, with each field's byte
    position (needed to find the authentication data) and the summary lines;
  * ``-T psml``: the summary columns, for the Info column.
IP and UDP checksum validation is switched on, so a wrong inner (ECM or data-plane)
checksum shows up as an expert error.

A packet's dict holds, from the first LISP layer (``lisp`` or ``lisp-data``) on, one
key per field Wireshark shows (a list when the field occurs more than once, in
packet order), skipping hidden duplicates (``ip.addr``, ``udp.port``, ...), protocol
markers and Wireshark's own ``_ws.*`` items, plus:

  ``_info``            the Info column
  ``_protocols``       the protocol stack, e.g. ``raw:ip:udp:lisp:ip:udp:lisp``
  ``_expert``          expert items: {"severity", "message", "field"}
  ``malformed``        a malformed/short-packet marker or an expert error was raised
  ``_trailing_bytes``  bytes of a LISP control layer left to the generic data dissector
  ``_positions``       field -> [(offset, size), ...], offsets from the start of the frame
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

PREFS = ("-n", "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE")
LISP_LAYERS = ("lisp", "lisp-data")
_INTEGER = re.compile(r"FT_U?INT(8|16|24|32|40|48|56|64)|FT_CHAR|FT_FRAMENUM")
_LEADING_NUMBER = re.compile(r"\s*(0x[0-9a-fA-F]+|-?\d+)")


class TsharkError(RuntimeError):
    """tshark exited with an error."""


def find() -> str | None:
    """The tshark binary: $TSHARK, else tshark on PATH; None if not runnable."""
    path = os.environ.get("TSHARK") or shutil.which("tshark")
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    return None


def _run(binary: str, *args: str) -> str:
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise TsharkError(f"{binary} {' '.join(args[:4])}...: exit {proc.returncode}: "
                          f"{proc.stderr.strip()[-500:]}")
    return proc.stdout


@functools.lru_cache(maxsize=4)
def version(binary: str) -> str:
    first = _run(binary, "--version").splitlines()
    return first[0] if first else "unknown"


@functools.lru_cache(maxsize=4)
def field_types(binary: str) -> dict[str, str]:
    """Field abbreviation -> FT_* type; protocols map to "FT_PROTOCOL"."""
    types: dict[str, str] = {}
    for line in _run(binary, "-G", "fields").splitlines():
        cols = line.split("\t")
        if cols[0] == "F" and len(cols) >= 4:
            types[cols[2]] = cols[3]
        elif cols[0] == "P" and len(cols) >= 3:
            types[cols[2]] = "FT_PROTOCOL"
    return types


def value_of(field: ET.Element, ftype: str | None):
    """The Python value of one PDML <field>, by its FT_* type."""
    show = field.get("show", "")
    if ftype == "FT_NONE":                      # a summary line: its text is all there is
        return field.get("showname", "")
    if ftype == "FT_BOOLEAN":
        return show.lower() not in ("", "0", "false")
    if ftype and _INTEGER.fullmatch(ftype):
        m = _LEADING_NUMBER.match(show)     # "7", "0x0007" or "7 (0x0007)"
        if m:
            return int(m.group(1), 0) if m.group(1).startswith("0x") else int(m.group(1))
        return show
    if ftype in ("FT_BYTES", "FT_UINT_BYTES"):
        raw = field.get("value")
        return (raw if raw is not None else show.replace(":", "")).lower()
    return show


def info_columns(binary: str, pcap: str) -> list[str]:
    """The Info column of every packet, from the PSML summary (last section)."""
    root = ET.fromstring(_run(binary, "-r", pcap, *PREFS, "-T", "psml"))
    header = root.find("structure")
    names = [s.text or "" for s in header.findall("section")] if header is not None else []
    col = names.index("Info") if "Info" in names else -1
    return [(p.findall("section")[col].text or "") for p in root.findall("packet")]


class _Packet:
    """Accumulates what one PDML <packet> shows."""

    def __init__(self, ftypes: dict[str, str]):
        self.ftypes = ftypes
        self.out: dict = {"_protocols": "", "_expert": [], "malformed": False,
                          "_trailing_bytes": 0, "_positions": {}}
        self.values: dict[str, list] = {}

    def expert(self, elem: ET.Element) -> None:
        item = {"severity": None, "message": None, "field": None}
        for f in elem.iter("field"):
            name = f.get("name", "")
            if name == "_ws.expert.message":
                item["message"] = f.get("show")
            elif name == "_ws.expert.severity":
                # showname "Severity level: Warning" -> "warning"
                item["severity"] = f.get("showname", "").rpartition(":")[2].strip().lower()
            elif name and not name.startswith("_ws.expert"):
                item["field"] = name
        self.out["_expert"].append(item)
        if item["severity"] == "error":
            self.out["malformed"] = True

    def fields(self, elem: ET.Element, report: bool) -> None:
        """Walk the fields under ``elem`` (not into nested protocols)."""
        for child in elem:
            if child.tag == "proto":
                continue
            name = child.get("name", "")
            if name == "_ws.expert":
                self.expert(child)
                continue
            if name.startswith(("_ws.malformed", "_ws.short")):
                self.out["malformed"] = True
                continue
            if name == "data.len" and self.in_lisp_tail:
                self.out["_trailing_bytes"] += int(child.get("show", "0"))
            if report and name and not name.startswith("_ws.") and child.get("hide") != "yes" \
                    and self.ftypes.get(name) != "FT_PROTOCOL":
                self.values.setdefault(name, []).append(value_of(child, self.ftypes.get(name)))
                self.out["_positions"].setdefault(name, []).append(
                    (int(child.get("pos", "0")), int(child.get("size", "0"))))
            self.fields(child, report)

    def finish(self) -> dict:
        for name, vals in self.values.items():
            self.out[name] = vals[0] if len(vals) == 1 else vals
        return self.out


def _layers(elem: ET.Element) -> list[ET.Element]:
    """Every <proto> under ``elem``, depth first, in document order."""
    found = []
    for child in elem:
        if child.tag == "proto":
            found.append(child)
        found.extend(_layers(child))
    return found


def parse_pdml(text: str, ftypes: dict[str, str]) -> list[dict]:
    packets = []
    for pkt in ET.fromstring(text).findall("packet"):
        acc = _Packet(ftypes)
        reporting = False
        acc.in_lisp_tail = False
        for layer in _layers(pkt):
            name = layer.get("name", "")
            if name == "frame":
                for f in layer.iter("field"):
                    if f.get("name") == "frame.protocols":
                        acc.out["_protocols"] = f.get("show", "")
            if name in ("_ws.malformed", "_ws.short"):
                acc.out["malformed"] = True
            reporting = reporting or name in LISP_LAYERS
            # bytes a LISP control layer could not account for go to "data", either
            # inside the lisp layer or in the layers right after it
            if name == "lisp":
                acc.in_lisp_tail = True
            elif name not in ("data", "fake-field-wrapper"):
                acc.in_lisp_tail = False
            acc.fields(layer, reporting and name not in ("geninfo", "frame"))
        packets.append(acc.finish())
    return packets


def dissect(binary: str, pcap: str) -> list[dict]:
    """Every packet of ``pcap`` as tshark dissects it (see the module docstring)."""
    packets = parse_pdml(_run(binary, "-r", pcap, *PREFS, "-T", "pdml"), field_types(binary))
    infos = info_columns(binary, pcap)
    if len(infos) != len(packets):
        raise TsharkError(f"{len(packets)} packets in PDML but {len(infos)} in PSML")
    for pkt, info in zip(packets, infos):
        pkt["_info"] = info
    return packets
