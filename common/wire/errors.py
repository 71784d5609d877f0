"""The codec's one error type.

Decoding bytes from the network raises :class:`DecodeError` and nothing else: it
names the field that could not be read and the byte offset (from the first byte of
the buffer handed to the decoder) where the problem was found.  Roles catch it,
count the drop by ``reason_key`` and keep serving.
"""

from __future__ import annotations


class DecodeError(ValueError):
    """Bytes that cannot be a valid encoding of a LISP message."""

    def __init__(self, field: str, offset: int, reason: str) -> None:
        self.field = field
        self.offset = offset
        self.reason = reason
        super().__init__(f"decode error at offset {offset}: {field}: {reason}")

    @property
    def reason_key(self) -> str:
        """A short, stable key for counters and rate-limited logs."""
        return self.field


class EncodeError(ValueError):
    """A message object that cannot be put on the wire (our own misuse)."""
