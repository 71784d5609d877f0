"""Shared helpers for CLI verbs."""

from __future__ import annotations


class UserError(Exception):
    """An error the operator caused or can fix; printed as one line, no traceback."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status
