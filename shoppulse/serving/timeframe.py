"""Local-date windows in an IANA time zone and their buckets, as UTC instants.

`from`/`to` are local calendar dates in `tz`, both inclusive: the window is
[local midnight of `from`, local midnight of the day after `to`). All time-zone arithmetic happens
here, in Python's zoneinfo; SQL only receives UTC instants (bucket boundaries), so a 23- or 25-hour
day, a :30/:45 offset or a DST change in the middle of a week needs no special case downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, available_timezones

from shoppulse.serving.errors import InvalidParameterError

MIN_DATE = date(2000, 1, 1)
MAX_DATE = date(2099, 12, 31)
GRID = timedelta(minutes=15)
"""The finest grain of the serving tables: every bucket boundary is a multiple of it in UTC."""


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


MAX_DAYS: dict[Granularity, int] = {
    Granularity.HOUR: 31,
    Granularity.DAY: 366,
    Granularity.WEEK: 366,
    Granularity.MONTH: 366,
}
"""Longest window (in local days) a request may ask for, per bucket granularity."""

MAX_RANGE_DAYS = 366
"""Longest window of every endpoint that returns one row per day or a single aggregate."""


@cache
def time_zone_names() -> frozenset[str]:
    """IANA zone names this process knows (the allow-list for `tz`)."""
    return frozenset(available_timezones()) | {"UTC"}


def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an allow-listed IANA name, else InvalidParameterError naming `tz`."""
    if name not in time_zone_names():
        raise InvalidParameterError(
            "tz", f"unknown IANA time zone {name[:64]!r}; use a name like 'Europe/Berlin' or 'UTC'"
        )
    return ZoneInfo(name)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant (UTC) of a local calendar day; a skipped midnight maps to the end of the gap."""
    return datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)


def today(now: datetime, tz: ZoneInfo) -> date:
    return now.astimezone(tz).date()


def next_local_midnight(now: datetime, tz: ZoneInfo) -> datetime:
    return local_midnight(today(now, tz) + timedelta(days=1), tz)


@dataclass(frozen=True)
class Window:
    """Local dates `first`..`last` (inclusive) in `tz`, and the UTC instants [start, end) they cover."""

    tz: str
    first: date
    last: date
    start: datetime
    end: datetime

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def utc_dates(self) -> tuple[date, date]:
        """First and last UTC date (= serving-table partition) the window touches."""
        return self.start.date(), (self.end - timedelta(microseconds=1)).date()

    def previous(self) -> Window:
        """The window of the same number of days that ends the day before this one starts."""
        first = self.first - timedelta(days=self.days)
        if first < MIN_DATE:
            raise InvalidParameterError("compare", f"the previous period would start before {MIN_DATE.isoformat()}")
        return build_window(self.tz, first, self.first - timedelta(days=1))


def build_window(tz: str, first: date, last: date) -> Window:
    """A validated window (dates assumed inside MIN_DATE..MAX_DATE, first <= last)."""
    tzinfo = zone(tz)
    return Window(tz, first, last, local_midnight(first, tzinfo), local_midnight(last + timedelta(days=1), tzinfo))


def resolve_dates(
    first: date | None,
    last: date | None,
    *,
    now: datetime,
    tz: ZoneInfo,
    max_days: int,
    default_days: int,
) -> tuple[date, date, bool]:
    """Apply defaults and caps to `from`/`to`; returns (first, last, relative-to-today?).

    `to` defaults to today in `tz`, `from` to `default_days` days ending with `to`.
    """
    for name, value in (("from", first), ("to", last)):
        if value is not None and not MIN_DATE <= value <= MAX_DATE:
            raise InvalidParameterError(name, f"must be between {MIN_DATE.isoformat()} and {MAX_DATE.isoformat()}")
    relative = last is None or first is None
    if last is None:
        last = today(now, tz)
    if first is None:
        first = max(MIN_DATE, last - timedelta(days=default_days - 1))
    if first > last:
        raise InvalidParameterError("from", f"must be on or before `to` ({last.isoformat()})")
    days = (last - first).days + 1
    if days > max_days:
        raise InvalidParameterError("to", f"`from`..`to` spans {days} days; at most {max_days} are allowed here")
    return first, last, relative


@dataclass(frozen=True)
class Bucket:
    """One output bucket: its label and the UTC instants [start, end) it covers (clipped to the window)."""

    label: str
    start: datetime
    end: datetime


def buckets(window: Window, granularity: Granularity) -> tuple[Bucket, ...]:
    """Consecutive buckets covering the window exactly (gap-filling is free: every bucket is listed)."""
    return _buckets(window.tz, window.first, window.last, granularity)


@lru_cache(maxsize=512)
def _buckets(tz: str, first: date, last: date, granularity: Granularity) -> tuple[Bucket, ...]:
    tzinfo = zone(tz)
    end = local_midnight(last + timedelta(days=1), tzinfo)
    if granularity is Granularity.HOUR:
        starts = _local_hour_starts(local_midnight(first, tzinfo), end, tzinfo)
        labels = [start.astimezone(tzinfo).isoformat() for start in starts]
    else:
        period_starts = _period_starts(first, last, granularity)
        starts = [local_midnight(day, tzinfo) for day in period_starts]
        labels = [_period_label(day, granularity) for day in period_starts]
    ends = [*starts[1:], end]
    return tuple(Bucket(label, start, stop) for label, start, stop in zip(labels, starts, ends, strict=True))


def _local_hour_starts(start: datetime, end: datetime, tz: ZoneInfo) -> list[datetime]:
    """Instants at which a local hour begins: 23 on a spring-forward day, 25 on a fall-back day."""
    starts = [start]
    instant = start + GRID
    while instant < end:
        if instant.astimezone(tz).minute == 0:
            starts.append(instant)
        instant += GRID
    return starts


def _period_starts(first: date, last: date, granularity: Granularity) -> list[date]:
    if granularity is Granularity.DAY:
        return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    starts = [first]
    day = first + timedelta(days=1)
    while day <= last:
        if (granularity is Granularity.WEEK and day.weekday() == 0) or (
            granularity is Granularity.MONTH and day.day == 1
        ):
            starts.append(day)
        day += timedelta(days=1)
    return starts


def _period_label(day: date, granularity: Granularity) -> str:
    """Day: the date; week: the Monday that starts its ISO week; month: the 1st (even when clipped)."""
    if granularity is Granularity.WEEK:
        return (day - timedelta(days=day.weekday())).isoformat()
    if granularity is Granularity.MONTH:
        return day.replace(day=1).isoformat()
    return day.isoformat()


def utc_day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


@dataclass(frozen=True)
class ResolvedWindow:
    """A window plus when it goes stale by itself (next local midnight, if its dates default to today)."""

    window: Window
    expires: datetime | None


def resolve_window(
    now: datetime, first: date | None, last: date | None, tz: str, *, max_days: int, default_days: int
) -> ResolvedWindow:
    """Validate `tz`, `from`, `to` (defaults, caps) into a window."""
    tzinfo = zone(tz)
    first, last, relative = resolve_dates(first, last, now=now, tz=tzinfo, max_days=max_days, default_days=default_days)
    return ResolvedWindow(build_window(tz, first, last), next_local_midnight(now, tzinfo) if relative else None)
