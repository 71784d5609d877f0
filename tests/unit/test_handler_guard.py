"""A handler that raises on one datagram is counted by exception type, never fatal."""

from __future__ import annotations

from roles.udp import guarded


class Counters:
    def __init__(self) -> None:
        self.drops: list[tuple[str, str]] = []

    def drop(self, reason: str, detail: str) -> None:
        self.drops.append((reason, detail))


def test_guarded_counts_by_exception_type_and_keeps_going():
    c = Counters()
    seen = []

    def handler(data, addr):
        if data == b"bad":
            raise KeyError("boom")
        seen.append(data)
        return len(data)
    h = guarded(handler, c, "datagram")
    assert h(b"ok", ("127.0.0.1", 1)) == 2
    assert h(b"bad", ("127.0.0.1", 1)) is None
    assert h(b"ok2", ("127.0.0.1", 1)) == 3
    assert seen == [b"ok", b"ok2"]
    assert [r for r, _ in c.drops] == ["handler-error.KeyError"] and "boom" in c.drops[0][1]
