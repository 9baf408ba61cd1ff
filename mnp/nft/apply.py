"""Runs nft transactions inside a pod's network namespace.

In process, through a libnftables context whose netlink socket was opened inside the target netns: a
transaction then costs well under a millisecond instead of the ~15 ms of starting `nft`. The context
keeps working from any thread, because a netlink socket stays bound to the netns it was opened in.
`apply_nft_exec` is the process-per-apply way, kept for comparison in bench/apply.py.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import subprocess
import threading
from types import TracebackType
from typing import Any, Protocol

import nftables

from mnp.api.errors import NetnsError, NftError
from mnp.nft import names
from mnp.nft.model import TableShape
from mnp.nft.observe import listing_digest, parse_shape
from mnp.nft.render import render_delete

_CLONE_NEWNET = 0x40000000
_RELEASE_CACHE_ABOVE = 64 * 1024  # characters of script plus output


class NftRunner(Protocol):
    """The seam the agent depends on: something that runs nft in one pod's netns."""

    def run(self, script: str) -> str: ...

    def apply(self, script: str) -> None: ...

    def list_table(self, table: str) -> str | None: ...

    def table_shape(self, table: str) -> TableShape | None: ...

    def table_digest(self, table: str) -> str | None: ...

    def generation(self) -> int: ...

    def delete_table(self, table: str) -> None: ...

    def close(self) -> None: ...


def _setns(fd: int) -> None:
    # Python 3.11 has no os.setns; setns(2) switches only the calling thread.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_NFTABLES = 10
_NFT_MSG_GETGEN = 16
_NFTA_GEN_ID = 1
_NLMSG_ERROR = 2


def _netfilter_socket() -> socket.socket:
    """A netlink socket of the calling thread's netns, for NFT_MSG_GETGEN."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.settimeout(5.0)
    return sock


def ruleset_generation(sock: socket.socket, seq: int) -> int:
    """The nftables ruleset generation of the socket's netns: it changes with every commit there."""
    header = struct.pack("=IHHII", 20, (_NFNL_SUBSYS_NFTABLES << 8) | _NFT_MSG_GETGEN, 1, seq, 0)
    sock.send(header + struct.pack("=BBH", 0, 0, 0))
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + 16 <= len(data):
            length, kind, _, got_seq, _ = struct.unpack_from("=IHHII", data, offset)
            if got_seq == seq:
                if kind == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + 16)
                    raise NftError(f"ruleset generation: netlink error {os.strerror(-code)}")
                attr = offset + 20  # after nlmsghdr and nfgenmsg
                while attr + 4 <= offset + length:
                    alen, atype = struct.unpack_from("=HH", data, attr)
                    if atype & 0x7FFF == _NFTA_GEN_ID:
                        return int(struct.unpack_from(">I", data, attr + 4)[0])
                    attr += (alen + 3) & ~3
                raise NftError("ruleset generation: no NFTA_GEN_ID in the answer")
            offset += (length + 3) & ~3


def _open_in_netns(fd: int) -> Any:
    """A libnftables context created on a throwaway thread that entered the netns of `fd`.

    The thread is never reused: a thread left in a pod netns would put whatever runs on it next there.
    """
    result: list[Any] = []
    failure: list[BaseException] = []

    def enter_and_open() -> None:
        try:
            _setns(fd)
            ctx = nftables.Nftables()
            # Make libnftables open its netlink socket now, on this thread, in this netns. `list
            # flowtables` fetches the least: `list tables` would cache every element of every set.
            rc, _, err = ctx.cmd("list flowtables")
            if rc != 0:
                raise NftError(err.strip() or f"nft failed ({rc})")
            result.append(ctx)
            result.append(_netfilter_socket())
        except BaseException as e:  # handed to the caller's thread
            failure.append(e)

    thread = threading.Thread(target=enter_and_open, name="mnp-netns-open", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0], result[1]


class NetnsNft:
    """A persistent libnftables context bound to one network namespace, safe to share between threads.

    It pins the namespace: while it is open, the netns (and the pod's interfaces in it) stays alive even
    after its file is unmounted or the pod is gone. Close it when the pod goes away.
    """

    def __init__(self, netns_path: str) -> None:
        self.netns_path = netns_path
        self._lock = threading.Lock()
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise NetnsError(f"{netns_path}: cannot open network namespace: {e.strerror}") from e
        try:
            self._ctx, self._gen_socket = _open_in_netns(fd)
            self._seq = 0
        except OSError as e:
            raise NetnsError(f"{netns_path}: cannot enter network namespace: {e.strerror}") from e
        finally:
            os.close(fd)

    def run(self, script: str) -> str:
        """Run nft commands in one transaction; the output (for list commands). Raises NftError."""
        with self._lock:
            if self._ctx is None:
                raise NftError(f"{self.netns_path}: nft context is closed")
            rc, out, err = self._ctx.cmd(script)
            if len(script) + len(out) > _RELEASE_CACHE_ABOVE:
                # libnftables keeps its object cache in the context until a later command needs a
                # different one: after a 50k-element apply or list that is 40-80 MiB per pod, and it
                # is never reused (our own commit makes it stale). `list flowtables` needs only the
                # tables, so running it replaces the big cache with a tiny one.
                self._ctx.cmd("list flowtables")
        if rc != 0:
            raise NftError(f"{self.netns_path}: {err.strip() or f'nft failed ({rc})'}")
        return str(out)

    def apply(self, script: str) -> None:
        """Apply a transaction: all of it or, on NftError, none of it."""
        self.run(script)

    def list_table(self, table: str) -> str | None:
        """`nft list table inet TABLE`, or None when the table does not exist."""
        names.table_name(table)
        try:
            return self.run(f"list table inet {table}")
        except NftError as e:
            if "No such file or directory" in str(e):
                return None
            raise

    def table_shape(self, table: str) -> TableShape | None:
        """What the table declares now (`nft -t list table`, no elements); None if absent or unreadable."""
        out = self._list(table, terse=True)
        return None if out is None else parse_shape(out)

    def table_digest(self, table: str) -> str | None:
        """`listing_digest` of the table's content (`nft -j list table`); None if it is absent."""
        out = self._list(table, json_output=True)
        return None if out is None else listing_digest(out)

    def _list(self, table: str, *, terse: bool = False, json_output: bool = False) -> str | None:
        names.table_name(table)
        with self._lock:
            if self._ctx is None:
                raise NftError(f"{self.netns_path}: nft context is closed")
            self._ctx.set_terse_output(terse)
            self._ctx.set_json_output(json_output)
            try:
                rc, out, err = self._ctx.cmd(f"list table inet {table}")
            finally:
                self._ctx.set_terse_output(False)
                self._ctx.set_json_output(False)
            if len(out) > _RELEASE_CACHE_ABOVE:
                self._ctx.cmd("list flowtables")  # see run(): drop the big object cache
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise NftError(f"{self.netns_path}: {err.strip() or f'nft failed ({rc})'}")
        return str(out)

    def generation(self) -> int:
        """The netns's nftables ruleset generation: equal values mean no commit happened in between."""
        with self._lock:
            if self._ctx is None:
                raise NftError(f"{self.netns_path}: nft context is closed")
            self._seq += 1
            try:
                return ruleset_generation(self._gen_socket, self._seq)
            except OSError as e:
                raise NftError(f"{self.netns_path}: ruleset generation: {e}") from e

    def delete_table(self, table: str) -> None:
        """Remove the table; nothing happens if it is absent."""
        self.run(render_delete(table))

    def close(self) -> None:
        """Free the context and its socket, which unpins the netns. Idempotent."""
        with self._lock:
            ctx, self._ctx = self._ctx, None
            if ctx is not None:
                self._gen_socket.close()
        # pip-nftables frees the libnftables context (closing its socket) when the object goes; we hold
        # the only reference, so dropping it frees it here, not at some later collection.
        del ctx

    def __enter__(self) -> NetnsNft:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def apply_nft_exec(netns_path: str, script: str) -> None:
    """Apply a transaction with `nsenter --net=PATH nft -f -` (one process per apply)."""
    if not os.path.exists(netns_path):
        raise NetnsError(f"{netns_path}: no such network namespace")
    proc = subprocess.run(
        ["nsenter", f"--net={netns_path}", "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise NftError(f"{netns_path}: {proc.stderr.strip() or f'nft exited {proc.returncode}'}")
