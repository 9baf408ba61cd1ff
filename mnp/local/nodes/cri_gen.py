"""Regenerates cri_pb2.py, cri_pb2.pyi and cri_pb2_grpc.py from cri.proto and stamps their headers.

Run from anywhere as `python -m mnp.local.nodes.cri_gen` with grpcio-tools installed (a development
tool only: the generated modules need just grpcio and protobuf at run time). The generated code is
committed because developers cannot fetch the upstream CRI proto here.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

OUTPUTS = ("cri_pb2.py", "cri_pb2.pyi", "cri_pb2_grpc.py")


def header(tools_version: str, protoc_version: str) -> str:
    return (
        "# ruff: noqa\n"
        "# fmt: off\n"
        "# mypy: ignore-errors\n"
        f"# Generated from mnp/local/nodes/cri.proto by grpcio-tools {tools_version} ({protoc_version})\n"
        "# with `python -m mnp.local.nodes.cri_gen`. Do not edit: change cri.proto and regenerate.\n"
    )


def main() -> int:
    from grpc_tools import protoc  # development-only dependency (the dev extra)

    here = Path(__file__).resolve().parent
    root = here.parents[2]  # the directory holding the `mnp` package, so imports are mnp.local.nodes
    proto = here.relative_to(root) / "cri.proto"
    include = str(Path(protoc.__file__).parent / "_proto")
    args = ["protoc", f"-I{root}", f"-I{include}", "--python_out", str(root), "--pyi_out", str(root)]
    args += ["--grpc_python_out", str(root), str(proto)]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    stamp = header(metadata.version("grpcio-tools"), _protoc_version())
    for name in OUTPUTS:
        path = here / name
        path.write_text(stamp + path.read_text())
    return 0


def _protoc_version() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
