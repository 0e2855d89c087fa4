"""The rule for failures, written once: retry what time can cure, isolate what it cannot.

- **Transient** failures (a connection refused or reset, a timeout, a broker that is not the
  leader, Postgres unavailable, read-only during a failover, a serialization conflict, another
  worker's concurrent write) are retried with backoff, for as long as they last: the consumer holds
  its position meanwhile, so nothing is lost and nothing is skipped.
- **Anything else** is a property of the data (or a bug it triggers): retrying would fail the same
  way for ever and halt every partition behind one record. The work is split in halves until the
  one item that fails alone is found (bisection); that item is rejected (a record is dead-lettered
  with the exception, a timer is marked failed), and the rest goes on. A batch of n items needs at
  most about 2 log2(n) extra attempts per bad item.

Used by the batch path (items: inbound records) and the wall-clock timer path (items: due timers).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, MessageSizeTooLargeError

from sinks.base import StaleRead

log = logging.getLogger(__name__)

RETRY_DELAYS_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

_TRANSIENT_POSTGRES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now, canceled
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # class 40: serialization failure, deadlock
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a replica during failover
    # A multi-host DATABASE_URL with target_session_attrs=read-write while no host is primary yet
    # (a standby being promoted): the failover will end.
    asyncpg.exceptions.TargetServerAttributeNotMatched,
)
# Refusals no retry can cure that come from the store or the broker rather than from our code:
# dead-lettered as "unstorable" rather than "processing_error".
UNSTORABLE: tuple[type[BaseException], ...] = (asyncpg.DataError, MessageSizeTooLargeError)

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure that retrying later can cure."""
    if isinstance(exc, StaleRead | OSError | TimeoutError | KafkaConnectionError | KafkaTimeoutError):
        return True
    if isinstance(exc, _TRANSIENT_POSTGRES):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        # "connection is closed", "pool is closing": the connection went away under us.
        return "clos" in str(exc)
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    return False


def rejection_reason(exc: BaseException) -> str:
    """The dead-letter reason for a record that fails for good: the store's or broker's refusal, or ours."""
    return "unstorable" if isinstance(exc, UNSTORABLE) else "processing_error"


_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_DIGIT_RUNS = re.compile(r"\+?\d[\d\s().-]{5,}\d")


def describe(exc: BaseException, limit: int = 2000) -> str:
    """The exception as one line for a dead letter, a timer row or a log line: bounded, no NUL, and
    with quoted values and long digit runs blanked, since messages (Postgres' among them) quote the
    offending input, which may be a phone number or a dispatcher's words."""
    text = _DIGIT_RUNS.sub("[digits]", _QUOTED.sub(lambda m: m.group(0)[0] * 2, str(exc)))
    return f"{type(exc).__name__}: {text}"[:limit].replace("\x00", "\ufffd")


async def _retry(stage: str, work: Callable[[], Awaitable[T]], on_retry: Callable[[str], None],
                 retriable: Callable[[BaseException], bool], level: int, consequence: str) -> T:
    attempt = 0
    while True:
        try:
            return await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not retriable(exc):
                raise
            delay = RETRY_DELAYS_SECONDS[min(attempt, len(RETRY_DELAYS_SECONDS) - 1)]
            attempt += 1
            on_retry(stage)
            log.log(level, "%s failed (attempt %d, %s); retrying in %.1f s%s", stage, attempt, describe(exc, 300),
                    delay, consequence)
            await asyncio.sleep(delay)


async def retry_transient(
    stage: str, work: Callable[[], Awaitable[T]], on_retry: Callable[[str], None] = lambda stage: None
) -> T:
    """Run ``work`` until it succeeds, retrying transient failures with backoff; raise anything else."""
    return await _retry(stage, work, on_retry, is_transient, logging.WARNING, "")


async def retry_always(
    stage: str, work: Callable[[], Awaitable[T]], on_retry: Callable[[str], None] = lambda stage: None
) -> T:
    """Run ``work`` until it succeeds, whatever fails: for work that no record can make fail (storing a
    dead letter, which is bounded and built by us), so a failure is the pipeline's own and skipping
    would lose data. Each failure is logged as critical and counted: the retries alert."""
    return await _retry(stage, work, on_retry, lambda exc: True, logging.CRITICAL, ": the partition waits")


async def isolate(
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], Awaitable[None]],
    reject: Callable[[T, Exception], Awaitable[None]],
) -> None:
    """Run ``attempt`` on all ``items``; when it fails for good, split until the failing item is found.

    ``attempt`` is expected to retry transient failures itself (``retry_transient``) and raise only
    permanent ones. Halves run in order, so the items keep their order; ``reject`` gets each item
    that fails alone, with its exception.
    """
    try:
        await attempt(items)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if len(items) == 1:
            await reject(items[0], exc)
            return
        log.warning("%d items failed together (%s): splitting to find the one that fails alone",
                    len(items), describe(exc, 300))
        middle = len(items) // 2
        await isolate(items[:middle], attempt, reject)
        await isolate(items[middle:], attempt, reject)
