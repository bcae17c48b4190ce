"""HTTPS in the gateway itself: a certificate and key from files, optionally client certificates required (mTLS),
and the files reread on SIGHUP without dropping a connection.

The listening socket keeps one SSL context for life, so a reload cannot replace it; instead that context's SNI
callback, which OpenSSL runs in every handshake (with or without a server name), hands the connection the newest
context that loaded cleanly. Connections already open keep theirs; a reload that fails (a half-written file) logs
the error and leaves the last good certificate in use.
"""

from __future__ import annotations

import logging
import ssl

from auth_plugin.settings import ProxySettings

log = logging.getLogger("auth_plugin.tls")


def _context(settings: ProxySettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)  # type: ignore[arg-type]
    if settings.tls_client_ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=settings.tls_client_ca_file)
    return context


class ReloadableTls:
    """The context to listen with (`listening`), and `reload()` for SIGHUP."""

    def __init__(self, settings: ProxySettings) -> None:
        self._settings = settings
        self._current = _context(settings)  # a bad file at start is an error at start
        self.listening = _context(settings)
        self.listening.sni_callback = self._hand_over

    def _hand_over(self, connection: ssl.SSLObject, _server_name: str | None, _context: ssl.SSLContext) -> None:
        connection.context = self._current

    def reload(self) -> bool:
        try:
            self._current = _context(self._settings)
        except (OSError, ssl.SSLError) as exc:
            log.error("TLS files not reloaded, the previous certificate stays in use: %s", exc)
            return False
        log.info("TLS certificate reloaded from %s", self._settings.tls_cert_file)
        return True
