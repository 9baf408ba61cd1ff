"""Conventions for every test.

Address plan (documentation ranges only, and only ever inside network namespaces a test made):
  192.0.2.0/24     network A, IPv4 (TEST-NET-1)
  198.51.100.0/24  network B, IPv4 (TEST-NET-2)
  203.0.113.0/24   ipBlock peers outside any pod network (TEST-NET-3)
  2001:db8:a::/64  network A, IPv6;  2001:db8:b::/64 network B, IPv6
Names: every namespace, link or process a test creates carries `unique_prefix` (mnpt-<pid>-<n>), so
runs can overlap, and fixtures remove what they made even when the test fails.
Kernel tests (marker `kernel`) need root; they fail, never skip, when it is missing.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

_counter = itertools.count()
GOLDEN_DIR = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/*.nft from the renderer")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def unique_prefix() -> str:
    """A short name prefix unique to this test process and call (fits in netns and link names)."""
    return f"mnpt{os.getpid() % 100000}x{next(_counter)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0 and any(item.get_closest_marker("kernel") for item in items):
        # Loud, not silent: kernel tests are part of the suite and CI runs as root.
        raise pytest.UsageError("kernel tests need root (run hack/test.sh as root)")
