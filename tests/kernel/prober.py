"""A continuous traffic prober (imported as `prober`): real TCP flows between pod netns, every ~75 ms.

One background thread starts an attempt of every flow each tick, without waiting for earlier attempts
to end (a dropped SYN takes the whole timeout, and must not thin out the samples). An attempt is a
non-blocking TCP connect made from a socket created in the source pod's netns (the thread setns's
there first: a dedicated thread, it never runs anything else), then "x\\n" sent and "ok" read back
from the pod's socat listener (mnp_e2e.PodSpec listeners). Every attempt is kept as a Sample with its
start and end times; the analysis is pure functions over samples.

A flow's source netns and destination address are read at each attempt through callables, so a test
can move a flow to a re-created pod while the prober runs.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from mnp.api.errors import NetnsError
from mnp.local.nodes.netns import enter_netns

INTERVAL_S = 0.075
TIMEOUT_S = 1.0


@dataclass(frozen=True)
class ProbeFlow:
    """A TCP flow: from the netns `netns()` names, to `address()`:`port`, optionally from `source`."""

    name: str
    netns: Callable[[], str]
    address: Callable[[], str]
    port: int
    allowed: bool
    source: Callable[[], str | None] = lambda: None


@dataclass(frozen=True)
class Sample:
    flow: str
    started: float  # time.monotonic()
    ended: float
    passed: bool
    error: str = ""


@dataclass
class _Attempt:
    flow: ProbeFlow
    sock: socket.socket
    started: float
    connected: bool = False
    answer: bytes = b""


@dataclass
class Prober:
    """Probes `flows` every `interval` s in a background thread until stopped (a context manager)."""

    flows: Sequence[ProbeFlow]
    interval: float = INTERVAL_S
    timeout: float = TIMEOUT_S
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _crash: BaseException | None = None

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)
            assert not self._thread.is_alive(), "the prober thread does not end"
            self._thread = None
        if self._crash is not None:
            raise AssertionError(f"the prober crashed: {self._crash!r}") from self._crash

    def snapshot(self, since: float = 0.0, until: float = float("inf")) -> list[Sample]:
        """The samples started in [since, until), in start order."""
        with self._lock:
            found = [s for s in self.samples if since <= s.started < until]
        return sorted(found, key=lambda s: s.started)

    def wait_for_pass(self, flow: str, since: float, timeout: float) -> float:
        """The start time of the first passing sample of `flow` started at or after `since`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first = first_pass(self.snapshot(since), flow)
            if first is not None:
                return first
            time.sleep(0.05)
        raise AssertionError(f"{flow} did not pass within {timeout:.0f}s")

    # --- the prober thread ---

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        pending: dict[int, _Attempt] = {}
        try:
            next_tick = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_tick:
                    for flow in self.flows:
                        self._start(flow, selector, pending)
                    next_tick = max(next_tick + self.interval, now)
                for key, _ in selector.select(max(0.0, min(next_tick - time.monotonic(), 0.05))):
                    self._progress(pending[key.fd], selector, pending)
                for attempt in [a for a in pending.values() if time.monotonic() - a.started > self.timeout]:
                    self._end(attempt, selector, pending, False, "timeout")
        except BaseException as e:  # reported by stop()
            self._crash = e
        finally:
            for attempt in list(pending.values()):
                self._end(attempt, selector, pending, False, "prober stopped")
            selector.close()

    def _start(self, flow: ProbeFlow, selector: selectors.BaseSelector, pending: dict[int, _Attempt]) -> None:
        started = time.monotonic()
        try:
            enter_netns(flow.netns())
            address, source = flow.address(), flow.source()
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
        except (OSError, NetnsError, LookupError, AssertionError) as e:  # e.g. the source pod is being re-created
            self._record(Sample(flow.name, started, time.monotonic(), False, f"setup: {e}"))
            return
        sock.setblocking(False)
        attempt = _Attempt(flow, sock, started)
        try:
            if source:
                sock.bind((source, 0))
            code = sock.connect_ex((address, flow.port))
        except OSError as e:
            sock.close()
            self._record(Sample(flow.name, started, time.monotonic(), False, f"connect: {e}"))
            return
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._record(Sample(flow.name, started, time.monotonic(), False, os.strerror(code)))
            return
        pending[sock.fileno()] = attempt
        selector.register(sock, selectors.EVENT_WRITE)

    def _progress(self, a: _Attempt, selector: selectors.BaseSelector, pending: dict[int, _Attempt]) -> None:
        if not a.connected:
            code = a.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code != 0:
                self._end(a, selector, pending, False, os.strerror(code))
                return
            a.connected = True
            try:
                a.sock.send(b"x\n")
            except OSError as e:
                self._end(a, selector, pending, False, f"send: {e}")
                return
            selector.modify(a.sock, selectors.EVENT_READ)
            return
        try:
            chunk = a.sock.recv(64)
        except BlockingIOError:
            return
        except OSError as e:
            self._end(a, selector, pending, False, f"recv: {e}")
            return
        a.answer += chunk
        if b"ok" in a.answer:
            self._end(a, selector, pending, True)
        elif not chunk:
            self._end(a, selector, pending, False, f"closed after {a.answer!r}")

    def _end(
        self,
        a: _Attempt,
        selector: selectors.BaseSelector,
        pending: dict[int, _Attempt],
        passed: bool,
        error: str = "",
    ) -> None:
        pending.pop(a.sock.fileno(), None)
        selector.unregister(a.sock)
        a.sock.close()
        self._record(Sample(a.flow.name, a.started, time.monotonic(), passed, error))

    def _record(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)


# ---- analysis (pure) --------------------------------------------------------------------------------


def of(samples: Iterable[Sample], flow: str) -> list[Sample]:
    return sorted((s for s in samples if s.flow == flow), key=lambda s: s.started)


def passes(samples: Iterable[Sample], flow: str) -> list[Sample]:
    return [s for s in of(samples, flow) if s.passed]


def failures(samples: Iterable[Sample], flow: str) -> list[Sample]:
    return [s for s in of(samples, flow) if not s.passed]


def first_pass(samples: Iterable[Sample], flow: str) -> float | None:
    found = passes(samples, flow)
    return found[0].started if found else None


def longest_gap(samples: Iterable[Sample], flow: str, since: float, until: float) -> float:
    """The longest time in [since, until] without a passing sample of `flow` starting (seconds)."""
    times = [since, *(s.started for s in passes(samples, flow) if since <= s.started <= until), until]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def describe(samples: Sequence[Sample]) -> str:
    """One line per sample, for an assertion message (the first 20)."""
    lines = [f"  {s.flow} at {s.started:.3f}: {'pass' if s.passed else 'fail'} {s.error}" for s in samples]
    return "\n".join(lines[:20]) + (f"\n  ... {len(lines) - 20} more" if len(lines) > 20 else "")


__all__ = [
    "ProbeFlow",
    "Prober",
    "Sample",
    "describe",
    "failures",
    "first_pass",
    "longest_gap",
    "of",
    "passes",
]
