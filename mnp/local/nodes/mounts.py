"""A container's view of the host filesystem: a private mount namespace with its volumes bound in.

Containers run on the host filesystem, so a mount target that does not exist on the host (the
service-account dir, /host, a socket under /run/containerd) must appear only inside the container's
mount namespace. The directory above it is replaced there by a "writable mimic" (as snapd does): a
tmpfs holding the same entries, each the original bind-mounted back, plus the missing path. Nothing is
created on the host except volume sources the pod asked to be created (DirectoryOrCreate, emptyDir).
Every mount receives what the host mounts later below it (as mountPropagation HostToContainer).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import stat
from collections.abc import Iterator, Sequence

from mnp.api.errors import InvalidInput, MnpError
from mnp.local.nodes.podspec import Mount, SourceCheck, SourceType

CLONE_NEWNS = 0x00020000
_MS_RDONLY = 0x1
_MS_REMOUNT = 0x20
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_SLAVE = 0x80000
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_STRING = 1
_FSCONFIG_CMD_CREATE = 6
_FSMOUNT_CLOEXEC = 1
# The new mount API (Linux 5.2) has the same syscall numbers on every architecture.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class MountError(MnpError):
    """The container's mount namespace could not be set up."""


def prepare_sources(checks: Sequence[SourceCheck]) -> None:
    """Create the sources a pod asked for (…OrCreate, emptyDir) and check the others exist as typed.

    Runs on the host before a start; InvalidInput names the field a missing source comes from.
    """
    for check in checks:
        path = check.path
        if check.type == SourceType.DIRECTORY_OR_CREATE:
            if not path.is_dir():
                try:
                    path.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise InvalidInput(check.field, f"cannot create directory {path}: {e.strerror}") from e
            continue
        if check.type == SourceType.FILE_OR_CREATE:
            if not path.exists():
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                except OSError as e:
                    raise InvalidInput(check.field, f"cannot create file {path}: {e.strerror}") from e
            continue
        try:
            mode = path.stat().st_mode
        except OSError:
            raise InvalidInput(check.field, f"{path} does not exist") from None
        wanted = {
            SourceType.DIRECTORY: (stat.S_ISDIR, "a directory"),
            SourceType.FILE: (stat.S_ISREG, "a file"),
            SourceType.SOCKET: (stat.S_ISSOCK, "a socket"),
            SourceType.CHAR_DEVICE: (stat.S_ISCHR, "a character device"),
            SourceType.BLOCK_DEVICE: (stat.S_ISBLK, "a block device"),
        }.get(check.type)
        if wanted is not None and not wanted[0](mode):
            raise InvalidInput(check.field, f"{path} is not {wanted[1]}")


def enter_private_mount_namespace() -> None:
    """unshare(CLONE_NEWNS) and make every mount a slave: host mounts still arrive, ours never leave."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        raise MountError(f"unshare mount namespace: {_strerror()}")
    # rslave, not private: a netns the kubelet mounts under /run/netns after this start must still
    # appear here (HostToContainer propagation), while nothing mounted here reaches the host.
    if _libc.mount(None, b"/", None, _MS_REC | _MS_SLAVE, None) != 0:
        raise MountError(f"make / rslave: {_strerror()}")


def bind_mounts(mounts: Sequence[Mount]) -> None:
    """Bind every mount's source at its target (parents first), read-only where asked.

    Sources are cloned before any target is touched, so a mount never sees another one's result
    in place of the host path it named.
    """
    clones = []
    try:
        for m in mounts:
            try:
                is_dir = stat.S_ISDIR(os.stat(m.source).st_mode)
            except OSError as e:
                raise MountError(f"mount source {m.source}: {e.strerror}") from e
            clones.append((m, is_dir, _open_tree(str(m.source), follow=True)))
        volumes: list[str] = []
        for m, is_dir, fd in sorted(clones, key=lambda c: _depth(c[0].target)):
            target = ensure_path(m.target, directory=is_dir, writable_volumes=volumes)
            _move_mount(fd, target)
            if m.read_only:
                _remount_read_only(target)
            elif is_dir:
                volumes.append(target)
    finally:
        for _, _, fd in clones:
            os.close(fd)


def _remount_read_only(target: str) -> None:
    # A bind remount sets the mount's flags to exactly those given: keep nosuid/nodev/noexec.
    kept = os.statvfs(target).f_flag & (os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC)
    if _libc.mount(None, target.encode(), None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | kept, None) != 0:
        raise MountError(f"remount {target} read-only: {_strerror()}")


def ensure_path(path: str, *, directory: bool, writable_volumes: Sequence[str] = ()) -> str:
    """`path` resolved (symlinks of existing ancestors followed), made to exist in this namespace only.

    A missing path is created inside a writable mimic of its nearest existing ancestor, except below
    one of `writable_volumes` (mounted volumes): there it is made in the volume, as runc does.
    """
    resolved = os.path.realpath(path)
    if os.path.lexists(resolved):
        if os.path.isdir(resolved) != directory:
            kind = "a directory" if directory else "not a directory"
            raise MountError(f"mount target {path} must be {kind} to take this mount")
        return resolved
    ancestor = resolved
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise MountError(f"mount target {path}: {ancestor} is not a directory")
    if any(ancestor == v or ancestor.startswith(v.rstrip("/") + "/") for v in writable_volumes):
        root = os.open(ancestor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _create(root, os.path.relpath(resolved, ancestor), directory)
        finally:
            os.close(root)
        return resolved
    _mimic(ancestor, os.path.relpath(resolved, ancestor), directory)
    return resolved


def _mimic(ancestor: str, missing: str, directory: bool) -> None:
    """Cover `ancestor` with a tmpfs holding its entries (bound back) and the `missing` relative path."""
    entries = sorted(os.listdir(ancestor))
    info = os.stat(ancestor)
    clones: list[tuple[str, int]] = []
    links: list[tuple[str, str, os.stat_result]] = []
    with _fd_limit(len(entries) + 64):
        try:
            for name in entries:
                full = os.path.join(ancestor, name)
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    links.append((name, os.readlink(full), st))
                else:
                    clones.append((name, _open_tree(full, follow=False)))
            tmpfs = _tmpfs(info)
            try:
                for name, fd in clones:
                    if stat.S_ISDIR(os.fstat(fd).st_mode):
                        os.mkdir(name, dir_fd=tmpfs)
                    else:
                        os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=tmpfs))
                for name, target, st in links:
                    os.symlink(target, name, dir_fd=tmpfs)
                    os.chown(name, st.st_uid, st.st_gid, dir_fd=tmpfs, follow_symlinks=False)
                _create(tmpfs, missing, directory)
                if ancestor == "/":
                    # The root cannot be covered in place for this process: enter the tmpfs, put it
                    # over / and make it our root (what switch_root does).
                    os.fchdir(tmpfs)
                _move_mount(tmpfs, ancestor)
                if ancestor == "/":
                    os.chroot(".")
            finally:
                os.close(tmpfs)
            for name, fd in clones:
                _move_mount(fd, os.path.join(ancestor, name))
        finally:
            for _, fd in clones:
                os.close(fd)


def _create(root_fd: int, relative: str, directory: bool) -> None:
    parts = relative.split("/")
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and not directory:
                os.close(os.open(part, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=fd))
                return
            os.mkdir(part, 0o755, dir_fd=fd)
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def _tmpfs(like: os.stat_result) -> int:
    """A detached tmpfs whose root has the mode and owner of `like`."""
    fs = _check(_libc.syscall(_SYS_FSOPEN, b"tmpfs", _FSOPEN_CLOEXEC), "fsopen tmpfs")
    try:
        for key, value in (
            ("mode", f"{stat.S_IMODE(like.st_mode):o}"),
            ("uid", str(like.st_uid)),
            ("gid", str(like.st_gid)),
        ):
            _check(
                _libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, key.encode(), value.encode(), 0),
                f"tmpfs option {key}",
            )
        _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0), "create tmpfs")
        return _check(_libc.syscall(_SYS_FSMOUNT, fs, _FSMOUNT_CLOEXEC, 0), "fsmount tmpfs")
    finally:
        os.close(fs)


def _open_tree(path: str, *, follow: bool) -> int:
    """A detached recursive copy of the mount tree at `path` (propagation kept: slaves stay slaves)."""
    flags = _OPEN_TREE_CLONE | _AT_RECURSIVE | os.O_CLOEXEC | (0 if follow else _AT_SYMLINK_NOFOLLOW)
    return _check(_libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, path.encode(), flags), f"clone mount {path}")


def _move_mount(fd: int, target: str) -> None:
    _check(
        _libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, target.encode(), _MOVE_MOUNT_F_EMPTY_PATH),
        f"mount at {target}",
    )


@contextlib.contextmanager
def _fd_limit(needed: int) -> Iterator[None]:
    """Raise RLIMIT_NOFILE for a mimic of a large directory; the container gets the old limit back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if needed <= soft:
        yield
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(needed, soft), max(needed, hard)))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _depth(target: str) -> int:
    return len([p for p in target.split("/") if p])


def _check(result: int, what: str) -> int:
    if result < 0:
        raise MountError(f"{what}: {_strerror()}")
    return result


def _strerror() -> str:
    return os.strerror(ctypes.get_errno())


__all__ = ["MountError", "bind_mounts", "enter_private_mount_namespace", "ensure_path", "prepare_sources"]
