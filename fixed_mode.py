"""Fixed mode (#12): the operator's day and the delivery schedule.

Pure time arithmetic, no I/O but reading the server's zone name. Everything
stored is UTC; a "day" (for a client's daily limit) and the delivery times are
wall-clock times in the operator's time zone (the config's `time_zone`, else
the LNbits server's), converted with zoneinfo, so daylight saving changes move
neither the day boundary nor a delivery time.

Schedules (config `fixed_delivery`):
* `on_settlement`: a fixed client's allocation is paid as the settlement is
  split, like a flow client's (no `deliver_after`).
* `daily`: once a day at `fixed_delivery_time` ("HH:MM").
* `times_per_day`: `fixed_delivery_times` slots a day, evenly spaced from
  midnight (4: 00:00, 06:00, 12:00, 18:00).
A scheduled allocation waits until the first slot after the split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

try:  # messages.py is pure too; tests load this module on its own
    from .messages import text
except ImportError:  # pragma: no cover
    from messages import text  # type: ignore[no-redef]

UTC_ZONE = ZoneInfo("UTC")
ON_SETTLEMENT = "on_settlement"
DAILY = "daily"
TIMES_PER_DAY = "times_per_day"


@lru_cache(maxsize=1)
def server_time_zone() -> str:
    """The LNbits server's local zone as an IANA name (TZ, /etc/localtime,
    /etc/timezone), or UTC when it has none."""
    candidates = []
    if os.environ.get("TZ"):
        candidates.append(os.environ["TZ"].lstrip(":"))
    link = os.path.realpath("/etc/localtime")
    if "zoneinfo/" in link:
        candidates.append(link.split("zoneinfo/", 1)[1])
    try:
        with open("/etc/timezone") as file:
            candidates.append(file.read().strip())
    except OSError:
        pass
    for name in candidates:
        if name and _zone_or_none(name):
            return name
    return "UTC"


def _zone_or_none(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except Exception:
        return None


def zone_of(name: str | None) -> ZoneInfo:
    return _zone_or_none(name) or _zone_or_none(server_time_zone()) or UTC_ZONE


def as_utc(moment: datetime) -> datetime:
    """A moment in UTC. SQLite hands back naive datetimes (written in UTC).
    Here, not in models.py, so this module stays importable on its own (pure:
    the unit tests import it without the package); models re-exports it."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def day_bounds(moment: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The operator's day holding `moment`: [midnight, next midnight) local,
    in UTC."""
    local = as_utc(moment).astimezone(zone)
    start = datetime.combine(local.date(), time(0), tzinfo=zone)
    end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)
    return as_utc(start), as_utc(end)


@dataclass(frozen=True)
class Schedule:
    delivery: str = ON_SETTLEMENT
    at: str | None = None  # HH:MM, daily
    times: int | None = None  # slots a day, times_per_day
    zone: ZoneInfo = UTC_ZONE

    @classmethod
    def of(cls, config) -> Schedule:
        if config is None:
            return cls(zone=zone_of(None))
        return cls(
            config.fixed_delivery or ON_SETTLEMENT,
            config.fixed_delivery_time,
            config.fixed_delivery_times,
            zone_of(config.time_zone),
        )

    def slots_of_day(self, day: date) -> list[datetime]:
        """The delivery times of one local day, in UTC."""
        midnight = datetime.combine(day, time(0), tzinfo=self.zone)
        if self.delivery == DAILY and self.at:
            hours, minutes = (int(part) for part in self.at.split(":"))
            local = [midnight.replace(hour=hours, minute=minutes)]
        elif self.delivery == TIMES_PER_DAY and self.times:
            step = 24 * 60 // self.times
            local = [midnight + timedelta(minutes=k * step) for k in range(self.times)]
        else:
            return []
        # Wall-clock times; a time that does not exist that day (a DST gap)
        # is taken as zoneinfo reads it.
        return sorted(as_utc(moment) for moment in local)

    def next_slot(self, after: datetime) -> datetime | None:
        """The first delivery time strictly after `after` (None: deliver at
        once, as settlements are split)."""
        local_day = as_utc(after).astimezone(self.zone).date()
        for offset in (-1, 0, 1, 2):
            for slot in self.slots_of_day(local_day + timedelta(days=offset)):
                if slot > as_utc(after):
                    return slot
        return None


def schedule_error(delivery: str | None, at: str | None, times: int | None) -> str:
    """Why a schedule is incomplete, in the request's language ('' when it is
    fine)."""
    if delivery == DAILY and not at:
        return text("schedule.daily_needs_time")
    if delivery == TIMES_PER_DAY and not times:
        return text("schedule.times_needs_count")
    return ""


def slot_key(due: datetime) -> str:
    return "fixed:" + as_utc(due).strftime("%Y-%m-%dT%H:%M:%SZ")


def remaining_allowance(limit: Decimal, maximum: Decimal, used: Decimal) -> Decimal:
    """What a fixed client may still take today: its limit (at most the
    operator's maximum) less what today's fixed payouts already took."""
    return max(Decimal("0.00"), min(limit, maximum) - used)


@dataclass(frozen=True)
class FixedDay:
    """What the split needs to cap fixed-mode clients: the limit's currency
    (fixed clients take part only in settlements in it), the operator's day of
    the settlement (UTC bounds) and the operator's maximum daily limit."""

    currency: str
    start: datetime
    end: datetime
    maximum: Decimal


def fixed_day(config, moment: datetime) -> FixedDay:
    """The operator's day holding `moment`, for fixed-mode caps (`config` a
    LamassuConfig or None)."""
    from .models import DEFAULT_CLIENT_LIMIT

    start, end = day_bounds(moment, Schedule.of(config).zone)
    if config is None:
        return FixedDay("GTQ", start, end, DEFAULT_CLIENT_LIMIT)
    return FixedDay(config.limit_code, start, end, config.max_limit)
