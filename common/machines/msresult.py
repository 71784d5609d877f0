"""What one Map-Register does: the result the Map-Server's compute step works out
(common/machines/mapserver.py) and its apply step makes memory follow."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RegisterResult:
    """What one Map-Register does.  ``changes``: ("set", key, value, raw) / ("delete", key)."""

    accepted: bool
    reason: str = ""                 # drop reason when not accepted
    changes: list = field(default_factory=list)
    refused: list = field(default_factory=list)   # (eid, reason) per refused record
    notify: bytes | None = None      # Map-Notify to send after the changes are durable
    notify_to: tuple | None = None   # (address, port)
    nonces: dict = field(default_factory=dict)    # nonce key -> nonce, committed with the changes
    nonce: int = 0
    warnings: list = field(default_factory=list)
    site: str = ""
    registrant: str = ""
    entries: list = field(default_factory=list)   # ("set", Entry) / ("delete", key), for apply
    expiry: dict = field(default_factory=dict)    # key -> absolute expiry time
    unsolicited: list = field(default_factory=list)  # (address, port, nonce, bytes)
    error: str = ""
    plan: tuple | None = None        # (cache key, refresh plan) for the fast path
    digest: bytes | None = None      # of the message, remembered per registrant (warn policy)

    @property
    def nonce_key(self) -> str | None:   # the first (compatibility with single-key callers)
        return next(iter(self.nonces), None)
