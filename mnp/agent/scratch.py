"""A private network namespace of the agent's own, to learn how the kernel lists a table it renders.

Whether a pod's table is right cannot be read off the text we render (the kernel prints tables its own
way, and hash sets in a per-set order). So a table is applied once in this empty namespace, nowhere
near any traffic, and its listing digest is what the pod's table must match. Used at start (adopt a
table that is already right instead of rewriting it) and after drift repairs.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections import OrderedDict
from dataclasses import replace

from mnp.api.errors import NetnsError, NftError
from mnp.api.ruleset import DirectionRules, RulesetSpec
from mnp.nft.apply import NetnsNft
from mnp.nft.custom import CustomRules
from mnp.nft.model import Table
from mnp.nft.render import RenderOptions, build_table, render_table_replace

_CLONE_NEWNET = 0x40000000
_CACHE = 512


def _new_netns_fd() -> int:
    """An fd of a brand-new, empty network namespace (made on a throwaway thread, nothing runs in it)."""
    result: list[int] = []
    failure: list[BaseException] = []

    def make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(_CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            result.append(
                os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            )
        except BaseException as e:  # handed to the caller
            failure.append(e)

    thread = threading.Thread(target=make, name="mnp-scratch-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise NetnsError(f"cannot make the agent's scratch network namespace: {failure[0]}")
    return result[0]


class Scratch:
    """Canonical listing digests of tables, computed in a private empty netns and remembered."""

    def __init__(self) -> None:
        fd = _new_netns_fd()
        try:
            self._nft = NetnsNft(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)  # the libnftables socket keeps the namespace alive
        self._lock = threading.Lock()
        self._digests: OrderedDict[str, str] = OrderedDict()

    def digest(self, table: Table, key: str) -> str:
        """The listing digest `table` has once applied; `key` identifies it (its transaction hash)."""
        with self._lock:
            if key in self._digests:
                self._digests.move_to_end(key)
                return self._digests[key]
            self._nft.apply(render_table_replace(table))
            try:
                digest = self._nft.table_digest(table.name)
            finally:
                self._nft.delete_table(table.name)
            if digest is None:
                raise NetnsError(f"table {table.name} vanished from the scratch namespace")
            self._digests[key] = digest
            if len(self._digests) > _CACHE:
                self._digests.popitem(last=False)
            return digest

    def check_custom_rules(self, options: RenderOptions) -> list[tuple[str, str, str]]:
        """Apply each custom rule alone in a table of this namespace; the ones nft refuses.

        Returns (family_direction, rule, nft's message) for each refused rule, so a bad rule file is a
        startup error naming the rule, not a failure on every pod later.
        """
        bad: list[tuple[str, str, str]] = []
        custom = options.custom
        for slot in ("v4_ingress", "v4_egress", "v6_ingress", "v6_egress"):
            for rule in getattr(custom, slot):
                alone = replace(options, custom=CustomRules(**{slot: (rule,)}))
                direction = DirectionRules(isolated=("eth0",))
                spec = RulesetSpec(pod_uid="check", node="check", ingress=direction, egress=direction)
                table = build_table(spec, alone)
                with self._lock:
                    try:
                        self._nft.apply(render_table_replace(table))
                    except NftError as e:
                        bad.append((slot, rule, str(e).split(": ", 1)[-1].splitlines()[0]))
                    finally:
                        self._nft.delete_table(table.name)
        return bad

    def close(self) -> None:
        self._nft.close()


__all__ = ["Scratch"]
