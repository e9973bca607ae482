"""Which ``Host`` a request may name: the defence against DNS rebinding.

A page on another site can make a browser send requests to a server on the
user's machine by pointing its own domain name at 127.0.0.1 (DNS
rebinding). The browser then treats the dashboard as that site's own: the
``Origin`` check passes, and without authentication (``--no-auth``) nothing
else stands in the way. What gives it away is the ``Host`` header, which
names the attacker's domain. So the dashboard can be told which host names
it answers to; loopback names (``localhost``, ``127.0.0.1``, ``[::1]``)
are always among them, since only a page of this machine can send those.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from ..errors import InvalidOption


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 in brackets or not) is
    this machine's loopback."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host name of a ``Host`` header value, without its port, lower case."""
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8080
        return header[1 : header.find("]")] if "]" in header else header
    name, sep, port = header.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else header


class AllowedHosts:
    """The host names a dashboard answers to: loopback ones, and ``names``."""

    def __init__(self, names: Collection[str]) -> None:
        if isinstance(names, str):
            names = [names]
        chosen: set[str] = set()
        for name in names:
            if not isinstance(name, str) or not name.strip() or "/" in name:
                raise InvalidOption(f"an allowed host is a host name such as ops.example.com, not {name!r}")
            chosen.add(host_name(name).rstrip("."))
        self.names = frozenset(chosen)

    def allows(self, header: str | None) -> bool:
        """Whether a request whose ``Host`` header is ``header`` may be answered."""
        if not header:
            return False
        name = host_name(header)
        return is_loopback(name) or name.rstrip(".") in self.names
