"""Kernel test fixtures: fabrics of real netns with pods attached by the real macvlan CNI plugin.

Every name carries a `mnpt<pid>...` prefix (see tests/conftest.py) and every fixture removes what
it made, also when the test fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kernel_plan import assert_no_netns

from mnp.local.nodes.fabric import Fabric
from mnp.local.nodes.netns import list_netns


@pytest.fixture
def fabric(unique_prefix: str) -> Iterator[Fabric]:
    """A two-node fabric for one test; gone afterwards, whatever the test did."""
    with Fabric(unique_prefix, nodes=2) as f:
        yield f
    assert_no_netns(unique_prefix)


@pytest.fixture(scope="session", autouse=True)
def no_netns_left_behind() -> Iterator[None]:
    """After the whole kernel session: no netns of this test process may remain (fails loudly)."""
    yield
    pid = os.getpid() % 100000
    left = [n for n in list_netns("mnpt") if n.startswith((f"mnpt{pid}x", f"mnpt{pid}m"))]
    assert not left, f"kernel tests left network namespaces behind: {left}"
