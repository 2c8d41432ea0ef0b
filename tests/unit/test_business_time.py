"""Business-time arithmetic against a brute-force minute-by-minute reference.

The reference knows nothing of segments, offsets or transitions: it converts each UTC minute to
local time and asks "is the local date a working day and the local time inside an interval?".
Calendars, zones (with DST in both hemispheres, half-hour and 45-minute offsets, Lord Howe's
half-hour DST), holidays and starts near DST transitions are drawn at random.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.sla import business_time as bt
from services.sla.business_time import Calendar

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe",
         "Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", "America/St_Johns",
         "America/Sao_Paulo", "UTC", "Europe/London", "Pacific/Auckland"]
MINUTE = timedelta(minutes=1)


def brute_open(cal: Calendar, minute: datetime) -> bool:
    local = minute.astimezone(ZoneInfo(cal.zone))
    if local.date() in cal.holidays:
        return False
    second = local.hour * 3600 + local.minute * 60 + local.second
    return any(s <= second < e for s, e in cal.weekly[local.weekday()])


def brute_between(cal: Calendar, a: datetime, b: datetime) -> int:
    """Open minutes in [a, b), both on whole minutes."""
    count, t = 0, a
    while t < b:
        count += brute_open(cal, t)
        t += MINUTE
    return count


def brute_add(cal: Calendar, a: datetime, minutes: int) -> datetime:
    t, left = a, minutes
    while left:
        if brute_open(cal, t):
            left -= 1
        t += MINUTE
    return t


def transitions_of(zone: str, year: int) -> list[datetime]:
    """Instants where the zone's offset changes, found hour by hour (independently of bt)."""
    tz, out = ZoneInfo(zone), []
    t = datetime(year, 1, 1, tzinfo=UTC)
    while t.year == year:
        if t.astimezone(tz).utcoffset() != (t + timedelta(hours=1)).astimezone(tz).utcoffset():
            out.append(t)
        t += timedelta(hours=1)
    return out


# Interval boundaries on 15-minute steps keep examples readable; offsets of 30 and 45 minutes
# still cut through them.
def intervals() -> st.SearchStrategy[tuple[tuple[int, int], ...]]:
    def build(points: list[int]) -> tuple[tuple[int, int], ...]:
        pts = sorted(set(points))
        return tuple((pts[i], pts[i + 1]) for i in range(0, len(pts) - 1, 2))
    return st.lists(st.integers(0, 96).map(lambda q: q * 900), max_size=6).map(build)


@st.composite
def calendars(draw: st.DrawFn) -> tuple[Calendar, datetime]:
    zone = draw(st.sampled_from(ZONES))
    weekly = tuple(draw(intervals()) for _ in range(7))
    if not any(weekly):
        weekly = (((9 * 3600, 17 * 3600),), *weekly[1:])
    year = draw(st.integers(2024, 2027))
    near = transitions_of(zone, year) or [datetime(year, 6, 1, tzinfo=UTC)]
    anchor = draw(st.sampled_from(near))
    start = anchor + timedelta(minutes=draw(st.integers(-3 * 1440, 2 * 1440)))
    start = start.replace(second=0, microsecond=0)
    local_day = start.astimezone(ZoneInfo(zone)).date()
    holidays = frozenset(local_day + timedelta(days=d)
                         for d in draw(st.lists(st.integers(-1, 6), max_size=3)))
    return Calendar("random", zone, weekly, holidays), start


@settings(max_examples=150, deadline=None)
@given(calendars(), st.integers(0, 4 * 1440))
def test_between_counts_the_open_minutes(case: tuple[Calendar, datetime], span: int) -> None:
    cal, start = case
    end = start + span * MINUTE
    assert bt.between(cal, start, end) == 60 * brute_between(cal, start, end)
    assert bt.between(cal, end, start) == -bt.between(cal, start, end)


@settings(max_examples=150, deadline=None)
@given(calendars(), st.integers(0, 1500))
def test_add_stops_at_the_end_of_the_nth_open_minute(case: tuple[Calendar, datetime],
                                                     minutes: int) -> None:
    cal, start = case
    # Keep the brute force short: skip targets that would walk past the holidays for weeks.
    if 60 * minutes > bt.between(cal, start, start + timedelta(days=9)):
        return
    assert bt.add(cal, start, 60 * minutes) == brute_add(cal, start, minutes)


@settings(max_examples=150, deadline=None)
@given(calendars(), st.floats(0, 5 * 86_400), st.floats(0, 86_400))
def test_add_and_between_are_inverse(case: tuple[Calendar, datetime], seconds: float,
                                     jitter: float) -> None:
    cal, start = case
    start += timedelta(seconds=jitter)
    due = bt.add(cal, start, seconds)
    assert abs(bt.between(cal, start, due) - seconds) < 1e-3
    if seconds > 0:  # the due instant is the first one: a moment earlier is not enough
        assert bt.between(cal, start, due - timedelta(milliseconds=1)) < seconds


def test_between_counts_an_open_segment_a_week_on_across_the_change_to_summer_time() -> None:
    """Open Saturdays 00:00-00:15 only, from Saturday 23:59 before the clocks go forward: the
    next open second is on the seventh local day, six days and 23 hours of UTC later."""
    cal = Calendar("saturdays", "Europe/Berlin", ((), (), (), (), (), ((0, 900),), ()))
    start = datetime(2024, 3, 30, 22, 59, tzinfo=UTC)
    due = bt.add(cal, start, 1)
    assert due == datetime(2024, 4, 5, 22, 0, 1, tzinfo=UTC)
    assert bt.between(cal, start, due) == 1


def test_is_open_matches_the_reference_at_every_minute_of_a_dst_week() -> None:
    cal = Calendar("berlin", "Europe/Berlin", (((0, 3 * 3600), (9 * 3600, 17 * 3600)),) * 7)
    t = datetime(2026, 10, 23, tzinfo=UTC)
    while t < datetime(2026, 10, 27, tzinfo=UTC):
        assert bt.is_open(cal, t) == brute_open(cal, t), t
        t += timedelta(minutes=7)


# --- worked examples a supervisor can check by hand ------------------------------------------
BERLIN_SPLIT = Calendar(
    "berlin-split", "Europe/Berlin",
    (((9 * 3600, 12 * 3600 + 1800), (13 * 3600 + 1800, 18 * 3600)),) * 5 + ((), ()),
    frozenset({date(2026, 12, 24), date(2026, 12, 25)}),
)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo("Europe/Berlin"))  # type: ignore[arg-type,misc]


def test_a_lunch_break_and_a_weekend_do_not_count() -> None:
    # Friday 17:00 + 2 h: one hour on Friday, then Monday 09:00 + 1 h.
    assert bt.add(BERLIN_SPLIT, berlin(2026, 11, 20, 17), 7200) == berlin(2026, 11, 23, 10)
    # 12:00 + 1 h: 30 minutes before lunch, 30 after.
    assert bt.add(BERLIN_SPLIT, berlin(2026, 11, 24, 12), 3600) == berlin(2026, 11, 24, 14)


def test_holidays_are_skipped() -> None:
    # Wednesday 23 Dec 17:00 + 2 h: Thursday and Friday are holidays, the weekend is closed.
    assert bt.add(BERLIN_SPLIT, berlin(2026, 12, 23, 17), 7200) == berlin(2026, 12, 28, 10)


def test_the_spring_forward_night_is_an_hour_short_and_the_fall_back_night_an_hour_long() -> None:
    night = Calendar("night", "Europe/Berlin", (((0, 4 * 3600),),) * 7)
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)
    for day, hours in ((spring, 3), (autumn, 5), (date(2026, 6, 1), 4)):
        segments = bt.day_segments(night, day)
        assert sum((e - s for s, e in segments), timedelta()) == timedelta(hours=hours)


def test_next_open_and_is_open() -> None:
    assert not bt.is_open(BERLIN_SPLIT, berlin(2026, 11, 24, 13))
    assert bt.next_open(BERLIN_SPLIT, berlin(2026, 11, 24, 13)) == berlin(2026, 11, 24, 13, 30)
    assert bt.is_open(BERLIN_SPLIT, berlin(2026, 11, 24, 13, 30))
