"""The proxy's settings: one frozen object built from the environment (or passed in whole by tests)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class JwtSettings:
    """Tokens from an identity provider: a public key file (RS256/ES256) or a shared secret (HS256)."""

    public_key_file: Path | None = None
    secret: str | None = field(default=None, repr=False)
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    audience: str = "food-rotation-serve"
    issuer: str | None = None
    scope_claim: str = "scope"
    user_claim: str = "sub"
    leeway_s: float = 30.0

    @property
    def enabled(self) -> bool:
        return self.public_key_file is not None or self.secret is not None


@dataclass(frozen=True)
class ProxySettings:
    host: str = "127.0.0.1"
    port: int = 8080
    inference_url: str = "http://127.0.0.1:8180"
    management_url: str = "http://127.0.0.1:8181"
    torchserve_key_file: Path = ROOT / ".run" / "torchserve" / "key_file.json"
    token_db: Path = ROOT / ".run" / "proxy" / "tokens.sqlite3"
    model_name: str = "food_rotation"
    # Raw and multipart photos up to 16 MiB; base64 JSON inflates by 4/3, so about 12 MB photos that way.
    max_body_bytes: int = 16 * 1024 * 1024
    body_timeout_s: float = 30.0  # a client must finish sending its body within this (slow-loris -> 408)
    connect_timeout_s: float = 0.5  # TorchServe down -> 503 well within a second
    read_timeout_s: float = 35.0  # above TorchServe's 30 s response timeout -> 504 only when truly stuck
    key_refresh_margin_s: float = 300.0  # renew TorchServe's inference key this long before it expires
    token_cache_s: float = 0.5  # an opaque-token lookup is trusted this long: revocation bites within a second
    rate_limit_per_s: float = 0.0  # per token; 0 turns rate limiting off
    rate_limit_burst: int = 20
    jwt: JwtSettings = field(default_factory=JwtSettings)
    # Version rollout (the admin control plane).
    model_store: Path = ROOT / "model_store"
    gate_dir: Path = ROOT / "samples" / "gate"  # upright photos; each is checked at its four turns
    gate_min_accuracy: float = 0.9
    deploy_workers: int = 2
    register_timeout_s: float = 180.0
    drain_timeout_s: float = 60.0
    reconcile_interval_s: float = 5.0  # how often TorchServe is brought back to the routing table
    # The feedback loop: corrections are stored upright in datasets under this folder.
    datasets_dir: Path = ROOT / "data" / "feedback"
    max_image_pixels: int = 100_000_000  # as the handler's: a photo it would refuse is refused here too

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ProxySettings:
        """PROXY_* variables override the defaults; unset ones keep them."""
        def get(name: str) -> str | None:
            value = environ.get(f"PROXY_{name}")
            return value if value not in (None, "") else None

        values: dict[str, object] = {}
        conversions = {"HOST": ("host", str), "PORT": ("port", int), "INFERENCE_URL": ("inference_url", str),
                       "MANAGEMENT_URL": ("management_url", str), "TORCHSERVE_KEY_FILE": ("torchserve_key_file", Path),
                       "TOKEN_DB": ("token_db", Path), "MODEL_NAME": ("model_name", str),
                       "MAX_BODY_BYTES": ("max_body_bytes", int), "BODY_TIMEOUT_S": ("body_timeout_s", float),
                       "CONNECT_TIMEOUT_S": ("connect_timeout_s", float),
                       "READ_TIMEOUT_S": ("read_timeout_s", float),
                       "KEY_REFRESH_MARGIN_S": ("key_refresh_margin_s", float),
                       "TOKEN_CACHE_S": ("token_cache_s", float), "RATE_LIMIT_PER_S": ("rate_limit_per_s", float),
                       "RATE_LIMIT_BURST": ("rate_limit_burst", int), "MODEL_STORE": ("model_store", Path),
                       "GATE_DIR": ("gate_dir", Path), "GATE_MIN_ACCURACY": ("gate_min_accuracy", float),
                       "DEPLOY_WORKERS": ("deploy_workers", int),
                       "REGISTER_TIMEOUT_S": ("register_timeout_s", float),
                       "DRAIN_TIMEOUT_S": ("drain_timeout_s", float),
                       "RECONCILE_INTERVAL_S": ("reconcile_interval_s", float),
                       "DATASETS_DIR": ("datasets_dir", Path), "MAX_IMAGE_PIXELS": ("max_image_pixels", int)}
        for name, (attribute, convert) in conversions.items():
            if (raw := get(name)) is not None:
                values[attribute] = convert(raw)
        jwt_values: dict[str, object] = {}
        if (raw := get("JWT_PUBLIC_KEY_FILE")) is not None:
            jwt_values["public_key_file"] = Path(raw)
        if (raw := get("JWT_SECRET")) is not None:
            jwt_values.update(secret=raw, algorithms=("HS256",))
        if (raw := get("JWT_ALGORITHMS")) is not None:
            jwt_values["algorithms"] = tuple(a.strip() for a in raw.split(",") if a.strip())
        for name in ("AUDIENCE", "ISSUER", "SCOPE_CLAIM", "USER_CLAIM"):
            if (raw := get(f"JWT_{name}")) is not None:
                jwt_values[name.lower()] = raw
        if jwt_values:
            values["jwt"] = JwtSettings(**jwt_values)  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]
