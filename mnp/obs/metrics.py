"""Prometheus metrics of the agent and the controller, each set in a registry of its own.

A registry per object, never prometheus_client's global one, so that each process (and each test)
exposes exactly its own series. `render()` is the body /metrics serves, in the text format 0.0.4.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# What /metrics answers with: generate_latest() writes the text exposition format version 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# An nft transaction in a pod netns takes about a millisecond; a slow node or a large ruleset seconds.
APPLY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A compile of one pod is sub-millisecond; a full recompute of a large cluster may take seconds.
COMPILE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RESULT_SUCCESS, RESULT_FAILURE = "success", "failure"
WRITE_ACTIONS = ("created", "updated", "unchanged", "deleted")


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

    def render(self) -> bytes:
        """Every series of this registry in the Prometheus text exposition format (0.0.4)."""
        return generate_latest(self.registry)


class AgentMetrics(_Metrics):
    """The node agent's series: applies by result and their duration, failures, drift, rulesets held."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.applies = Counter(
            "mnp_agent_applies", "Ruleset applies to pod netns, by result.", ["result"], registry=r
        )
        self.apply_seconds = Histogram(
            "mnp_agent_apply_seconds",
            "Time to apply one ruleset to a pod netns (one nft transaction).",
            buckets=APPLY_BUCKETS,
            registry=r,
        )
        self.failures = Counter(
            "mnp_agent_failures", "Failures to enforce a ruleset, by reason.", ["reason"], registry=r
        )
        self.drift_repairs = Counter(
            "mnp_agent_drift_repairs",
            "Tables found changed behind the agent's back and rewritten.",
            registry=r,
        )
        self.rulesets = Gauge("mnp_agent_rulesets", "Rulesets this agent currently enforces.", registry=r)
        self.netns_lookups = Counter(
            "mnp_agent_netns_lookups",
            "Pod netns lookups (container runtime, else /proc): ahead of any ruleset (at start, or when a "
            "running pod without one changed), or on demand, when a ruleset had to be applied or checked.",
            ["when"],
            registry=r,
        )
        # Known label values are exported at 0 from the start, so that rate() sees the first event.
        for result in (RESULT_SUCCESS, RESULT_FAILURE):
            self.applies.labels(result)
        for when in ("ahead", "on-demand"):
            self.netns_lookups.labels(when)

    def observe_apply(self, seconds: float, ok: bool) -> None:
        """Count one apply by its result and record how long it took."""
        self.applies.labels(RESULT_SUCCESS if ok else RESULT_FAILURE).inc()
        self.apply_seconds.observe(seconds)

    def failure(self, reason: str) -> None:
        self.failures.labels(reason).inc()

    def drift_repaired(self) -> None:
        self.drift_repairs.inc()

    def set_rulesets(self, count: int) -> None:
        self.rulesets.set(count)

    def netns_lookup(self, when: str) -> None:
        self.netns_lookups.labels(when).inc()


class ControllerMetrics(_Metrics):
    """The controller's series: compile time, ruleset writes by action, work queue depth, API errors."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.compile_seconds = Histogram(
            "mnp_controller_compile_seconds",
            "Time to compile the rulesets of the pods affected by a change.",
            buckets=COMPILE_BUCKETS,
            registry=r,
        )
        self.rulesets_written = Counter(
            "mnp_controller_rulesets_written",
            "PodNetworkRuleset writes, by action (created, updated, unchanged, deleted).",
            ["action"],
            registry=r,
        )
        self.queue_depth = Gauge("mnp_controller_queue_depth", "Items waiting in the work queue.", registry=r)
        self.api_errors = Counter(
            "mnp_controller_api_errors", "Failed API server requests, by verb.", ["verb"], registry=r
        )
        for action in WRITE_ACTIONS:
            self.rulesets_written.labels(action)

    def observe_compile(self, seconds: float) -> None:
        self.compile_seconds.observe(seconds)

    def ruleset_written(self, action: str, count: int = 1) -> None:
        """Count `count` ruleset writes; `action` is one of WRITE_ACTIONS."""
        self.rulesets_written.labels(action).inc(count)

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def api_error(self, verb: str) -> None:
        self.api_errors.labels(verb).inc()


__all__ = [
    "APPLY_BUCKETS",
    "COMPILE_BUCKETS",
    "CONTENT_TYPE",
    "RESULT_FAILURE",
    "RESULT_SUCCESS",
    "WRITE_ACTIONS",
    "AgentMetrics",
    "ControllerMetrics",
]
