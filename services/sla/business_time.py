"""Business-time arithmetic on calendars: pure functions of a calendar and UTC instants.

A calendar is open at an instant when the instant's *local wall-clock time* (in the calendar's
IANA zone) falls in one of the day's intervals and the local date is not a holiday. That single
definition settles daylight-saving time: on the spring-forward day the skipped wall times are
never open (a 09:00-17:00 shift that spans the gap is an hour shorter), and on the fall-back day
repeated wall times are open twice (the shift is an hour longer) — exactly what an agent on
that shift works. Everything here is computed from that rule, and the property tests check it
against a minute-by-minute brute force.

Instants are timezone-aware datetimes; results are in UTC.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

DAY = 86_400
# Local days are found from UTC instants shifted by at most ±14 h (the widest offsets in use),
# plus a margin for the DST shift itself.
_REACH = timedelta(hours=16)
# A calendar open less than this often is treated as never open (a misconfiguration, not a wait).
MAX_SEARCH_DAYS = 3 * 366


class NeverOpen(ValueError):
    """The calendar has no open time within MAX_SEARCH_DAYS of the start."""


@dataclass(frozen=True)
class Calendar:
    """Weekly open intervals in local wall time, holidays, and the zone that ties them to UTC.

    `weekly[d]` lists (start, end) seconds since local midnight for weekday d (Monday = 0),
    sorted and non-overlapping; end may be 86400 (midnight at the end of the day).
    `holidays` is resolved by the caller (explicit dates and/or the `holidays` package), so this
    module stays free of data lookups.
    """

    name: str
    zone: str
    weekly: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[date] = field(default_factory=frozenset, repr=False)

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError("weekly needs one entry per weekday, Monday first")
        for day in self.weekly:
            last = 0
            for start, end in day:
                if not 0 <= start < end <= DAY or start < last:
                    raise ValueError(f"intervals must be sorted, within a day, non-overlapping: "
                                     f"{day}")
                last = end
        ZoneInfo(self.zone)  # fails early on an unknown zone


CALENDAR_TIME = Calendar("24x7-utc", "UTC", ((((0, DAY),),) * 7))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return moment.astimezone(UTC)


# --- UTC offset transitions ------------------------------------------------------------------
@lru_cache(maxsize=256)
def _transitions(zone: str, year: int) -> tuple[tuple[datetime, ...], tuple[timedelta, ...]]:
    """Instants in [year-1 Dec 31, year+1 Jan 2) UTC where the zone's offset changes, and the
    offset in force from each (the first offset applies from the window's start).

    Found by hourly sampling and bisection to the second; zoneinfo exposes no transition list.
    Two transitions within one hour do not occur in the tz database for years we handle.
    """
    tz = ZoneInfo(zone)
    begin = datetime(year - 1, 12, 31, tzinfo=UTC)
    end = datetime(year + 1, 1, 2, tzinfo=UTC)

    def offset(t: datetime) -> timedelta:
        value = t.astimezone(tz).utcoffset()
        assert value is not None
        return value

    starts, offsets = [begin], [offset(begin)]
    t = begin
    while t < end:
        nxt = t + timedelta(hours=1)
        if offset(nxt) != offsets[-1]:
            lo, hi = t, nxt  # offset(lo) is the old one, offset(hi) the new one
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if mid <= lo:
                    break
                if offset(mid) == offsets[-1]:
                    lo = mid
                else:
                    hi = mid
            starts.append(hi)
            offsets.append(offset(hi))
        t = nxt
    return tuple(starts), tuple(offsets)


def _pieces(zone: str, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime, timedelta]]:
    """[lo, hi) UTC split into pieces of constant UTC offset."""
    out: list[tuple[datetime, datetime, timedelta]] = []
    for year in range(lo.year, hi.year + 1):
        starts, offsets = _transitions(zone, year)
        y_lo = max(lo, datetime(year, 1, 1, tzinfo=UTC))
        y_hi = min(hi, datetime(year + 1, 1, 1, tzinfo=UTC))
        if y_lo >= y_hi:
            continue
        i = bisect.bisect_right(starts, y_lo) - 1
        while i < len(starts) and starts[i] < y_hi:
            p_lo = max(y_lo, starts[i])
            p_hi = min(y_hi, starts[i + 1]) if i + 1 < len(starts) else y_hi
            if p_lo < p_hi:
                out.append((p_lo, p_hi, offsets[i]))
            i += 1
    return out


# --- open segments of a local day ------------------------------------------------------------
@lru_cache(maxsize=65_536)
def day_segments(calendar: Calendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """The UTC segments during which the calendar is open on local date `day`, in order.

    A local interval [s, e) of that date is open at UTC instant t when t has offset o and
    day+s <= t+o < day+e; per piece of constant offset that is the UTC segment [day+s-o, day+e-o).
    """
    if day in calendar.holidays:
        return ()
    intervals = calendar.weekly[day.weekday()]
    if not intervals:
        return ()
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)  # local midnight, as naive UTC
    pieces = _pieces(calendar.zone, midnight - _REACH, midnight + timedelta(days=1) + _REACH)
    segments: list[tuple[datetime, datetime]] = []
    for p_lo, p_hi, off in pieces:
        for start, end in intervals:
            s = max(p_lo, midnight + timedelta(seconds=start) - off)
            e = min(p_hi, midnight + timedelta(seconds=end) - off)
            if s < e:
                segments.append((s, e))
    segments.sort()
    return tuple(_merge(segments))


def _merge(segments: list[tuple[datetime, datetime]]) -> Iterator[tuple[datetime, datetime]]:
    current: tuple[datetime, datetime] | None = None
    for s, e in segments:
        if current and s <= current[1]:
            current = (current[0], max(current[1], e))
        else:
            if current:
                yield current
            current = (s, e)
    if current:
        yield current


def _local_date(calendar: Calendar, moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(calendar.zone)).date()


def _segments_from(
    calendar: Calendar, moment: datetime, until: datetime | None = None
) -> Iterator[tuple[datetime, datetime]]:
    """Open segments ending after `moment`, clipped to start no earlier than it, in order;
    up to `until` if given, else for at most MAX_SEARCH_DAYS days.

    Starting one local day early and clipping is harmless and keeps the walk simple.
    """
    day = _local_date(calendar, moment) - timedelta(days=1)
    last_end = moment
    # Counted in local days, through the local day of `until` (and one more): across a change to
    # summer time, six days and 23 hours of UTC can end on the seventh local day.
    days = MAX_SEARCH_DAYS if until is None else (_local_date(calendar, until) - day).days + 2
    for _ in range(days):
        for s, e in day_segments(calendar, day):
            s = max(s, last_end)
            if s < e:
                yield s, e
                last_end = e
        day += timedelta(days=1)


# --- the arithmetic --------------------------------------------------------------------------
def is_open(calendar: Calendar, moment: datetime) -> bool:
    moment = _utc(moment)
    day = _local_date(calendar, moment)
    return any(s <= moment < e for d in (day - timedelta(days=1), day)
               for s, e in day_segments(calendar, d))


def add(calendar: Calendar, start: datetime, seconds: float) -> datetime:
    """The first instant by which `seconds` of business time have passed since `start`.

    `add(c, t, 0) == t`. For seconds > 0 the result is always inside or at the end of an open
    segment, never at the start of the next one.
    """
    start = _utc(start)
    if seconds <= 0:
        return start
    left = timedelta(seconds=seconds)
    for s, e in _segments_from(calendar, start):
        if e - s >= left:
            return s + left
        left -= e - s
    raise NeverOpen(f"calendar {calendar.name} has no open time within {MAX_SEARCH_DAYS} days")


def between(calendar: Calendar, start: datetime, end: datetime) -> float:
    """Business seconds in [start, end); negative when end is before start."""
    start, end = _utc(start), _utc(end)
    if end < start:
        return -between(calendar, end, start)
    total = timedelta()
    for s, e in _segments_from(calendar, start, until=end):
        if s >= end:
            break
        total += min(e, end) - s
    return total.total_seconds()


def next_open(calendar: Calendar, moment: datetime) -> datetime:
    """`moment` if the calendar is open then, else the start of the next open segment."""
    for s, _ in _segments_from(calendar, _utc(moment)):
        return s
    raise NeverOpen(f"calendar {calendar.name} has no open time within {MAX_SEARCH_DAYS} days")
