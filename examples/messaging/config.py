"""The service's settings, read from the environment once.

| variable | default | meaning |
|---|---|---|
| ``JOBQ_URL`` | ``sqlite:///messaging.db`` | the queue's database |
| ``MESSAGING_PROVIDER`` | ``fake`` | the provider implementation: ``fake`` or ``console`` |
| ``MESSAGING_PROVIDERS`` | ``sms-a,sms-b,kakao`` | the provider names a message may name |
| ``MESSAGING_RATE`` | ``50`` | sends per second per provider, across every worker |
| ``MESSAGING_CONCURRENCY`` | ``32`` | sends in flight per worker |
| ``MESSAGING_WORKER`` | ``1`` | ``0``: the API runs no worker (run ``jobq worker`` beside it) |
| ``MESSAGING_RETRY_BASE`` | ``0.5`` | seconds before the first retry; doubling, 4 attempts in all |
| ``MESSAGING_BREAKER_THRESHOLD`` | ``5`` | failures in a row that open a provider's circuit |
| ``MESSAGING_BREAKER_RESET`` | ``30`` | seconds an open circuit waits before a trial send |
| ``MESSAGING_FAKE_LATENCY`` | ``0.04`` | the fake provider's median latency, seconds |
| ``MESSAGING_FAKE_FAILURE_RATE`` | ``0.05`` | its share of transient failures |
| ``MESSAGING_FAKE_OUTAGE`` | (none) | providers (comma-separated) whose every send fails |
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True)
class Settings:
    url: str
    provider: str
    providers: tuple[str, ...]
    rate: int
    concurrency: int
    worker: bool
    retry_base: float
    breaker_threshold: int
    breaker_reset: float
    fake_latency: float
    fake_failure_rate: float
    fake_outage: frozenset[str]

    @classmethod
    def from_environment(cls) -> Settings:
        env = os.environ.get
        return cls(
            url=env("JOBQ_URL", "sqlite:///messaging.db"),
            provider=env("MESSAGING_PROVIDER", "fake"),
            providers=_names(env("MESSAGING_PROVIDERS", "sms-a,sms-b,kakao")),
            rate=int(env("MESSAGING_RATE", "50")),
            concurrency=int(env("MESSAGING_CONCURRENCY", "32")),
            worker=env("MESSAGING_WORKER", "1") != "0",
            retry_base=float(env("MESSAGING_RETRY_BASE", "0.5")),
            breaker_threshold=int(env("MESSAGING_BREAKER_THRESHOLD", "5")),
            breaker_reset=float(env("MESSAGING_BREAKER_RESET", "30")),
            fake_latency=float(env("MESSAGING_FAKE_LATENCY", "0.04")),
            fake_failure_rate=float(env("MESSAGING_FAKE_FAILURE_RATE", "0.05")),
            fake_outage=frozenset(_names(env("MESSAGING_FAKE_OUTAGE", ""))),
        )


settings = Settings.from_environment()
