"""The pod sandbox ("pause") image of the local nodes, built locally as an OCI image-layout tar.

No registry is reachable here, so the image containerd needs for every sandbox is made from the host's
busybox-static: one uncompressed layer with /bin/busybox and a few applet links, an entrypoint that
sleeps forever. The tar is byte-for-byte deterministic for a given busybox binary (sorted entries,
zero timestamps and owners, canonical JSON), so rebuilding it changes nothing and digests are stable.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnp.api.errors import MnpError

PAUSE_IMAGE = "localhost/mnp/pause:1"
BUSYBOX = "/bin/busybox"
# Applets the sandbox can run; `sleep` is the entrypoint, the rest help when debugging a sandbox.
APPLETS = ("cat", "ip", "ls", "sh", "sleep")
ENTRYPOINT = ("/bin/sleep", "2147483647")

MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"

# Go's GOARCH names, which OCI platforms use, for the machine names Python reports.
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class ImageError(MnpError):
    """The sandbox image could not be built (busybox missing, unknown architecture, write failed)."""


@dataclass(frozen=True, slots=True)
class OciImage:
    """An image-layout tar on disk: its path, the name containerd gives it, its manifest digest."""

    path: Path
    ref: str
    manifest_digest: str


def build_pause_image(dest: Path, *, ref: str = PAUSE_IMAGE, busybox: str = BUSYBOX) -> OciImage:
    """Write the sandbox image as an OCI image-layout tar at `dest`; raises ImageError.

    `ref` becomes the `io.containerd.image.name` annotation, the name `ctr images import` gives it.
    The file is written under a temporary name and renamed, so a reader never sees half a tar.
    """
    try:
        binary = Path(busybox).read_bytes()
    except OSError as e:
        raise ImageError(f"read {busybox} (Debian package busybox-static): {e.strerror}") from e
    arch = _GOARCH.get(platform.machine())
    if arch is None:
        raise ImageError(f"no OCI architecture name for machine {platform.machine()!r}")
    layer = _layer_tar(binary)
    config = _json(
        {
            "architecture": arch,
            "os": "linux",
            "config": {"Entrypoint": list(ENTRYPOINT), "Env": ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": _descriptor(MEDIA_CONFIG, config),
            "layers": [_descriptor(MEDIA_LAYER, layer)],
        }
    )
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    **_descriptor(MEDIA_MANIFEST, manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": tag,
                    },
                }
            ],
        }
    )
    files: dict[str, bytes] = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
    }
    for blob in (layer, config, manifest):
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    image = _tar(files, dirs=("blobs", "blobs/sha256"))
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(image)
        tmp.replace(dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ImageError(f"write {dest}: {e.strerror}") from e
    return OciImage(dest, ref, _digest(manifest))


def _layer_tar(busybox: bytes) -> bytes:
    files = {"bin/busybox": busybox}
    links = {f"bin/{applet}": "busybox" for applet in APPLETS}
    return _tar(files, dirs=("bin",), links=links, executable=frozenset({"bin/busybox"}))


def _tar(
    files: Mapping[str, bytes],
    *,
    dirs: tuple[str, ...] = (),
    links: Mapping[str, str] | None = None,
    executable: frozenset[str] = frozenset(),
) -> bytes:
    """A tar of the given entries in sorted order with no timestamps or owners: the same bytes every time."""
    out = io.BytesIO()
    entries: list[tuple[str, tarfile.TarInfo, bytes | None]] = []
    for name in dirs:
        entries.append((name, _info(name, tarfile.DIRTYPE, 0o755), None))
    for name, data in files.items():
        info = _info(name, tarfile.REGTYPE, 0o755 if name in executable else 0o644)
        info.size = len(data)
        entries.append((name, info, data))
    for name, target in (links or {}).items():
        info = _info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        entries.append((name, info, None))
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for _, info, content in sorted(entries, key=lambda e: e[0]):
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return out.getvalue()


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(blob), "size": len(blob)}


__all__ = ["APPLETS", "BUSYBOX", "ENTRYPOINT", "ImageError", "OciImage", "PAUSE_IMAGE", "build_pause_image"]
