"""nft objects as frozen values, and their text.

A table is data (maps, chains, rules made of typed parts) so that the renderer can compare two tables
and send only what changed, and so that no rule text is ever pasted together from untrusted strings:
each part accepts only values from a closed vocabulary or a checked identifier.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from mnp.nft import names

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# nft's identifier alphabet (scanner rule `string`), minus `/` and `.` which we never need.
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")


def _ident(name: str) -> str:
    if not _IDENT.fullmatch(name):
        raise ValueError(f"{name!r} is not an nft identifier")
    return name


class Selector(StrEnum):
    """What a rule looks at (left-hand side of a match)."""

    CT_STATE = "ct state"
    META_NFPROTO = "meta nfproto"
    META_L4PROTO = "meta l4proto"
    L4PROTO_DPORT = "meta l4proto . th dport"
    IIFNAME = "iifname"
    OIFNAME = "oifname"
    IP_SADDR = "ip saddr"
    IP_DADDR = "ip daddr"
    IP6_SADDR = "ip6 saddr"
    IP6_DADDR = "ip6 daddr"
    ICMPV6_TYPE = "icmpv6 type"


class Symbol(StrEnum):
    """The nft constants mnp writes."""

    ESTABLISHED = "established"
    RELATED = "related"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"
    ICMP = "icmp"
    IPV6_ICMP = "ipv6-icmp"
    ND_ROUTER_SOLICIT = "nd-router-solicit"
    ND_ROUTER_ADVERT = "nd-router-advert"
    ND_NEIGHBOR_SOLICIT = "nd-neighbor-solicit"
    ND_NEIGHBOR_ADVERT = "nd-neighbor-advert"
    ND_REDIRECT = "nd-redirect"
    MLD_LISTENER_QUERY = "mld-listener-query"
    MLD_LISTENER_REPORT = "mld-listener-report"
    MLD2_LISTENER_REPORT = "mld2-listener-report"


class KeyType(StrEnum):
    IPV4_ADDR = "ipv4_addr"
    IPV6_ADDR = "ipv6_addr"


class Hook(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


# --- values ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class PortRange:
    """`80` or `5000-5010`."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not (0 <= self.first <= self.last <= 65535):
            raise ValueError(f"bad port range {self.first}-{self.last}")

    def render(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True, slots=True)
class ProtoPorts:
    """`tcp . 80`: one element of a `meta l4proto . th dport` set."""

    proto: Symbol
    ports: PortRange

    def render(self) -> str:
        return f"{self.proto} . {self.ports.render()}"


@dataclass(frozen=True, slots=True)
class Flags:
    """`established,related`: a bitmask match, cheaper than a set."""

    symbols: tuple[Symbol, ...]

    def render(self) -> str:
        return ",".join(self.symbols)


@dataclass(frozen=True, slots=True)
class AnonSet:
    """`{ a, b }`."""

    items: tuple[Symbol | ProtoPorts, ...]

    def render(self) -> str:
        return "{ " + ", ".join(i if isinstance(i, Symbol) else i.render() for i in self.items) + " }"


Value = Symbol | Flags | AnonSet


@dataclass(frozen=True, slots=True)
class AddrRange:
    """An address range that is not one prefix: `10.0.0.1-10.0.0.6`."""

    first: IPAddress
    last: IPAddress

    def __post_init__(self) -> None:
        if self.first.version != self.last.version or int(self.first) > int(self.last):
            raise ValueError(f"bad address range {self.first}-{self.last}")

    def render(self) -> str:
        return f"{self.first}-{self.last}"


Key = IPAddress | IPNetwork | AddrRange


def key_bounds(key: Key) -> tuple[int, int]:
    """First and last address of an element key, as integers."""
    # Addresses first: they are nearly every element of a big map, and this runs per element.
    if isinstance(key, _ADDRESS_TYPES):
        n = int(key)
        return n, n
    if isinstance(key, AddrRange):
        return int(key.first), int(key.last)
    return int(key.network_address), int(key.broadcast_address)


_ADDRESS_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)


@functools.lru_cache(maxsize=1 << 17)
def render_key(key: Key) -> str:
    """A map key as nft writes it; cached, as the same peers' addresses are rendered into every table
    of a policy (and ipaddress's str() is most of the cost of rendering a big map)."""
    return key.render() if isinstance(key, AddrRange) else str(key)


# --- statements ------------------------------------------------------------------------------------


class VerdictKind(StrEnum):
    ACCEPT = "accept"
    DROP = "drop"
    JUMP = "jump"


@dataclass(frozen=True, slots=True, order=True)
class Verdict:
    kind: VerdictKind
    target: str = ""

    def __post_init__(self) -> None:
        if (self.kind is VerdictKind.JUMP) != bool(self.target):
            raise ValueError("a jump, and only a jump, has a target")
        if self.target:
            _ident(self.target)

    def render(self) -> str:
        return f"jump {self.target}" if self.target else self.kind.value


ACCEPT = Verdict(VerdictKind.ACCEPT)
DROP = Verdict(VerdictKind.DROP)


def jump(chain: str) -> Verdict:
    return Verdict(VerdictKind.JUMP, chain)


@dataclass(frozen=True, slots=True)
class Match:
    """`ct state established,related`."""

    selector: Selector
    value: Value

    def render(self) -> str:
        value = self.value if isinstance(self.value, Symbol) else self.value.render()
        return f"{self.selector} {value}"


@dataclass(frozen=True, slots=True)
class MapLookup:
    """`ip saddr vmap @ingress-net1-v4-addr`."""

    selector: Selector
    map_name: str

    def __post_init__(self) -> None:
        _ident(self.map_name)

    def render(self) -> str:
        return f"{self.selector} vmap @{self.map_name}"


@dataclass(frozen=True, slots=True)
class InterfaceIs:
    """`iifname "net1"`: a plain comparison, no set lookup.

    Base chains send each isolated interface to its chain with one such rule, not with one
    `iifname vmap { ... }`: a lookup is evaluated against the generation current at lookup time, so a
    packet that entered the chain just before a commit deleting the old anonymous set would miss
    every element and fall off the base chain into its accept policy. A comparison in a rule
    belongs to the generation the traversal started in, old or new, never neither.
    """

    selector: Selector
    ifname: str

    def render(self) -> str:
        return f"{self.selector} {names.ifname_literal(self.ifname)}"


@dataclass(frozen=True, slots=True)
class Verbatim:
    """An operator's custom rule line, checked so that it cannot leave its chain."""

    text: str

    def __post_init__(self) -> None:
        problem = names.rule_text_problem(self.text)
        if problem:
            raise ValueError(f"{self.text!r}: {problem}")

    def render(self) -> str:
        return self.text.strip()


Statement = Match | MapLookup | InterfaceIs | Verbatim | Verdict


@dataclass(frozen=True, slots=True)
class Rule:
    statements: tuple[Statement, ...]

    def render(self) -> str:
        return " ".join(s.render() for s in self.statements)


# --- objects ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Element:
    key: Key
    verdict: Verdict

    def render(self) -> str:
        return f"{render_key(self.key)} : {self.verdict.render()}"


@dataclass(frozen=True, slots=True)
class Map:
    """A named verdict map; `interval` maps hold prefixes and ranges, the others exact addresses."""

    name: str
    key_type: KeyType
    interval: bool
    elements: tuple[Element, ...] = ()
    # Maximum number of elements; 0 = none declared. On a hash map a declared size lets the kernel
    # pick its fixed-bucket hash, which loads a 50k-element map in about half the kernel time of the
    # resizing one; the size is a hard limit, so it must leave room for the elements to come.
    size: int = 0

    def __post_init__(self) -> None:
        _ident(self.name)
        if self.size and len(self.elements) > self.size:
            raise ValueError(f"{self.name}: {len(self.elements)} elements exceed size {self.size}")


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain; with a hook it is a base chain (type filter, priority filter, policy accept)."""

    name: str
    rules: tuple[Rule, ...]
    hook: Hook | None = None
    comment: str = ""

    def __post_init__(self) -> None:
        _ident(self.name)


@dataclass(frozen=True, slots=True)
class Table:
    """One `inet` table; maps and chains are rendered in the order given."""

    name: str
    maps: tuple[Map, ...] = ()
    chains: tuple[Chain, ...] = ()

    def __post_init__(self) -> None:
        names.table_name(self.name)

    def skeleton(self) -> Table:
        """The table without map elements: two tables with equal skeletons differ only in elements."""
        return replace(self, maps=tuple(replace(m, elements=()) for m in self.maps))

    def counts(self) -> tuple[int, int]:
        """(rules, map elements), as reported in the ruleset status."""
        return sum(len(c.rules) for c in self.chains), sum(len(m.elements) for m in self.maps)

    def shape(self) -> TableShape:
        """The names this table declares, as they will be read back from the kernel."""
        return TableShape(
            self.name,
            maps=tuple(m.name for m in self.maps),
            chains=tuple((c.name, base_chain_spec(c.hook) if c.hook else "") for c in self.chains),
        )


def base_chain_spec(hook: Hook) -> str:
    """The declaration line of every base chain we render, exactly as `nft list` prints it."""
    return f"type filter hook {hook} priority filter; policy accept;"


@dataclass(frozen=True, slots=True)
class TableShape:
    """What a table declares, without rules or elements: enough to empty it and define it anew.

    `chains` pairs each chain's name with its base chain declaration (`base_chain_spec`), "" for a
    regular chain. Every name is a plain identifier (checked), so it can be written into nft syntax.
    Each tuple is kept sorted: the kernel lists a base chain kept by a swap before the chains defined
    anew, so the order read back is not the order rendered, and two shapes compare by content.
    """

    name: str
    maps: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    chains: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        names.table_name(self.name)
        for n in (*self.maps, *self.sets, *(c for c, _ in self.chains)):
            _ident(n)
        for attr in ("maps", "sets", "chains"):
            object.__setattr__(self, attr, tuple(sorted(getattr(self, attr))))


# --- text ------------------------------------------------------------------------------------------


def render_elements(elements: Iterable[Element], indent: str) -> str:
    """`{ e1, e2 }` with one element per line: big maps stay diffable and lines stay short."""
    lines = [e.render() for e in elements]
    if not lines:
        return "{ }"
    return "{\n" + ",\n".join(indent + "\t" + line for line in lines) + "\n" + indent + "}"


def render_map(m: Map) -> str:
    lines = [f"\tmap {m.name} {{", f"\t\ttype {m.key_type} : verdict"]
    if m.size:
        lines.append(f"\t\tsize {m.size}")
    if m.interval:
        lines.append("\t\tflags interval")
    if m.elements:
        lines.append("\t\telements = " + render_elements(m.elements, "\t\t"))
    lines.append("\t}")
    return "\n".join(lines)


def render_chain(c: Chain) -> str:
    lines = [f"\tchain {c.name} {{"]
    if c.comment:
        lines.append(f'\t\tcomment "{names.comment(c.comment)}"')
    if c.hook is not None:
        lines.append("\t\t" + base_chain_spec(c.hook))
    lines.extend("\t\t" + r.render() for r in c.rules)
    lines.append("\t}")
    return "\n".join(lines)


def render_table(table: Table) -> str:
    """`table inet NAME { ... }` with maps first, then chains, each block separated by a blank line."""
    blocks = [render_map(m) for m in table.maps] + [render_chain(c) for c in table.chains]
    if not blocks:
        return f"table inet {table.name} {{\n}}\n"
    return f"table inet {table.name} {{\n" + "\n\n".join(blocks) + "\n}\n"
