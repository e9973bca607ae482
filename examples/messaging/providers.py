"""Messaging providers: what sends a message, behind one small interface.

``MESSAGING_PROVIDER`` picks the implementation: ``fake`` (the default: a
provider with network-like latency, transient failures that a retry gets
past, numbers it rejects for good, and outages on demand) or ``console``
(prints each message, never fails). A real one (an SMS gateway's HTTP API)
implements :class:`Provider` the same way.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import dataclass
from typing import Protocol

from .config import Settings, settings


class ProviderError(Exception):
    """The provider could not take the message now; a retry may succeed."""


class Rejected(ProviderError):
    """The provider refuses this message for good (an invalid number)."""


@dataclass(frozen=True)
class Accepted:
    """The provider took the message."""

    provider_message_id: str


class Provider(Protocol):
    name: str

    async def send(self, to: str, body: str) -> Accepted: ...


class FakeProvider:
    """Log-normal latency around ``fake_latency`` with a long tail; transient
    failures (timeouts, HTTP 429/503) at ``fake_failure_rate``; numbers
    ending in 0000 rejected for good; every send failing while the provider
    is in ``fake_outage``."""

    def __init__(self, name: str, config: Settings) -> None:
        self.name = name
        self.config = config
        self.rng = random.Random()

    async def send(self, to: str, body: str) -> Accepted:
        median = self.config.fake_latency
        await asyncio.sleep(min(median * self.rng.lognormvariate(0, 0.5), 20 * median))
        if self.name in self.config.fake_outage:
            raise ProviderError(f"{self.name}: HTTP 503 service unavailable")
        if to.endswith("0000"):
            raise Rejected(f"{self.name}: invalid recipient number {to}")
        if self.rng.random() < self.config.fake_failure_rate:
            raise ProviderError(f"{self.name}: " + self.rng.choice(["timeout", "HTTP 429 too many requests", "HTTP 503"]))
        return Accepted(f"{self.name}-{secrets.token_hex(6)}")


class ConsoleProvider:
    """Prints each message and accepts it at once."""

    def __init__(self, name: str, config: Settings) -> None:
        self.name = name

    async def send(self, to: str, body: str) -> Accepted:
        print(f"[{self.name}] to {to}: {body}", flush=True)
        return Accepted(f"{self.name}-{secrets.token_hex(6)}")


IMPLEMENTATIONS: dict[str, type[FakeProvider] | type[ConsoleProvider]] = {
    "fake": FakeProvider,
    "console": ConsoleProvider,
}
_made: dict[str, Provider] = {}


def provider(name: str) -> Provider:
    """The provider called ``name``, of the implementation ``MESSAGING_PROVIDER`` names."""
    found = _made.get(name)
    if found is None:
        kind = IMPLEMENTATIONS.get(settings.provider)
        if kind is None:
            raise ValueError(f"MESSAGING_PROVIDER={settings.provider!r}; use one of {sorted(IMPLEMENTATIONS)}")
        found = _made[name] = kind(name, settings)
    return found
