"""Who is calling: an opaque token from the SQLite store or a JWT from an identity provider.

Failures are `AuthError`s carrying their RFC 6750 answer; app.py turns each into one response in one place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth_plugin.database import UNAVAILABLE
from auth_plugin.settings import JwtSettings
from auth_plugin.token_store import PREFIX, TokenStore, hash_token
from food_rotation.service_error import ServiceError

log = logging.getLogger("auth_plugin.auth")


@dataclass(frozen=True)
class Principal:
    user: str
    scopes: frozenset[str]
    subject_key: str  # stable, non-secret identity of the credential: the rate limiter's bucket key
    source: str  # "token" or "jwt"


class AuthError(ServiceError):
    """401 invalid_token (`reason` says which way, for metrics) or 403 insufficient_scope, with the RFC 6750
    WWW-Authenticate header."""

    def __init__(self, reason: str, description: str, status: int = 401, scope: str | None = None) -> None:
        code = "insufficient_scope" if status == 403 else "invalid_token"
        challenge = ['Bearer realm="food-rotation-serve"', f'error="{code}"', f'error_description="{description}"']
        if scope:
            challenge.append(f'scope="{scope}"')
        super().__init__(status, code, description, {"WWW-Authenticate": ", ".join(challenge)})
        self.reason = reason
        self.scope = scope


def credential_from(headers: Mapping[str, str]) -> str:
    """`Authorization: Bearer <token>`, or the original system's `access_token` header. Every token we accept is
    printable ASCII; anything else is refused here, before it is hashed or parsed."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
            raise AuthError("malformed", "the Authorization header must be 'Bearer <token>'")
        token = token.strip()
    else:
        token = headers.get("access_token", "").strip()
        if not token:
            raise AuthError("missing", "no access token: send 'Authorization: Bearer <token>'")
    if not (token.isascii() and token.isprintable()):
        raise AuthError("malformed", "the token holds characters no token has (non-ASCII or control characters)")
    return token


# PyJWT's refusals, most specific first, and how each is answered (reason for metrics, description for the caller).
_JWT_REFUSALS: tuple[tuple[type[jwt.InvalidTokenError], tuple[str, str]], ...] = (
    (jwt.ExpiredSignatureError, ("expired", "the token has expired")),
    (jwt.ImmatureSignatureError, ("not_yet_valid", "the token is not valid yet (nbf)")),
    (jwt.InvalidAudienceError, ("wrong_audience", "the token is for another audience")),
    (jwt.InvalidIssuerError, ("wrong_issuer", "the token comes from another issuer")),
    (jwt.InvalidSignatureError, ("bad_signature", "the token's signature does not verify")),
    (jwt.InvalidAlgorithmError, ("bad_signature", "the token is signed with an algorithm that is not accepted")),
)


# The algorithms each kind of key can verify: a token is only checked with its key's own family (an RS256 header
# against an EC key raised PyJWT's InvalidKeyError, a 500, before the family was pinned).
_FAMILIES = {"rsa": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, "ec": {"ES256", "ES384", "ES512"},
             "ed": {"EdDSA"}, "secret": {"HS256", "HS384", "HS512"}}


def key_family(key: str | bytes, from_file: bool) -> str:
    if not from_file:
        return "secret"
    public = serialization.load_pem_public_key(key if isinstance(key, bytes) else key.encode())
    if isinstance(public, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "ec"
    return "ed"


class JwtVerifier:
    def __init__(self, settings: JwtSettings) -> None:
        self._settings = settings
        if settings.public_key_file is not None:
            self._key: str | bytes = settings.public_key_file.read_bytes()
        else:
            self._key = settings.secret or ""
        family = key_family(self._key, settings.public_key_file is not None)
        self._algorithms = [name for name in settings.algorithms if name in _FAMILIES[family]]
        if not self._algorithms:
            raise ValueError(f"none of the JWT algorithms {list(settings.algorithms)} fits the configured "
                             f"{family} key: allow one of {sorted(_FAMILIES[family])}")

    def verify(self, token: str) -> Principal:
        s = self._settings
        try:
            if "crit" in jwt.get_unverified_header(token):  # RFC 7515: an extension we do not know must fail
                raise AuthError("malformed", "the token's 'crit' header names extensions this service does not know")
            claims = jwt.decode(token, self._key, algorithms=self._algorithms, audience=s.audience, issuer=s.issuer,
                                leeway=s.leeway_s,
                                options={"require": ["exp", "aud", s.user_claim] + (["iss"] if s.issuer else [])})
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("malformed", f"the token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidTokenError as exc:
            reason, description = next((answer for kind, answer in _JWT_REFUSALS if isinstance(exc, kind)),
                                       ("malformed", "the token is not a well-formed JWT"))
            raise AuthError(reason, description) from exc
        except jwt.PyJWTError as exc:  # InvalidKeyError and the like: still the caller's token, never a 500
            raise AuthError("malformed", "the token cannot be checked with this service's key") from exc
        subject = claims[s.user_claim]
        if not isinstance(subject, str) or not 0 < len(subject) <= 200 or not subject.isprintable():
            raise AuthError("malformed", f"the token's {s.user_claim!r} claim must name its user (1-200 characters)")
        if float(claims["exp"]) - time.time() > s.max_lifetime_s + s.leeway_s:
            raise AuthError("too_long_lived", f"the token expires more than {s.max_lifetime_s:g} s from now: "
                                              "ask the identity provider for a shorter-lived one")
        # "jwt:" keeps the identity's source with its name: sub "admin" is not the opaque token user "admin" (in the
        # manifest, the audit log, the rate limiter or DELETE /datasets/{n}/users/{user}).
        user = f"jwt:{subject}"
        return Principal(user=user, scopes=scope_claim(claims.get(s.scope_claim, "")), subject_key=user, source="jwt")


def scope_claim(value: object) -> frozenset[str]:
    """A space-separated string or a list of strings (RFC 8693 and common practice); any other shape is refused:
    a dict's keys, a number or a boolean are not scopes."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise AuthError("malformed", "the token's scope claim must be a string or a list of strings")


class Authenticator:
    """Opaque tokens are looked up in the store (a lookup is trusted for `cache_s`, so revocation takes effect
    within that); anything shaped like a JWT goes to the verifier, when one is configured."""

    TOUCH_EVERY_S = 60.0  # a token's "last used" is written at most this often: one write a minute, not per call

    def __init__(self, store: TokenStore, jwt_verifier: JwtVerifier | None, cache_s: float) -> None:
        self._store = store
        self._jwt = jwt_verifier
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal | AuthError]] = {}
        self._touched: dict[int, float] = {}  # token id -> when its last use was written (this process)

    async def identify(self, headers: Mapping[str, str]) -> Principal:
        """Whoever the credential names, whatever its scopes."""
        return await self._identify(credential_from(headers))

    async def authenticate(self, headers: Mapping[str, str], scope: str) -> Principal:
        principal = await self.identify(headers)
        if scope not in principal.scopes:
            raise AuthError("insufficient_scope", f"this call needs the '{scope}' scope", status=403, scope=scope)
        return principal

    async def _identify(self, token: str) -> Principal:
        if token.startswith(PREFIX):
            return await self._opaque(token)
        if self._jwt is not None and token.count(".") == 2:
            return self._jwt.verify(token)
        raise AuthError("unknown", "the token is not recognised")

    async def _opaque(self, token: str) -> Principal:
        key = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is None or now - cached[0] > self._cache_s:
            cached = (now, await asyncio.to_thread(self._check, token))  # the database waits off the loop
            if len(self._cache) > 10_000:  # bounded: unknown tokens sprayed at us must not grow it forever
                self._cache.clear()
            self._cache[key] = cached
        result = cached[1]
        if isinstance(result, AuthError):
            raise result
        return result

    def _check(self, token: str) -> Principal | AuthError:
        try:
            record = self._store.lookup(token)
        except UNAVAILABLE as exc:  # SQLite's "database is locked", or PostgreSQL out of reach: not cached
            raise ServiceError(503, "token_store_busy", "the token database is busy; try again shortly",
                               {"Retry-After": "1"}) from exc
        if record is None:
            return AuthError("unknown", "the token is not recognised")
        if record.revoked:
            return AuthError("revoked", "the token has been revoked")
        now = time.time()
        if record.expires_at <= now:
            return AuthError("expired", "the token has expired")
        self._touch(record.id, record.last_used_at, now)
        return Principal(user=record.user, scopes=record.scopes, subject_key=f"token:{record.id}", source="token")

    def _touch(self, token_id: int, stored: float | None, now: float) -> None:
        """Its last use, written when the stored one (or this process's last write) is a minute old; a busy
        database skips it: a token is never refused for want of its "last used"."""
        if now - max(stored or 0.0, self._touched.get(token_id, 0.0)) < self.TOUCH_EVERY_S:
            return
        if len(self._touched) > 10_000:
            self._touched.clear()
        self._touched[token_id] = now
        try:
            self._store.touch(token_id, now)
        except UNAVAILABLE:
            log.warning("could not record the last use of token %d: the token database is busy", token_id)
