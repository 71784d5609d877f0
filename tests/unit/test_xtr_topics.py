"""An ETR/ITR on a satellite host: the workers punt their datagrams on topics qualified
by the host (rx.<type>.<host>), a node-wide subscriber keeps only the exact topic."""

from __future__ import annotations

from types import SimpleNamespace

from bus import topics
from common.machines.resolver import Punt
from roles.map_resolver import Worker


class Recorder:
    def __init__(self) -> None:
        self.published: list[str] = []
        self.counts: dict[str, int] = {}

    def publish(self, topic, _type, _body) -> None:
        self.published.append(topic)

    def inc(self, name, n=1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


def punted(xtr_host):
    rec = Recorder()
    bus = SimpleNamespace(xtr_host=xtr_host)
    ctx = SimpleNamespace(cfg=SimpleNamespace(bus=bus), bus=rec, counters=rec)
    w = Worker(ctx, resolver=None, local="192.0.2.20")
    src = ("198.51.100.1", 4342)
    w._actions([Punt(k, b"\x40", src) for k in
                ("map-notify", "ecm-etr", "map-request", "map-reply", "map-register.3",
                 "map-notify-ack.1", "info")], src, 0.0)
    return rec.published


def test_rx_xtr_is_the_node_wide_topic_or_one_qualified_by_the_host():
    assert topics.rx_xtr(topics.MAP_NOTIFY, None) == "rx.map-notify"
    assert topics.rx_xtr(topics.ECM_ETR, "sat1") == "rx.ecm-etr.sat1"
    # whole-segment matching: the node-wide subscription also matches a host's topic
    # (the etr and itr keep only the exact one), a host's never matches another's
    assert topics.matches("rx.ecm-etr", "rx.ecm-etr.sat1")
    assert not topics.matches("rx.ecm-etr.sat1", "rx.ecm-etr.sat10")
    assert not topics.matches("rx.ecm-etr.sat1", "rx.ecm-etr")


def test_a_worker_on_one_host_or_an_xtr_less_satellite_punts_node_wide():
    assert punted(None) == ["rx.map-notify", "rx.ecm-etr", "rx.map-request", "rx.map-reply",
                            "rx.map-register.3", "rx.map-notify-ack.1", "rx.info"]


def test_a_worker_on_a_satellite_with_an_xtr_qualifies_only_their_datagrams():
    assert punted("sat1") == ["rx.map-notify.sat1", "rx.ecm-etr.sat1", "rx.map-request.sat1",
                              "rx.map-reply.sat1", "rx.map-register.3", "rx.map-notify-ack.1",
                              "rx.info"]
