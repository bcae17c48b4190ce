"""Send one prediction to TorchServe with TorchServe's key in place of the caller's credential."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict

from auth_plugin.bodies import StreamedBody
from auth_plugin.torchserve_keys import KeysUnavailable, TorchServeKeys, send_with_key
from food_rotation.service_error import ServiceError

# Hop-by-hop headers (RFC 9110 7.6.1) never cross a proxy; nor do the caller's credentials, nor lengths that
# the client library recomputes.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "proxy-connection"})
# Nor "Expect: 100-continue" (curl sends it for bodies over 1 MB): the proxy has the whole body already, and
# TorchServe's "100 Continue" would only add a round trip.
_NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "authorization", "access_token", "cookie", "expect"}
_NOT_RETURNED = HOP_BY_HOP | {"content-length", "server", "date"}
# What curl --data-binary sends by default: TorchServe would parse the photo as a form and mangle or refuse it.
_FORM = "application/x-www-form-urlencoded"
# The query parameters the handler reads (TorchServe hands them to it like form fields). Nothing else of the URL
# crosses: TorchServe's access log writes its URLs out, and a caller may have put a credential there.
FORWARDED_QUERY = frozenset({"format", "min_confidence"})


class UpstreamError(ServiceError):
    """TorchServe could not answer: 503 (unreachable, no key) or 504 (too slow); `kind` labels the metric."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(status, "upstream_" + kind, message)
        self.kind = kind


@dataclass(frozen=True)
class UpstreamAnswer:
    status: int
    headers: CIMultiDict[str]  # case-insensitive: TorchServe sends its names in lower case
    body: bytes


def forwarded_headers(headers: Mapping[str, str], request_id: str) -> dict[str, str]:
    connection_listed = {name.strip().lower() for name in headers.get("Connection", "").split(",")}
    out = {name: value for name, value in headers.items()
           if name.lower() not in _NOT_FORWARDED and name.lower() not in connection_listed}
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type in ("", _FORM):
        out["Content-Type"] = "application/octet-stream"
    out["X-Request-ID"] = request_id
    return out


def forwarded_query(query: Mapping[str, str]) -> list[tuple[str, str]]:
    """The caller's query parameters that the handler reads, in order (a MultiDict's repeats included)."""
    return [(name, value) for name, value in query.items() if name in FORWARDED_QUERY]


def returned_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    return CIMultiDict((name, value) for name, value in headers.items() if name.lower() not in _NOT_RETURNED)


def upstream_session(connect_timeout_s: float, read_timeout_s: float) -> aiohttp.ClientSession:
    """One pool of connections to TorchServe; bodies pass through as they are (no decompression)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
    return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64), auto_decompress=False)


async def forward(session: aiohttp.ClientSession, keys: TorchServeKeys, url: str, body: bytes | StreamedBody,
                  headers: Mapping[str, str], params: Sequence[tuple[str, str]] = ()) -> UpstreamAnswer:
    """POST with TorchServe's inference key (re-read once if TorchServe refuses it); again once if TorchServe
    dropped a pooled connection. A streamed body goes under the length its client announced, and when its upload
    broke off (too slow, the client gone) that is the failure raised: neither TorchServe's nor the version's."""
    if not isinstance(body, StreamedBody):
        return await _post(session, keys, url, body, headers, params)
    try:
        return await _post(session, keys, url, body, {**headers, "Content-Length": str(body.length)}, params)
    except UpstreamError:
        if body.failure is not None:
            raise body.failure from None
        raise


async def _post(session: aiohttp.ClientSession, keys: TorchServeKeys, url: str, body: bytes | StreamedBody,
                headers: Mapping[str, str], params: Sequence[tuple[str, str]]) -> UpstreamAnswer:
    async def inference_key(refused: str | None) -> str:
        return await keys.inference(session, refused)

    for attempt in (1, 2):
        try:
            answer = await send_with_key(session, "POST", url, inference_key, headers, data=body,
                                         params=list(params) or None)
            if answer.key_refused:
                raise UpstreamError(503, "key_refused", "TorchServe refused its own key twice")
            return UpstreamAnswer(answer.status, returned_headers(answer.headers), answer.body)
        except KeysUnavailable as exc:
            raise UpstreamError(503, "no_key", "TorchServe is not ready (no readable key file)") from exc
        except aiohttp.ConnectionTimeoutError as exc:  # before TimeoutError: it is one, but means "down"
            raise UpstreamError(503, "unreachable", "TorchServe did not accept a connection in time") from exc
        except TimeoutError as exc:
            raise UpstreamError(504, "timeout", "TorchServe did not answer in time") from exc
        except aiohttp.ServerDisconnectedError as exc:
            if attempt == 1:
                continue
            raise UpstreamError(503, "disconnected", "TorchServe closed the connection") from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise UpstreamError(503, "unreachable", "TorchServe is not reachable") from exc
    raise AssertionError("unreachable: the second attempt returns or raises")
