"""Automatic canary analysis: step a new version's traffic share up on a schedule while its live signals stay
within bounds of the default's over the same window; promote it at the end, or retire it the moment a bound is
crossed and record why. What Flagger and Argo Rollouts do on Kubernetes, in the one gateway process that already
routes every request and counts each version's answers (auth_plugin/control/signals.py).

A step the canary got too little traffic to judge is extended; a canary that never gets enough is left where it
is for a person to decide ("inconclusive"), never promoted blind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from auth_plugin.control.desired.versions import VersionRegistry
from auth_plugin.control.signals import Summary, VersionSignals
from auth_plugin.control.steps.rollout import RolloutError, Rollouts
from food_rotation.service_error import ServiceError

log = logging.getLogger("auth_plugin.control.canary_analysis")
ACTOR = "auto-canary"


@dataclass(frozen=True)
class CanaryPolicy:
    """The schedule and the bounds; every bound compares the canary with the default over the same window."""

    steps: tuple[float, ...] = (10.0, 25.0, 50.0)  # canary share at each step, percent
    step_s: float = 60.0  # seconds at each step
    min_requests: int = 20  # canary requests a step needs before it can pass
    max_wait_steps: float = 3.0  # a step without enough traffic waits up to this many step_s, then gives up
    check_every_s: float = 5.0
    max_error_rate_increase: float = 0.01  # 5xx share, absolute
    max_p95_ratio: float = 1.5  # p95 latency, relative...
    p95_slack_ms: float = 50.0  # ...with this much absolute slack for small numbers
    max_unsure_increase: float = 0.15  # share of answers left unsure, absolute
    max_disagreement_increase: float = 0.2  # share of corrections saying the version was wrong, absolute
    min_feedback: int = 5  # corrections each version needs before the disagreement bound applies

    @classmethod
    def from_request(cls, value: Any) -> CanaryPolicy:
        """`true` for the defaults, or an object overriding some of them; anything else is a 400."""
        if value is True:
            return cls()
        if not isinstance(value, Mapping) or not set(value) <= set(cls.__dataclass_fields__):
            raise RolloutError(400, "bad_auto_policy", "\"auto\" must be true or an object with some of: "
                               + ", ".join(cls.__dataclass_fields__))
        try:
            policy = replace(cls(), **{key: tuple(float(v) for v in item) if key == "steps" else float(item)
                                       for key, item in value.items()})
        except (TypeError, ValueError) as exc:
            raise RolloutError(400, "bad_auto_policy", f"\"auto\" has a value of the wrong type: {exc}") from exc
        if not policy.steps or not all(0 < step <= 100 for step in policy.steps) or policy.step_s < 1 \
                or policy.check_every_s <= 0:
            raise RolloutError(400, "bad_auto_policy", "steps must be percentages in (0, 100], step_s >= 1 s")
        return replace(policy, min_requests=int(policy.min_requests), min_feedback=int(policy.min_feedback))


def breach(canary: Summary, default: Summary, policy: CanaryPolicy) -> str | None:
    """Why the canary is worse than the default over this window, or None while it is within every bound."""
    if canary.error_rate is not None and \
            canary.error_rate > (default.error_rate or 0.0) + policy.max_error_rate_increase:
        return f"server errors {canary.error_rate:.1%} against the default's {default.error_rate or 0:.1%}"
    if canary.p95_ms is not None and default.p95_ms is not None and \
            canary.p95_ms > default.p95_ms * policy.max_p95_ratio + policy.p95_slack_ms:
        return f"p95 latency {canary.p95_ms:.0f} ms against the default's {default.p95_ms:.0f} ms"
    if canary.unsure_share is not None and default.unsure_share is not None and \
            canary.unsure_share > default.unsure_share + policy.max_unsure_increase:
        return f"unsure answers {canary.unsure_share:.1%} against the default's {default.unsure_share:.1%}"
    if canary.feedback >= policy.min_feedback and default.feedback >= policy.min_feedback and \
            (canary.disagreement_rate or 0) > (default.disagreement_rate or 0) + policy.max_disagreement_increase:
        return (f"corrections say it was wrong {canary.disagreement_rate:.1%} of the time against the default's "
                f"{default.disagreement_rate:.1%}")
    return None


@dataclass
class Analysis:
    """One canary's analysis as the API shows it."""

    version: str
    policy: CanaryPolicy
    state: str = "running"  # running, promoted, rolled_back, inconclusive, stopped, failed
    step: int = 0
    percent: float = 0.0
    reason: str | None = None
    started_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "policy": asdict(self.policy)}


class CanaryAnalyst:
    """Runs at most one analysis per model, as a task beside the requests; its actions go through Rollouts (the
    same lock, the same drains) and into the audit log as `auto-canary`."""

    def __init__(self, rollouts: Rollouts, registry: VersionRegistry, signals: VersionSignals) -> None:
        self._rollouts = rollouts
        self._registry = registry
        self._signals = signals
        self._tasks: dict[str, asyncio.Task] = {}
        self.latest: dict[str, Analysis] = {}

    def start(self, model: str, version: str, policy: CanaryPolicy) -> Analysis:
        if model in self._tasks and not self._tasks[model].done():
            raise RolloutError(409, "analysis_running", f"{self.latest[model].version} is being analysed: wait "
                               "for it, or retire or promote it by hand (that stops the analysis)")
        analysis = Analysis(version, policy, started_at=time.time())
        self.latest[model] = analysis
        self._tasks[model] = asyncio.create_task(self._run(model, analysis))
        return analysis

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, model: str, analysis: Analysis) -> None:
        self._rollouts.analysis_started(model, analysis.version)
        try:
            await self._steps(model, analysis)
        except ServiceError as exc:
            self._finish(model, analysis, "failed", f"{exc.code}: {exc.message}")
        except Exception as exc:
            log.exception("canary analysis of %s %s failed", model, analysis.version)
            self._finish(model, analysis, "failed", repr(exc))
        # Not when cancelled (the gateway stops): its record stays, and whoever drives next rolls the canary back.
        self._rollouts.analysis_ended(model)

    async def _steps(self, model: str, analysis: Analysis) -> None:
        policy, version = analysis.policy, analysis.version
        for step, percent in enumerate(policy.steps, start=1):
            await self._rollouts.set_canary(model, version, percent)
            analysis.step, analysis.percent = step, percent
            outcome = await self._watch(model, analysis)
            if outcome is not None:
                return
        default = self._registry.route(model).default
        await self._rollouts.promote(model, version, actor=ACTOR)
        self._finish(model, analysis, "promoted", f"within every bound of {default} at each step")

    async def _watch(self, model: str, analysis: Analysis) -> str | None:
        """Watch one step; a state when the analysis ends here, None when the step passed."""
        policy, version = analysis.policy, analysis.version
        started = time.monotonic()
        while True:
            await asyncio.sleep(policy.check_every_s)
            route = self._registry.route(model)
            if route is None or route.canary != version:
                return self._finish(model, analysis, "stopped", "the canary was changed by hand")
            window = max(10.0, time.monotonic() - started)
            canary, default = self._signals.summary(version, window), self._signals.summary(route.default, window)
            reason = breach(canary, default, policy)
            if reason is not None:
                await self._rollouts.retire(model, version)
                return self._finish(model, analysis, "rolled_back", reason)
            elapsed = time.monotonic() - started
            if elapsed >= policy.step_s and canary.requests >= policy.min_requests:
                return None
            if elapsed >= policy.step_s * policy.max_wait_steps:
                return self._finish(model, analysis, "inconclusive", f"{canary.requests} requests reached the "
                                    f"canary at {analysis.percent:g}% (it needs {policy.min_requests}): left there "
                                    "for a person to decide")

    def _finish(self, model: str, analysis: Analysis, state: str, reason: str) -> str:
        analysis.state, analysis.reason = state, reason
        self._rollouts.history.audit(ACTOR, f"auto_{state}", model, {"version": analysis.version,
                                                                      "step": analysis.step,
                                                                      "percent": analysis.percent}, reason)
        log.warning("canary analysis of %s %s: %s (%s)", model, analysis.version, state, reason)
        return state
