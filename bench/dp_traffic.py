"""Traffic tools of the data-plane benchmark: trafgen blasters, UDP sinks, iperf3, counters, conntrack.

Every process runs inside a pod network namespace through nsenter, in its own process group, and is
registered in a `Procs` so that it is stopped on exit, error or signal (trafgen forks a worker per
CPU and only stops when its whole group is signalled). Delivered packets are read from `Ip InDelivers`
of the pod netns through /proc/<sink pid>/net/snmp, which shows the netns of that process.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000
TRAFGEN_CPU = 0
SINK_CPU = 1
NEW_FLOW_NET = "203.0.113"  # extra local (AnyIP) destinations for the new-flow blaster
PROBE_SPORT = 40000


@dataclass(frozen=True, slots=True)
class Pod:
    """One end of the benchmark: a pod netns and its secondary interface."""

    name: str
    netns: str  # path of the netns (bind mount)
    ifname: str
    ip: str
    mac: str


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    return ["nsenter", f"--net={netns}", *argv]


def run(netns: str, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(in_netns(netns, argv), capture_output=True, text=True, check=check, timeout=60)


def link_mac(netns: str, ifname: str) -> str:
    out = run(netns, ["ip", "-j", "link", "show", "dev", ifname]).stdout
    return str(json.loads(out)[0]["address"])


@contextlib.contextmanager
def entered(netns: str) -> Iterator[None]:
    """Run the block with this thread in `netns`; sockets made inside stay in that netns."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the harness netns")
    finally:
        os.close(target)
        os.close(home)


class Procs:
    """The processes this run started; `stop_all` ends each of them by its process group."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], log: Path | None = None) -> subprocess.Popen[bytes]:
        if log is None:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        else:
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
                )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 3.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Workers of a group leader that already exited may linger: sweep the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self._procs):
            self.stop(proc, signal.SIGTERM, timeout=2.0)


# --- sinks and counters ----------------------------------------------------------------------------

_SINK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(2048)
    if data.startswith(b"PING"):
        s.sendto(data, peer)
"""


def start_sink(procs: Procs, pod: Pod, port: int) -> subprocess.Popen[bytes]:
    """A UDP sink on `port` pinned to the sink CPU; it echoes datagrams that start with PING."""
    argv = ["taskset", "-c", str(SINK_CPU), sys.executable, "-c", _SINK, str(port)]
    return procs.start(in_netns(pod.netns, argv))


def in_delivers(pid: int) -> int:
    """`Ip InDelivers` of the netns that process `pid` lives in."""
    lines = Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
    ip = [ln.split()[1:] for ln in lines if ln.startswith("Ip:")]
    return int(dict(zip(ip[0], ip[1], strict=True))["InDelivers"])


def add_anyip(pod: Pod) -> None:
    """Make every address of NEW_FLOW_NET local to the pod, so new-flow packets are delivered."""
    run(pod.netns, ["ip", "route", "add", "local", f"{NEW_FLOW_NET}.0/24", "dev", "lo"])


def probe_exchange(client: Pod, server: Pod, port: int, tries: int = 5, source: str | None = None) -> bool:
    """One datagram each way on the probe tuple, so conntrack sees the flow as established.

    With `source`, from that other address of the client instead (to check that the table denies it).
    """
    with entered(client.netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((source or client.ip, PROBE_SPORT))
        s.settimeout(0.3)
        for _ in range(tries):
            s.sendto(b"PING", (server.ip, port))
            with contextlib.suppress(TimeoutError):
                data, _peer = s.recvfrom(64)
                if data == b"PING":
                    return True
        return False
    finally:
        s.close()


# --- trafgen ---------------------------------------------------------------------------------------


def trafgen_config(client: Pod, server: Pod, port: int, new_flows: bool) -> str:
    """A 60-byte UDP frame: one fixed flow, or a new flow every packet (sport x daddr: 16 M tuples)."""
    eth = f"eth(da={server.mac}, sa={client.mac})"
    if new_flows:
        ip = f"ipv4(sa={client.ip}, da={NEW_FLOW_NET}.1, da[3]=dinc(1, 254), ttl=64, df)"
        udp = f"udp(sp=dinc(1024, 65534), dp={port})"
    else:
        ip = f"ipv4(sa={client.ip}, da={server.ip}, ttl=64, df)"
        udp = f"udp(sp={PROBE_SPORT}, dp={port})"
    return f"{{ {eth}, {ip}, {udp}, fill(0, 18) }}\n"


def start_trafgen(
    procs: Procs, client: Pod, config: Path, log: Path, nice: int = 0
) -> subprocess.Popen[bytes]:
    # --no-sock-mem and -Q leave the host's socket memory sysctls and IRQ affinities alone (0.6.8 rejects
    # the documented short form -A); -P 1 runs a single worker on the pinned CPU.
    argv = ["nice", "-n", str(nice), "taskset", "-c", str(TRAFGEN_CPU)]
    argv += ["trafgen", "-o", client.ifname, "-c", str(config)]
    argv += ["-P", "1", "--no-sock-mem", "-Q", "-C"]
    return procs.start(in_netns(client.netns, argv), log)


def trafgen_workers(pid: int) -> list[int]:
    """The worker processes trafgen forked (it sends from those, not from its parent)."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def ksoftirqd(cpu: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == f"ksoftirqd/{cpu}":
                    return int(entry.name)
    return None


def cpu_ns(pids: Sequence[int]) -> int:
    """CPU time of these processes in ns (their CPUCLOCK_SCHED clocks: exact, no tick sampling).

    Without CONFIG_IRQ_TIME_ACCOUNTING (this kernel), softirq work done in a task's context is charged
    to that task, so the generator's clock includes the receive path it drives on its CPU.
    """
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += time.clock_gettime_ns(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, SCHED)
    return total


# --- conntrack -------------------------------------------------------------------------------------


def conntrack_flush(pod: Pod) -> None:
    run(pod.netns, ["conntrack", "-F"], check=False)


def conntrack_stats(pod: Pod) -> dict[str, int]:
    """Sums over CPUs of `conntrack -S` of the pod netns (empty when conntrack is not in use there)."""
    out = run(pod.netns, ["conntrack", "-S"], check=False).stdout
    total: dict[str, int] = {}
    for line in out.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if value.isdigit():
                total[key] = total.get(key, 0) + int(value)
    return total


def conntrack_probe_state(server: Pod, port: int) -> str:
    """'established', 'unreplied' or 'absent' for the probe flow in the server's conntrack table."""
    argv = ["conntrack", "-L", "-p", "udp", "--sport", str(PROBE_SPORT), "--dport", str(port)]
    out = run(server.netns, argv, check=False).stdout.strip()
    if not out:
        return "absent"
    return "unreplied" if "[UNREPLIED]" in out else "established"


def set_udp_timeout(pod: Pod, seconds: int) -> None:
    run(pod.netns, ["sysctl", "-q", "-w", f"net.netfilter.nf_conntrack_udp_timeout={seconds}"], check=False)


# --- iperf3 ----------------------------------------------------------------------------------------


def start_iperf_server(procs: Procs, pod: Pod, port: int) -> subprocess.Popen[bytes]:
    return procs.start(in_netns(pod.netns, ["iperf3", "-s", "-B", pod.ip, "-p", str(port)]))


def iperf_gbps(
    procs: Procs, client: Pod, server: Pod, port: int, seconds: float, log: Path
) -> tuple[float, float]:
    """Bulk TCP from client to server in Gbit/s: best 0.5 s interval and mean received (0 on failure)."""
    argv = ["iperf3", "-c", server.ip, "-p", str(port), "-t", f"{seconds:g}", "-i", "0.5", "-J"]
    out = log.with_suffix(".json")
    for attempt in range(3):
        proc = procs.start(in_netns(client.netns, argv), out)
        try:
            proc.wait(seconds + 20)
        finally:
            procs.stop(proc)
        try:
            result = json.loads(out.read_text())
            mean = float(result["end"]["sum_received"]["bits_per_second"]) / 1e9
            best = max(float(i["sum"]["bits_per_second"]) for i in result["intervals"]) / 1e9
            return best, mean
        except (ValueError, KeyError, OSError):
            with open(log, "a") as f:
                text = out.read_text() if out.exists() else ""
                f.write(f"iperf3 attempt {attempt}: {text[-500:]}\n")
            time.sleep(0.5)
        finally:
            out.unlink(missing_ok=True)
    return 0.0, 0.0
