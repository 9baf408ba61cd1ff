"""Node runtime pieces that need no kernel: containerd config, primary network, pause image, CRI errors.

The real daemon, sandboxes and teardown are proven in tests/kernel/test_cri.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

import pytest

from mnp.local.nodes.containerd_config import (
    ContainerdError,
    NodeRuntime,
    load_settings,
    primary_network,
    render_config,
    write_config,
)
from mnp.local.nodes.cri import CriClient, CriError
from mnp.local.nodes.image import ENTRYPOINT, PAUSE_IMAGE, build_pause_image


def runtime(tmp_path: Path, pods: tuple[str, ...], clusters: tuple[str, ...]) -> NodeRuntime:
    return NodeRuntime("node-2", "mnpt-n2", tmp_path / "n2", pods, clusters, "/mnpt-cg/node-2")


def test_primary_network_hands_out_the_node_range_inside_the_cluster_subnet(tmp_path: Path) -> None:
    rt = runtime(tmp_path, ("198.18.2.0/24", "2001:db8:18:2::/64"), ("198.18.0.0/16", "2001:db8:18::/48"))
    net = primary_network(rt)
    (plugin,) = net["plugins"]
    assert (plugin["type"], plugin["master"], plugin["mode"]) == ("macvlan", "eth0", "bridge")
    assert plugin["ipam"]["dataDir"] == str(rt.ipam_dir)
    assert plugin["ipam"]["ranges"] == [
        [
            {
                "subnet": "198.18.0.0/16",
                "rangeStart": "198.18.2.2",
                "rangeEnd": "198.18.2.254",
                "gateway": "198.18.2.1",
            }
        ],
        [
            {
                "subnet": "2001:db8:18::/48",
                "rangeStart": "2001:db8:18:2::2",
                "rangeEnd": "2001:db8:18:2:ffff:ffff:ffff:ffff",
                "gateway": "2001:db8:18:2::1",
            }
        ],
    ]


@pytest.mark.parametrize(
    ("pods", "clusters"),
    [
        (("198.18.2.0/24",), ("198.19.0.0/16",)),  # outside
        (("198.18.2.0/24",), ("2001:db8:18::/48",)),  # other family
        (("198.18.2.0/24",), ()),  # unpaired
        ((), ()),  # none
    ],
    ids=["outside", "other-family", "unpaired", "none"],
)
def test_primary_network_refuses_a_pod_cidr_outside_its_cluster_cidr(
    tmp_path: Path, pods: tuple[str, ...], clusters: tuple[str, ...]
) -> None:
    with pytest.raises(ContainerdError, match="node-2"):
        primary_network(runtime(tmp_path, pods, clusters))


def test_config_keeps_every_path_under_the_state_dir_and_sets_what_this_machine_needs(tmp_path: Path) -> None:
    rt = runtime(tmp_path, ("198.18.2.0/24",), ("198.18.0.0/16",))
    config = tomllib.loads(render_config(rt, PAUSE_IMAGE))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    runc = cri["containerd"]["runtimes"]["runc"]
    paths = [
        config["root"],
        config["state"],
        config["grpc"]["address"],
        config["ttrpc"]["address"],
        config["plugins"]["io.containerd.internal.v1.opt"]["path"],
        runc["options"]["Root"],
        cri["cni"]["conf_dir"],
    ]
    assert all(p.startswith(str(rt.state_dir) + "/") for p in paths)
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE here
    assert cri["netns_mounts_under_state_dir"] is True
    assert runc["options"]["SystemdCgroup"] is False
    assert (cri["sandbox_image"], cri["cni"]["max_conf_num"]) == (PAUSE_IMAGE, 1)


def test_write_config_round_trips_the_settings_for_crash_recovery(tmp_path: Path) -> None:
    rt = runtime(tmp_path, ("198.18.2.0/24",), ("198.18.0.0/16",))
    write_config(rt, PAUSE_IMAGE)
    assert load_settings(rt.state_dir) == rt
    conflists = list(rt.cni_conf_dir.iterdir())
    assert len(conflists) == 1 and json.loads(conflists[0].read_text()) == primary_network(rt)
    assert load_settings(tmp_path / "nothing-here") is None


def test_pause_image_is_a_consistent_oci_layout(tmp_path: Path) -> None:
    image = build_pause_image(tmp_path / "pause.tar")
    with tarfile.open(image.path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]

    def blob(digest: str) -> bytes:
        data = files["blobs/sha256/" + digest.removeprefix("sha256:")]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (desc,) = json.loads(files["index.json"])["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == PAUSE_IMAGE
    assert desc["digest"] == image.manifest_digest
    manifest = json.loads(blob(desc["digest"]))
    config = json.loads(blob(manifest["config"]["digest"]))
    layer = blob(manifest["layers"][0]["digest"])
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]  # uncompressed layer
    assert config["config"]["Entrypoint"] == list(ENTRYPOINT)
    with tarfile.open(fileobj=io.BytesIO(layer)) as rootfs:
        members = {m.name: m for m in rootfs.getmembers()}
    assert members["bin/busybox"].mode == 0o755 and members["bin/sleep"].linkname == "busybox"
    assert {m.mtime for m in members.values()} == {0}


def test_cri_client_on_a_missing_socket_raises_cri_error_unavailable(tmp_path: Path) -> None:
    with CriClient(str(tmp_path / "none.sock"), timeout=5) as cri, pytest.raises(CriError) as err:
        cri.version()
    assert err.value.code == "UNAVAILABLE" and "none.sock" in str(err.value)
