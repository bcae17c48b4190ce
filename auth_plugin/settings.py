"""The proxy's settings: one frozen object built from the environment (or passed in whole by tests)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from food_rotation import MODEL_NAME
from food_rotation.photo_io import DEFAULT_MAX_FULL_DECODE_PIXELS, DEFAULT_MAX_IMAGE_PIXELS

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class JwtSettings:
    """Tokens from an identity provider: a public key file (RS256/ES256) or a shared secret (HS256)."""

    public_key_file: Path | None = None  # the identity provider's public key (PEM): RS256/PS256 or ES256 tokens
    secret: str | None = field(default=None, repr=False)  # a shared secret instead: HS256 tokens
    algorithms: tuple[str, ...] = ("RS256", "ES256")  # accepted, comma-separated; only the key's family is used
    audience: str = "food-rotation-serve"  # the `aud` a token must carry
    issuer: str | None = None  # the `iss` a token must carry (unchecked when unset)
    scope_claim: str = "scope"  # the claim holding the scopes: a space-separated string or a list of strings
    user_claim: str = "sub"  # the claim naming the user (logs, feedback, rate limiting)
    leeway_s: float = 30.0  # clock skew allowed on exp and nbf
    max_lifetime_s: float = 86400.0  # a token whose exp is further away than this is refused (a stolen one ends)

    @property
    def enabled(self) -> bool:
        return self.public_key_file is not None or self.secret is not None


@dataclass(frozen=True)
class ProxySettings:
    host: str = "127.0.0.1"  # the address the gateway binds: 0.0.0.0 for every interface (then put TLS in front)
    port: int = 8080  # the gateway's port, the only public one
    behind_tls_terminator: bool = False  # a TLS terminator sits in front: no warning for a non-loopback host
    tls_cert_file: Path | None = None  # the gateway's certificate chain (PEM): HTTPS on this port; reread on SIGHUP
    tls_key_file: Path | None = None  # the certificate's private key (PEM; the cert file itself when unset)
    tls_client_ca_file: Path | None = None  # CA certificates (PEM): every caller must present a certificate they signed
    hsts_max_age_s: int = 31_536_000  # Strict-Transport-Security max-age on every HTTPS answer (0: no header)
    inference_url: str = "http://127.0.0.1:8180"  # TorchServe's inference API (loopback)
    management_url: str = "http://127.0.0.1:8181"  # TorchServe's management API (loopback)
    torchserve_key_file: Path = ROOT / ".run" / "torchserve" / "key_file.json"  # TorchServe's keys, read and renewed
    token_db: Path = ROOT / ".run" / "proxy" / "tokens.sqlite3"  # tokens (hashed) and the routing table
    # postgresql://user:password@host:5432/db: tokens, routing table and history shared by every gateway pointed at
    # it (docs/scale-out.md) instead of the token_db file; never logged or shown (the password is masked)
    database_url: str | None = field(default=None, repr=False)
    state_refresh_s: float = 1.0  # with a database URL: how often a gateway rereads the routing table others change
    pod_name: str = ""  # with a database URL: this pod's name in the pods' reports (empty: the host name)
    model_name: str = MODEL_NAME  # the one model this gateway serves
    # Raw and multipart photos up to 16 MiB; base64 JSON inflates by 4/3, so about 12 MB photos that way.
    max_body_bytes: int = 16 * 1024 * 1024
    body_timeout_s: float = 30.0  # a client must finish sending its body within this (slow-loris -> 408)
    # prediction bodies sent on to TorchServe while they arrive, at most this many at once (the rest are read whole
    # first, so slow uploads can hold only this many of the 64 pooled TorchServe connections); 0: never streamed
    streamed_uploads: int = 16
    keepalive_timeout_s: float = 15.0  # an idle keep-alive connection (or one slow to send its next request) closes
    header_timeout_s: float = 10.0  # a new connection must send its first request's headers within this
    max_connections: int = 1024  # connections held at once; then the oldest idle one (token-less first) makes room
    max_connections_per_address: int = 256  # connections one client address may hold at once
    connect_timeout_s: float = 0.5  # TorchServe down -> 503 well within a second
    read_timeout_s: float = 35.0  # above TorchServe's 30 s response timeout -> 504 only when truly stuck
    key_refresh_margin_s: float = 300.0  # renew TorchServe's keys this long before they expire
    token_cache_s: float = 0.5  # an opaque-token lookup is trusted this long: revocation bites within a second
    # signs the answer ids (X-Answer-Id) a correction quotes to count for its version; unset: a random key per
    # gateway process. Gateways sharing one accept each other's ids
    answer_key: str | None = field(default=None, repr=False)
    answer_id_lifetime_s: float = 3600.0  # a correction quoting an older answer id is stored but counts for nothing
    rate_limit_per_s: float = 0.0  # requests per second per token; 0 turns rate limiting off
    rate_limit_burst: int = 20  # requests a token may send at once before the rate applies
    jwt: JwtSettings = field(default_factory=JwtSettings)
    model_store: Path = ROOT / "model_store"  # the archives versions are deployed from
    gate_dir: Path = ROOT / "samples" / "gate"  # the smoke gate's upright photos; each is checked at its four turns
    gate_min_accuracy: float = 0.9  # a version below this on the gate's photos (or held-out corrections) is refused
    # real upright photos never trained on (make real-data); a new version must do as well as the default on them
    gate_real_dir: Path = ROOT / "data" / "rotation_set" / "heldout" / "real"
    gate_tolerance: float = 0.05  # how much worse than the default (accuracy, upright photos turned) a version may be
    # a version whose record says it turns more upright photos of a source it never saw is refused (leave one out)
    gate_max_unseen_harm: float = 0.01
    deploy_workers: int = 2  # workers a deployed version is registered with (its archive's model-config wins)
    register_timeout_s: float = 180.0  # how long a version's workers may take to start
    drain_timeout_s: float = 60.0  # how long a promotion waits for the old default's requests in flight
    reconcile_interval_s: float = 5.0  # how often TorchServe is brought back to the routing table
    readiness_cache_s: float = 1.0  # /readyz (no token needed) asks TorchServe at most this often
    # One proxy per model of a TorchServe runs the control plane (rollouts, reconciler; it holds
    # control-plane-<model>.lock beside TorchServe's key file); others in front of the same TorchServe for the same
    # model set this false and serve predictions only.
    control_plane: bool = True
    datasets_dir: Path = ROOT / "data" / "feedback"  # the feedback loop's datasets, corrections stored upright
    dataset_max_photos: int = 20_000  # photos one dataset may hold: then 409 dataset_full until an admin starts one
    dataset_max_photos_per_user: int = 1_000  # photos one user may add to a dataset (any predict token writes labels)
    upload_threads: int = 2  # threads that parse and decode feedback uploads (the other routes keep the default pool)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # as the handler's: what it would refuse is refused here
    max_full_decode_pixels: int = DEFAULT_MAX_FULL_DECODE_PIXELS  # as the handler's: for images decoded whole (PNG...)

    def url(self, for_callers: bool = False) -> str:
        """The gateway's base URL as bound, or as a caller on this machine reaches it (a wildcard address, 0.0.0.0
        or ::, is called on loopback)."""
        host = "127.0.0.1" if for_callers and self.host in ("0.0.0.0", "::") else self.host
        return f"{'https' if self.tls else 'http'}://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ProxySettings:
        """PROXY_<FIELD> variables override the defaults (PROXY_JWT_<FIELD> for `jwt`); unset or empty ones keep
        them. The names come from the fields themselves, so a new setting cannot be forgotten here."""
        values = _from_environment(cls, environ, "PROXY_", skip={"jwt"})
        jwt_values = _from_environment(JwtSettings, environ, "PROXY_JWT_")
        if "secret" in jwt_values and "algorithms" not in jwt_values:
            jwt_values["algorithms"] = ("HS256",)  # a shared secret means HMAC, not the public-key default
        if jwt_values:
            values["jwt"] = JwtSettings(**jwt_values)
        return cls(**values)


def _convert(name: str, raw: str, kind: object) -> object:
    """`raw` as the field's type: str, int, float, bool (true/false, 1/0, yes/no), Path or a comma-separated tuple
    of str (optional or not)."""
    kinds = set(get_args(kind)) - {type(None)} if get_origin(kind) in (Union, UnionType) else {kind}
    (kind,) = kinds
    try:
        if kind is bool:
            return _BOOLEANS[raw.strip().lower()]
        if get_origin(kind) is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return kind(raw)  # type: ignore[operator]
    except (ValueError, KeyError):
        raise ValueError(f"{name}={raw!r}: expected {getattr(kind, '__name__', kind)}") from None


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _from_environment(settings: type, environ: Mapping[str, str], prefix: str,
                      skip: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    hints = get_type_hints(settings)
    values: dict[str, Any] = {}
    for spec in fields(settings):
        name = prefix + spec.name.upper()
        if spec.name not in skip and environ.get(name, "") != "":
            values[spec.name] = _convert(name, environ[name], hints[spec.name])
    return values
