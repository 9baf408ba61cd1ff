"""Every identifier and string that enters nft syntax, in one place.

The ruleset is untrusted input; whatever reaches nft text goes through a function here, which either
accepts a value from a closed alphabet or builds a sanitised, bounded name. Names built from user input
carry a short hash suffix so that two different inputs never share one sanitised name.
"""

from __future__ import annotations

import hashlib
import re

from mnp.api.errors import InvalidInput
from mnp.api.ruleset import Direction

# Our own limit, stricter than the kernel's (256): short enough to read, never a keyword clash because
# it is checked against the same identifier alphabet nft's scanner accepts.
_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_PLAIN_IFNAME = re.compile(r"^[A-Za-z0-9_]+$")
# The ruleset's own interface alphabet (mnp.api.ruleset); repeated here so nft text never depends on
# validation done elsewhere.
_IFNAME_LITERAL = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_COMMENT_UNSAFE = re.compile(r"[^A-Za-z0-9 ./:_,=+-]")
# nft refuses comments longer than 128 characters.
COMMENT_MAX = 128
_HASH_LEN = 6


def table_name(name: str) -> str:
    """`name` if it is a valid table name; raises InvalidInput otherwise."""
    if not _TABLE.fullmatch(name):
        raise InvalidInput("table", f"{name!r} is not a table name (a letter, then 0-31 of A-Z a-z 0-9 _)")
    return name


def interface_token(ifname: str) -> str:
    """The part of chain and map names that stands for an interface.

    A name of letters, digits and `_` is used as is; any other name is sanitised (`_` for each other
    character) and gets `-` plus a short hash of the original, so `net.1`, `net-1` and `net_1` stay apart.
    """
    if _PLAIN_IFNAME.fullmatch(ifname):
        return ifname
    digest = hashlib.sha256(ifname.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", ifname)[:15] or "_"
    return f"{cleaned}-{digest}"


def ifname_literal(ifname: str) -> str:
    """The quoted interface name for `iifname`/`oifname` matches; raises InvalidInput on anything else."""
    if not _IFNAME_LITERAL.fullmatch(ifname) or ifname in (".", ".."):
        raise InvalidInput("interface", f"{ifname!r} is not an interface name")
    return f'"{ifname}"'


def base_chain(direction: Direction) -> str:
    """`ingress` or `egress`: the base chain of a direction."""
    return direction.value


def interface_chain(direction: Direction, ifname: str) -> str:
    """`ingress-net1`: the chain holding one isolated interface's rules in one direction."""
    return f"{direction.value}-{interface_token(ifname)}"


def ports_chain(direction: Direction, ifname: str, index: int) -> str:
    """`ingress-net1-p0`: a chain checking one set of allowed ports, shared by the addresses that have it."""
    return f"{interface_chain(direction, ifname)}-p{index}"


def address_map(direction: Direction, ifname: str, family: int) -> str:
    """`ingress-net1-v4-addr`: the hash map of exact peer addresses."""
    return f"{interface_chain(direction, ifname)}-v{family}-addr"


def network_map(direction: Direction, ifname: str, family: int) -> str:
    """`ingress-net1-v4-net`: the interval map of peer address ranges."""
    return f"{interface_chain(direction, ifname)}-v{family}-net"


def comment(text: str) -> str:
    """A safe comment body: unsafe characters become `_`, clamped to nft's limit (no quotes added)."""
    cleaned = _COMMENT_UNSAFE.sub("_", text.replace("\n", " "))
    if len(cleaned) > COMMENT_MAX:
        cleaned = cleaned[: COMMENT_MAX - 3] + "..."
    return cleaned


def rule_text_problem(text: str) -> str | None:
    """Why a verbatim rule line could break out of its chain, or None if it cannot.

    A line is spliced into a chain body; `;`, a newline or an unbalanced `}` would end the rule or the
    chain and let the rest of the line add objects of its own. Quotes are left to nft, but a quote
    must not hide a brace or `;` from this check, so both are refused inside quotes too.
    """
    if "\n" in text or "\r" in text:
        return "a newline ends the rule"
    if ";" in text:
        return "';' would end the rule"
    if "#" in text:
        return "'#' would comment out the rest of the chain line"
    depth = 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return "unbalanced '}' would close the chain"
    if depth:
        return "unbalanced '{'"
    if text.count('"') % 2:
        return "unbalanced '\"'"
    return None
