"""Prometheus metrics (docs/observability.md), kept with prometheus-client.

Every logged decision is counted from the same record the decision log receives, so the
metrics and the log agree. Labels are low-cardinality only: the route (a policy's route
path, never the request's path), the action, the decision's rule name and refusal code.
Never an address, device or account.

Under ``tokenward serve`` the gateway runs in one or more granian worker processes, so the
metrics use prometheus-client's multiprocess mode: each process writes its values to files
in ``PROMETHEUS_MULTIPROC_DIR`` and whoever is scraped (the admin listener or any worker's
``/.tokenward/metrics``) adds them up. In one process (the middleware, tests) each
:class:`Metrics` has its own registry.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _mp
from prometheus_client import values as _values

if TYPE_CHECKING:
    from .guard.base import RequestOutcome
    from .log import DecisionRecord
    from .money.spike import StateChange

__all__ = ["CONTENT_TYPE", "MULTIPROC_ENV", "Metrics", "multiprocess_dir", "render_multiprocess"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: from 1 ms (a refusal) to several minutes (a long stream).
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_DECISION = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
_STORE = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
UNMATCHED = "(none)"  # the route label of requests that matched no route


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render_multiprocess(directory: str) -> bytes:
    """The exposition of every process that wrote to ``directory``: what the admin
    listener and ``/.tokenward/metrics`` serve under ``tokenward serve``."""
    _forget_dead(directory)
    registry = CollectorRegistry()
    _mp.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


def _forget_dead(directory: str) -> None:
    """Live gauges (the log queue depth) of processes that exited no longer count."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith("gauge_live") or not name.endswith(".db"):
            continue
        pid = name.rsplit("_", 1)[-1][:-3]
        if pid.isdigit() and not _alive(int(pid)):
            _mp.mark_process_dead(int(pid), directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Metrics:
    """The gateway's metrics. ``multiprocess``: values go to ``PROMETHEUS_MULTIPROC_DIR``
    (the default when it is set), else to this object's own registry."""

    def __init__(self, *, multiprocess: bool | None = None) -> None:
        self.directory = multiprocess_dir() if multiprocess is not False else None
        if multiprocess and self.directory is None:
            raise ValueError(f"multiprocess metrics need {MULTIPROC_ENV}")
        if self.directory is not None and not getattr(_values.ValueClass, "_multiprocess", False):
            # prometheus-client picks file-backed values when it is first imported, from the
            # environment; a worker forked from a process that imported it before
            # PROMETHEUS_MULTIPROC_DIR was set would keep per-process values.
            _values.ValueClass = _values.get_value_class()
        # In multiprocess mode the metric objects are not registered anywhere: their
        # values go to files that the collector reads.
        self.registry: CollectorRegistry | None = None if self.directory else CollectorRegistry()
        r = self.registry
        self.decisions = Counter(
            "tokenward_decisions", "Judged requests by route, action and decision (rule) name.",
            ["route", "action", "name"], registry=r,
        )  # fmt: skip
        self.refusals = Counter(
            "tokenward_refusals", "Refused requests by route and refusal code.", ["route", "code"], registry=r
        )
        self.request_seconds = Histogram(
            "tokenward_request_duration_seconds", "Time from request to the end of its response.",
            ["route", "action"], buckets=_LATENCY, registry=r,
        )  # fmt: skip
        self.decision_seconds = Histogram(
            "tokenward_decision_duration_seconds", "Time the guard took to decide.", ["route"],
            buckets=_DECISION, registry=r,
        )  # fmt: skip
        self.upstream_seconds = Histogram(
            "tokenward_upstream_response_seconds", "Time from sending a call upstream to its response headers.",
            ["route"], buckets=_LATENCY, registry=r,
        )  # fmt: skip
        self.first_byte_seconds = Histogram(
            "tokenward_stream_first_byte_seconds", "Time from request to the first byte of a streamed answer.",
            ["route"], buckets=_LATENCY, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "tokenward_tokens", "Tokens of answered calls, by direction (input/output).",
            ["route", "direction"], registry=r,
        )  # fmt: skip
        self.spend = Counter("tokenward_spend_usd", "Upstream spend committed, in USD.", ["route"], registry=r)
        self.reserved = Counter(
            "tokenward_reserved_usd", "USD reserved against budgets before calls.", ["route"], registry=r
        )
        self.refused_usd = Counter(
            "tokenward_refused_usd",
            "What refused calls would have cost at the route's price (reservation, or estimated input "
            "plus the full output allowance): what the refusals saved, at most.",
            ["route", "code"], registry=r,
        )  # fmt: skip
        self.under_attack = Gauge(
            "tokenward_route_under_attack", "1 while a route is under attack (spike detector), else 0.",
            ["route"], multiprocess_mode="max", registry=r,
        )  # fmt: skip
        self.mode_changes = Counter(
            "tokenward_mode_changes", "Route mode and breaker transitions, by event.", ["event", "subject"], registry=r
        )
        self.breaker_open = Gauge(
            "tokenward_breaker_open", "1 while the spend breaker is open, else 0.", multiprocess_mode="max", registry=r
        )
        self.store_seconds = Histogram(
            "tokenward_store_roundtrip_seconds", "Time of the store batch a decision waits for.",
            buckets=_STORE, registry=r,
        )  # fmt: skip
        self.store_errors = Counter(
            "tokenward_store_errors", "Store batches that failed (store unavailable).", registry=r
        )
        self.log_queue = Gauge(
            "tokenward_log_queue_depth", "Decisions waiting to be written to the decision log (last flush).",
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.log_lost = Counter(
            "tokenward_log_dropped", "Decisions the decision log could not write (refused by the database).",
            registry=r,
        )  # fmt: skip
        # A counter by difficulty rather than a histogram: a handful of values (the routes'
        # difficulties and their increments), and half the cost per challenge.
        self.challenges = Counter(
            "tokenward_challenges", "Challenges issued (endpoint and refusals), by difficulty in leading zero bits.",
            ["difficulty"], registry=r,
        )  # fmt: skip
        # labels() takes a lock and builds a key on every call: keep the children.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._kinds: dict[tuple[str, str, str, str | None], tuple[Any, ...]] = {}
        self._routes: dict[str, tuple[Any, ...]] = {}
        self._issued: dict[int, Any] = {}
        self._lost_seen = 0

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- what the gateway reports ---------------------------------------------------------
    def decision(self, rec: DecisionRecord, outcome: RequestOutcome | None = None) -> None:
        """One logged decision, from the record the log receives (and, for a call that
        went upstream, its outcome's timings)."""
        route = rec.route or UNMATCHED
        refused = rec.upstream_status is None and rec.status >= 400
        key = (route, rec.action, rec.name, rec.code if refused else None)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = self._kind(*key, refused)
        decided, took, judged, refusal, saved = kind
        decided(1)
        took(rec.total_ms / 1000)
        judged(rec.decision_ms / 1000)
        if refusal is not None:
            refusal(1)
            if rec.held_usd:
                saved(rec.held_usd)
            return
        if outcome is None:
            return
        per_route = self._routes.get(route)
        if per_route is None:
            per_route = self._routes[route] = self._route(route)
        upstream, first_byte, tokens_in, tokens_out, spend, reserved = per_route
        if outcome.upstream_ms is not None:
            upstream(outcome.upstream_ms / 1000)
        if outcome.first_byte_ms is not None:
            first_byte(outcome.first_byte_ms / 1000)
        if rec.tokens_in:
            tokens_in(rec.tokens_in)
        if rec.tokens_out:
            tokens_out(rec.tokens_out)
        if rec.cost_usd:
            spend(rec.cost_usd)
        if rec.reserved_usd:
            reserved(rec.reserved_usd)

    # One lookup per decision: the bound methods of the label children a kind of decision
    # updates (labels() takes a lock and builds a key on every call).
    def _kind(self, route: str, action: str, name: str, code: str | None, refused: bool) -> tuple[Any, ...]:
        child = self._child
        return (
            child(self.decisions, route, action, name).inc,
            child(self.request_seconds, route, action).observe,
            child(self.decision_seconds, route).observe,
            child(self.refusals, route, code or "error").inc if refused else None,
            child(self.refused_usd, route, code or "error").inc if refused else None,
        )

    def _route(self, route: str) -> tuple[Any, ...]:
        child = self._child
        return (
            child(self.upstream_seconds, route).observe,
            child(self.first_byte_seconds, route).observe,
            child(self.tokens, route, "input").inc,
            child(self.tokens, route, "output").inc,
            child(self.spend, route).inc,
            child(self.reserved, route).inc,
        )

    def challenge(self, difficulty: int) -> None:
        issued = self._issued.get(difficulty)
        if issued is None:
            issued = self._issued[difficulty] = self.challenges.labels(str(difficulty)).inc
        issued()

    def store_batch(self, seconds: float) -> None:
        self.store_seconds.observe(seconds)

    def store_failed(self) -> None:
        self.store_errors.inc()

    def events(self, events: Iterable[StateChange]) -> None:
        for event in events:
            self._child(self.mode_changes, event.name, event.subject).inc()
            if event.name == "spike/under_attack":
                self._child(self.under_attack, event.subject).set(1)
            elif event.name == "spike/normal":
                self._child(self.under_attack, event.subject).set(0)
            elif event.name == "breaker/open":
                self.breaker_open.set(1)
            elif event.name == "breaker/closed":
                self.breaker_open.set(0)

    def routes(self, paths: Iterable[str]) -> None:
        """Show every protected route at 0 (normal) until it changes."""
        for path in paths:
            self._child(self.under_attack, path).set(0)
        self.breaker_open.set(0)

    def log_flushed(self, depth: int, lost: int) -> None:
        """From the log's writer thread after each flush: what was pending, and its
        running count of decisions it could not write."""
        self.log_queue.set(depth)
        if lost > self._lost_seen:
            self.log_lost.inc(lost - self._lost_seen)
            self._lost_seen = lost

    # -- exposition -------------------------------------------------------------------------
    def render(self) -> bytes:
        if self.directory is not None:
            return render_multiprocess(self.directory)
        assert self.registry is not None
        return generate_latest(self.registry)
