"""The import arrows of STYLE.md, checked on the source with ast (nothing is imported or run).

    cli → controller | agent | local → kube | compiler | nft → api

compiler and nft never import each other or kube; local runs the controller and agent as processes and
does not import them; the pure modules (api, compiler, nft.render/model/names and whatever they import
from mnp) import nothing that does I/O. A top-level module that is in no layer fails too, so that a new
one gets its place in LAYERS on purpose. Modules that do not exist yet are simply not checked.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "mnp"

# Top-level part of mnp (a subpackage or module) → the parts it may import besides itself.
BASE = {"api"}
LAYERS: dict[str, set[str]] = {
    "__init__": set(),
    "__main__": {"cli"},
    "cli": {"controller", "agent", "local", "offline", "diff", "demo", "kube", "compiler", "nft", "obs", "api"},
    # `mnp demo`: brings a local cluster up and drives it as a user would (apply, wait, probe, kubectl).
    "demo": {"local", "kube", "obs", "api"},
    # `mnp diff`: a shell like `mnp compile` that reads the cluster and plans with the controller's own
    # pure functions (controller.plan), so it shows exactly the writes the controller would make.
    "diff": {"controller", "offline", "kube", "compiler", "obs", "api"},
    "controller": {"kube", "compiler", "nft", "obs", "api"},
    "agent": {"kube", "compiler", "nft", "obs", "api"},
    # `mnp local apply -f` reads manifests as `mnp compile -f` does.
    "local": {"kube", "compiler", "nft", "obs", "offline", "api"},
    # `mnp compile`: reads manifests, runs the compiler; a shell like controller, without the API server.
    "offline": {"compiler", "nft", "obs", "api"},
    "kube": {"obs", "api"},
    "compiler": BASE,
    "nft": BASE,
    "obs": BASE,
    "api": set(),
}

# Modules that must be functions of their arguments (STYLE.md "Pure core, thin shell"), by prefix.
PURE = (
    "mnp.api",
    "mnp.compiler",
    "mnp.nft.render",
    "mnp.nft.model",
    "mnp.nft.names",
    "mnp.demo.app",
    "mnp.demo.matrix",
    "mnp.demo.converged",
)

# Top-level modules that do I/O, keep time, draw random numbers or log: never imported by PURE modules.
IO_MODULES = {
    "subprocess", "socket", "os", "ctypes", "threading", "multiprocessing", "concurrent", "asyncio",
    "select", "selectors", "signal", "shutil", "tempfile", "pathlib", "glob", "sqlite3", "http", "urllib",
    "ssl", "httpx", "requests", "kr8s", "kubernetes", "pyroute2", "nftables", "time", "random", "logging",
}  # fmt: skip
IO_BUILTINS = {"open", "print", "input", "exec", "eval", "breakpoint"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. mnp.compiler.peers
    line: int
    target: str  # absolute dotted name, e.g. mnp.api.ruleset or subprocess


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def source_files(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def imports_of(root: Path) -> list[Import]:
    """Every import statement under `root` (also inside functions), made absolute."""
    modules = source_files(root)
    out = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out += [Import(name, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    # `from mnp.nft import apply` imports the module mnp.nft.apply when there is one.
                    sub = f"{base}.{alias.name}"
                    out.append(Import(name, node.lineno, sub if sub in modules else base))
    return out


def part_of(module: str) -> str:
    """The layer of an mnp module: mnp.compiler.peers → compiler, mnp.cli → cli, mnp → __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(root: Path) -> list[str]:
    problems = []
    for name in source_files(root):
        if part_of(name) not in LAYERS:
            problems.append(f"{name}: {part_of(name)!r} is in no layer; give it a place in LAYERS")
    for imp in imports_of(root):
        if not (imp.target == "mnp" or imp.target.startswith("mnp.")):
            continue
        src, dst = part_of(imp.module), part_of(imp.target)
        # `import mnp` (the package, e.g. for __version__) is fine from anywhere.
        if src in LAYERS and dst not in (src, "__init__") and dst not in LAYERS[src]:
            problems.append(
                f"{imp.module}:{imp.line} imports {imp.target} ({src} → {dst} is not an allowed arrow)"
            )
    return problems


def is_pure(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in PURE)


def io_violations(root: Path) -> list[str]:
    """I/O reached from a pure module: directly, through other mnp modules, or by calling open/print."""
    modules = source_files(root)
    edges: dict[str, list[Import]] = {name: [] for name in modules}
    for imp in imports_of(root):
        edges[imp.module].append(imp)
    problems = []
    for start in sorted(m for m in modules if is_pure(m)):
        seen, stack = {start}, [(start, [start])]
        while stack:
            module, chain = stack.pop()
            for imp in edges.get(module, []):
                top = imp.target.split(".")[0]
                if top in IO_MODULES:
                    via = " → ".join(chain)
                    problems.append(f"{start}: {via} imports {imp.target} (line {imp.line} of {module})")
                elif imp.target in modules and imp.target not in seen:
                    seen.add(imp.target)
                    stack.append((imp.target, [*chain, imp.target]))
        for node in ast.walk(ast.parse(modules[start].read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in IO_BUILTINS:
                problems.append(f"{start}:{node.lineno} calls {node.func.id}()")
    return sorted(set(problems))


# --- the package ----------------------------------------------------------------------------------------


def test_the_package_is_there_to_check() -> None:
    assert (PACKAGE_DIR / "__init__.py").exists()
    assert any(m.startswith("mnp.api.") for m in source_files(PACKAGE_DIR))


def test_imports_point_one_way() -> None:
    assert layer_violations(PACKAGE_DIR) == []


def test_pure_modules_import_nothing_that_does_io() -> None:
    assert io_violations(PACKAGE_DIR) == []


# --- the checker finds what it is for ---------------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "mnp"
    for rel, text in {"__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"compiler/compile.py": "from mnp.kube.client import Client\n"}, "compiler → kube"),
        ({"compiler/compile.py": "from mnp.nft import render\n", "nft/render.py": ""}, "compiler → nft"),
        ({"nft/render.py": "import mnp.compiler.compile\n", "compiler/compile.py": ""}, "nft → compiler"),
        ({"local/cluster.py": "from mnp.controller import run\n"}, "local → controller"),
        ({"local/nodes/pods.py": "from ...agent.main import run\n"}, "local → agent"),
        ({"api/policy.py": "from mnp.compiler.peers import x\n"}, "api → compiler"),
        ({"kube/client.py": "from mnp.controller.loop import x\n"}, "kube → controller"),
        ({"controller/loop.py": "from mnp.agent import x\n"}, "controller → agent"),
        ({"agent/loop.py": "def f():\n    from mnp.cli import main\n"}, "agent → cli"),
        ({"helpers.py": ""}, "'helpers' is in no layer"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_layer_check_catches_a_wrong_arrow(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    problems = layer_violations(_tree(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_layer_check_allows_the_arrows_of_the_design(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "cli.py": "from mnp.controller import loop\nfrom mnp.local import cluster\nfrom mnp import offline\n",
            "controller/loop.py": "from mnp.kube import client\nfrom mnp.compiler.compile import f\n",
            "agent/loop.py": "from mnp.nft.apply import apply_table\nfrom mnp.kube.client import C\n",
            "local/cluster.py": "from mnp.kube import client\nfrom .nodes import netns\n",
            "local/nodes/netns.py": "from ..cluster import x\n",
            "compiler/compile.py": "from . import peers\nfrom .peers import p\nfrom mnp.api.ruleset import R\n",
            "compiler/peers.py": "import ipaddress\n",
            "offline.py": "import sys\nfrom mnp.compiler import compile\n",
            "nft/render.py": "from mnp.nft import names\nfrom mnp.api import ruleset\n",
            "nft/apply.py": "import subprocess\nfrom mnp.nft.render import render\n",
        },
    )
    assert layer_violations(root) == []
    assert io_violations(root) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"nft/render.py": "import subprocess\n"}, "mnp.nft.render: mnp.nft.render imports subprocess"),
        ({"nft/names.py": "from os import path\n"}, "imports os"),
        ({"compiler/compile.py": "import logging\n"}, "imports logging"),
        ({"compiler/compile.py": "def f():\n    import time\n"}, "imports time"),
        ({"api/cluster.py": "import kubernetes.client\n"}, "imports kubernetes.client"),
        (
            {"nft/render.py": "from mnp.nft import custom\n", "nft/custom.py": "from pathlib import Path\n"},
            "mnp.nft.render → mnp.nft.custom imports pathlib",
        ),
        (
            {"compiler/compile.py": "from .peers import x\n", "compiler/peers.py": "from .. import kube\n"},
            "mnp.compiler.compile → mnp.compiler.peers",
        ),
        ({"nft/model.py": "def f():\n    print('x')\n"}, "calls print()"),
        ({"compiler/ports.py": "def f(p):\n    return open(p).read()\n"}, "calls open()"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_io_check_catches_io_in_a_pure_module(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    files = {"kube/__init__.py": "import kr8s\n", **files}
    problems = io_violations(_tree(tmp_path, files))
    assert any(expected in p for p in problems), problems
