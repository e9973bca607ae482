"""An example messaging service on jobq: k-msg's use case end to end.

An HTTP API (FastAPI) accepts single, bulk and scheduled sends and returns
message ids; jobs go out through a provider interface (a fake provider with
realistic latency and failures by default), each provider under its own
rate limit and circuit breaker; each delivery report is the job's result,
and the API reports every message's status. ``python -m examples.messaging``
serves it, ``python -m examples.messaging.load`` drives it (see README.md).
"""
