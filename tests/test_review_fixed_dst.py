"""Adversarial review: delivery slots and the operator's day across daylight
saving changes, in zones where the change happens at 00:00 (Santiago,
Havana: that midnight does not exist), at 02:00 (New York, London) and by
half an hour (Lord Howe): every 7 minutes of the days around each change
of 2026, and the whole year's days. The next slot is
always strictly later than now and never more than a day (plus the change)
away, a slot never repeats (one key per slot), and the operator's days tile
the year without a gap or an overlap. Pure: held, no change needed."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fixed_mode import Schedule, day_bounds, slot_key

ZONES = [
    "America/New_York",
    "America/Santiago",
    "America/Havana",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Guatemala",
]
SCHEDULES = [
    ("daily", "00:00", None),
    ("daily", "01:30", None),
    ("daily", "02:30", None),
    ("times_per_day", None, 24),
    ("times_per_day", None, 7),
]
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
END = datetime(2027, 1, 1, tzinfo=timezone.utc)


def _changes(tz: ZoneInfo) -> list[datetime]:
    """Noon UTC of each day of 2026 whose offset differs from the day
    before's."""
    days = [START + timedelta(days=d, hours=12) for d in range(366)]
    return [
        day
        for before, day in pairwise(days)
        if before.astimezone(tz).utcoffset() != day.astimezone(tz).utcoffset()
    ]


@pytest.mark.parametrize("zone", ZONES)
def test_slots_and_days_across_daylight_saving(zone):
    tz = ZoneInfo(zone)
    changes = _changes(tz)
    assert len(changes) == (0 if zone == "America/Guatemala" else 2)
    for delivery, at, times in SCHEDULES:
        schedule = Schedule(delivery, at, times, tz)
        most = timedelta(hours=25.5 if delivery == "daily" else 24 / times + 1.5)
        for change in changes or [START + timedelta(days=100)]:
            moment, end = change - timedelta(days=2), change + timedelta(days=2)
            seen: set[str] = set()
            while moment < end:
                due = schedule.next_slot(moment)
                assert due is not None and moment < due <= moment + most, (
                    schedule,
                    moment,
                    due,
                )
                seen.add(slot_key(due))
                moment += timedelta(minutes=7)
            per_day = 1 if delivery == "daily" else times
            # One key per slot: never two for one slot (5 days' worth at most).
            assert len(seen) <= 5 * per_day
    moment = START + timedelta(hours=12)
    while moment < END:
        start, end = day_bounds(moment, tz)
        assert start <= moment < end
        assert day_bounds(end, tz)[0] == end  # the next day starts there
        moment += timedelta(days=1)
