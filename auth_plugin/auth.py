"""Who is calling: an opaque token from the SQLite store or a JWT from an identity provider.

Failures are `AuthError`s carrying their RFC 6750 answer; app.py turns each into one response in one place.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from auth_plugin.settings import JwtSettings
from auth_plugin.token_store import PREFIX, TokenStore, hash_token
from food_rotation.service_error import ServiceError


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
    """`Authorization: Bearer <token>`, or the original system's `access_token` header."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
            raise AuthError("malformed", "the Authorization header must be 'Bearer <token>'")
        return token.strip()
    token = headers.get("access_token", "").strip()
    if not token:
        raise AuthError("missing", "no access token: send 'Authorization: Bearer <token>'")
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


class JwtVerifier:
    def __init__(self, settings: JwtSettings) -> None:
        self._settings = settings
        if settings.public_key_file is not None:
            self._key: str | bytes = settings.public_key_file.read_bytes()
        else:
            self._key = settings.secret or ""

    def verify(self, token: str) -> Principal:
        s = self._settings
        try:
            claims = jwt.decode(token, self._key, algorithms=list(s.algorithms), audience=s.audience, issuer=s.issuer,
                                leeway=s.leeway_s, options={"require": ["exp", "aud"] + (["iss"] if s.issuer else [])})
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("malformed", f"the token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidTokenError as exc:
            reason, description = next((answer for kind, answer in _JWT_REFUSALS if isinstance(exc, kind)),
                                       ("malformed", "the token is not a well-formed JWT"))
            raise AuthError(reason, description) from exc
        raw_scopes = claims.get(s.scope_claim, "")
        scopes = raw_scopes.split() if isinstance(raw_scopes, str) else [str(x) for x in raw_scopes or []]
        user = str(claims.get(s.user_claim, "unknown"))
        return Principal(user=user, scopes=frozenset(scopes), subject_key=f"jwt:{user}", source="jwt")


class Authenticator:
    """Opaque tokens are looked up in the store (a lookup is trusted for `cache_s`, so revocation takes effect
    within that); anything shaped like a JWT goes to the verifier, when one is configured."""

    def __init__(self, store: TokenStore, jwt_verifier: JwtVerifier | None, cache_s: float) -> None:
        self._store = store
        self._jwt = jwt_verifier
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal | AuthError]] = {}

    def identify(self, headers: Mapping[str, str]) -> Principal:
        """Whoever the credential names, whatever its scopes."""
        return self._identify(credential_from(headers))

    def authenticate(self, headers: Mapping[str, str], scope: str) -> Principal:
        principal = self.identify(headers)
        if scope not in principal.scopes:
            raise AuthError("insufficient_scope", f"this call needs the '{scope}' scope", status=403, scope=scope)
        return principal

    def _identify(self, token: str) -> Principal:
        if token.startswith(PREFIX):
            return self._opaque(token)
        if self._jwt is not None and token.count(".") == 2:
            return self._jwt.verify(token)
        raise AuthError("unknown", "the token is not recognised")

    def _opaque(self, token: str) -> Principal:
        key = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is None or now - cached[0] > self._cache_s:
            cached = (now, self._check(token))
            if len(self._cache) > 10_000:  # bounded: unknown tokens sprayed at us must not grow it forever
                self._cache.clear()
            self._cache[key] = cached
        result = cached[1]
        if isinstance(result, AuthError):
            raise result
        return result

    def _check(self, token: str) -> Principal | AuthError:
        record = self._store.lookup(token)
        if record is None:
            return AuthError("unknown", "the token is not recognised")
        if record.revoked:
            return AuthError("revoked", "the token has been revoked")
        if record.expires_at <= time.time():
            return AuthError("expired", "the token has expired")
        return Principal(user=record.user, scopes=record.scopes, subject_key=f"token:{record.id}", source="token")
