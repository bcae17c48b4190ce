"""The one shape of every refusal, in the handler and in the gateway alike: an HTTP status, a code naming the
problem for programs, a message for people, and any headers the answer needs (WWW-Authenticate, Retry-After).

Both the handler (inside the .mar) and the gateway answer it as the same JSON body, so a caller parses one format.
"""

from __future__ import annotations

from collections.abc import Mapping


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def as_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, "status": self.status}
