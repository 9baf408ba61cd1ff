"""The controller's queue depth metric follows the changes waiting for a compile pass."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from mnp.controller.controller import Controller, ControllerConfig
from mnp.kube.client import Client
from mnp.kube.watch import EventType, WatchEvent
from tests.builders import pod


class Recorded:
    def __init__(self) -> None:
        self.depths: list[int] = []

    def observe_compile(self, seconds: float) -> None:
        pass

    def ruleset_written(self, action: str, count: int = 1) -> None:
        pass

    def set_queue_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def api_error(self, verb: str) -> None:
        pass


def test_queue_depth_counts_changes_until_a_pass_takes_them() -> None:
    metrics = Recorded()
    # No API call happens before run(): the informers only keep the client.
    controller = Controller(cast(Client, object()), ControllerConfig(), metrics)
    on_pod = controller._handler("pod")
    objs: list[dict[str, Any]] = [pod(f"p{i}", labels={"app": "web"}) for i in range(3)]

    async def scenario() -> None:
        for obj in objs:
            await on_pod(WatchEvent(EventType.ADDED, obj))
        assert await controller.reconcile() == []  # no policy: nothing to write, no API call

    asyncio.run(scenario())
    assert metrics.depths == [1, 2, 3, 0]
