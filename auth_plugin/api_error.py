"""The refusal of the proxy's own APIs (control plane, datasets): an HTTP status and a code naming why.

app.py answers every one of them as the same JSON error, in one place.
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
