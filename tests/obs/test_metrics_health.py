"""Metrics in registries of their own, and /healthz, /readyz, /metrics served over real HTTP on loopback."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mnp.api.errors import InvalidInput
from mnp.obs.health import Check, HealthServer, parse_address
from mnp.obs.metrics import AgentMetrics, ControllerMetrics


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels (parsed by prometheus_client's parser)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_agent_metrics_count_applies_failures_and_drift_and_hold_the_ruleset_count() -> None:
    m = AgentMetrics()
    m.observe_apply(0.002, ok=True)
    m.observe_apply(0.0004, ok=True)
    m.observe_apply(3.0, ok=False)
    m.failure("NetnsNotFound")
    m.failure("NetnsNotFound")
    m.drift_repaired()
    m.set_rulesets(7)
    m.netns_lookup("ahead")
    m.netns_lookup("ahead")
    got = samples(m.render())
    assert got[("mnp_agent_applies_total", (("result", "success"),))] == 2
    assert got[("mnp_agent_applies_total", (("result", "failure"),))] == 1
    assert got[("mnp_agent_apply_seconds_count", ())] == 3
    assert got[("mnp_agent_apply_seconds_bucket", (("le", "0.0005"),))] == 1
    assert got[("mnp_agent_apply_seconds_bucket", (("le", "0.0025"),))] == 2
    assert got[("mnp_agent_apply_seconds_bucket", (("le", "5.0"),))] == 3
    assert got[("mnp_agent_failures_total", (("reason", "NetnsNotFound"),))] == 2
    assert got[("mnp_agent_drift_repairs_total", ())] == 1
    assert got[("mnp_agent_rulesets", ())] == 7
    assert got[("mnp_agent_netns_lookups_total", (("when", "ahead"),))] == 2
    assert got[("mnp_agent_netns_lookups_total", (("when", "on-demand"),))] == 0


def test_controller_metrics_count_writes_by_action_and_api_errors_by_verb() -> None:
    m = ControllerMetrics()
    m.observe_compile(0.01)
    m.ruleset_written("created")
    m.ruleset_written("unchanged")
    m.ruleset_written("unchanged")
    m.set_queue_depth(3)
    m.api_error("patch")
    got = samples(m.render())
    written = {
        dict(labels)["action"]: v
        for (name, labels), v in got.items()
        if name == "mnp_controller_rulesets_written_total"
    }
    assert written == {"created": 1, "updated": 0, "unchanged": 2, "deleted": 0}
    assert got[("mnp_controller_compile_seconds_count", ())] == 1
    assert got[("mnp_controller_queue_depth", ())] == 3
    assert got[("mnp_controller_api_errors_total", (("verb", "patch"),))] == 1


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = AgentMetrics(), AgentMetrics()
    a.set_rulesets(5)
    assert samples(b.render())[("mnp_agent_rulesets", ())] == 0
    assert b"mnp_controller" not in a.render() and b"mnp_agent" not in ControllerMetrics().render()


# --- the HTTP endpoints -----------------------------------------------------------------------------------


@contextmanager
def serving(
    ready: Check, healthy: Check = lambda: True, render: Callable[[], bytes] | None = None
) -> Iterator[int]:
    metrics = AgentMetrics()
    server = HealthServer("127.0.0.1:0", render or metrics.render, ready, healthy)
    port = server.start()
    try:
        yield port
    finally:
        server.stop()


def get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()
    finally:
        conn.close()


def test_readyz_answers_503_until_ready_then_200() -> None:
    ready = threading.Event()
    with serving(ready.is_set) as port:
        assert get(port, "/readyz")[0::2] == (503, b"not ok\n")
        assert get(port, "/healthz")[0::2] == (200, b"ok\n")
        ready.set()
        assert get(port, "/readyz")[0::2] == (200, b"ok\n")


def test_a_reason_text_from_a_check_is_the_body_of_its_failure() -> None:
    with serving(
        lambda: "waiting for the ruleset cache to sync", healthy=lambda: "watch stalled for 300s"
    ) as port:
        assert get(port, "/readyz")[0::2] == (503, b"waiting for the ruleset cache to sync\n")
        assert get(port, "/healthz")[0::2] == (500, b"watch stalled for 300s\n")


def test_a_check_that_raises_fails_with_the_error_and_the_server_keeps_serving() -> None:
    def broken() -> bool:
        raise RuntimeError("boom")

    with serving(broken, healthy=broken) as port:
        assert get(port, "/readyz")[0::2] == (503, b"check failed: boom\n")
        assert get(port, "/healthz")[0::2] == (500, b"check failed: boom\n")
        assert get(port, "/metrics")[0] == 200


def test_metrics_are_served_in_the_text_format_with_its_content_type() -> None:
    metrics = AgentMetrics()
    metrics.set_rulesets(4)
    with serving(lambda: True, render=metrics.render) as port:
        status, content_type, body = get(port, "/metrics?debug=1")
    assert status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert samples(body)[("mnp_agent_rulesets", ())] == 4


def test_an_unknown_path_is_404() -> None:
    with serving(lambda: True) as port:
        assert get(port, "/nope")[0] == 404


def test_stop_frees_the_port_and_may_be_called_twice() -> None:
    server = HealthServer("127.0.0.1:0", AgentMetrics().render, lambda: True)
    port = server.start()
    server.stop()
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        get(port, "/healthz")
    again = HealthServer(f"127.0.0.1:{port}", AgentMetrics().render, lambda: True)
    assert again.start() == port, "the port can be bound again"
    again.stop()


def test_an_ipv6_loopback_address_is_served() -> None:
    with HealthServer("[::1]:0", AgentMetrics().render, lambda: True) as server:
        conn = http.client.HTTPConnection("::1", server.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":9090", ("", 9090)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_listen_addresses_are_host_and_port(address: str, parsed: tuple[str, int]) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["8080", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "::1:80"])
def test_a_listen_address_without_a_valid_port_is_refused(address: str) -> None:
    with pytest.raises(InvalidInput, match="listen address"):
        parse_address(address)
