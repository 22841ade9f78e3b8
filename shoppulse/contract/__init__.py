"""The event contract shared by the simulator (producer) and the drain (consumer).

* :mod:`shoppulse.contract.events` - pydantic models, one per event type (the readable definition,
  JSON Schema export, precise per-event error messages).
* :mod:`shoppulse.contract.schema` - the same contract as a Polars wire schema plus vectorized rules,
  used to decode and validate whole batches at once.

``docs/events.md`` documents it; ``tests/contract`` proves the two views agree.
"""

from shoppulse.contract.events import (
    CONTRACT_VERSION,
    CURRENCY_EXPONENTS,
    SCHEMA_VERSIONS,
    Event,
    EventType,
    parse_event,
)

__all__ = ["CONTRACT_VERSION", "CURRENCY_EXPONENTS", "SCHEMA_VERSIONS", "Event", "EventType", "parse_event"]
