"""The gateway's shared state, typed: every key of the aiohttp application, in one place (create_app fills them)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import aiohttp
from aiohttp import web

from auth_plugin.answer_receipts import AnswerReceipts
from auth_plugin.auth import Authenticator
from auth_plugin.bodies import UploadStreams
from auth_plugin.control.actual.pods import PodReports
from auth_plugin.control.actual.torchserve_admin import TorchServeAdmin
from auth_plugin.control.canary_analysis import CanaryAnalyst
from auth_plugin.control.desired.versions import VersionRegistry
from auth_plugin.control.signals import VersionSignals
from auth_plugin.control.smoke_gate import HeldOutSource
from auth_plugin.control.steps.rollout import Rollouts
from auth_plugin.feedback.datasets import DatasetStore
from auth_plugin.proxy_metrics import ProxyMetrics
from auth_plugin.rate_limit import RateLimiter
from auth_plugin.readiness import Readiness
from auth_plugin.settings import ProxySettings
from auth_plugin.token_store import TokenStore
from auth_plugin.torchserve_keys import TorchServeKeys

SETTINGS = web.AppKey("settings", ProxySettings)
SESSION = web.AppKey("session", aiohttp.ClientSession)  # the one pooled client to TorchServe
KEYS = web.AppKey("keys", TorchServeKeys)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
TOKENS = web.AppKey("tokens", TokenStore)  # the opaque tokens: what the Tokens view lists, issues and revokes
LIMITER = web.AppKey("limiter", RateLimiter)
METRICS = web.AppKey("metrics", ProxyMetrics)
REGISTRY = web.AppKey("registry", VersionRegistry)  # the routing table: default, canary, in flight
TORCHSERVE = web.AppKey("torchserve", TorchServeAdmin)
ROLLOUTS = web.AppKey("rollouts", Rollouts)
PODS = web.AppKey("pods", PodReports)  # the pods' reports of their own TorchServe (a shared database only)
ANALYST = web.AppKey("analyst", CanaryAnalyst)  # the automatic canary analyses, one per model at a time
DATASETS = web.AppKey("datasets", DatasetStore)
HELD_OUT = web.AppKey("held_out", HeldOutSource)  # the feedback store's held-out corrections, as the gate asks
READINESS = web.AppKey("readiness", Readiness)  # /readyz's answer, cached for a second
UPLOADS = web.AppKey("uploads", ThreadPoolExecutor)  # feedback parsing and decoding: its own bounded pool
STREAMS = web.AppKey("streams", UploadStreams)  # prediction bodies sent on while they arrive
RECEIPTS = web.AppKey("receipts", AnswerReceipts)  # the answer ids a correction quotes to count as evidence
SIGNALS = web.AppKey("signals", VersionSignals)  # each version's requests, errors, latency, unsure, corrections
SERVED_VERSION = "served_version"  # request[SERVED_VERSION]: the version a prediction went to, for the metrics
