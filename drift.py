"""The drift alarm: cash in the machines that no tracked balance covers.

The seed incident was a drift: cash in the machine that no client balance
covered, found only when a large cash-out spent it. Per currency:

* tracked: the sum of every client's balance (confirmed deposits - confirmed
  payouts, the figure the client extension shows);
* machine cash: what the ATMs report holding in their dispensers:
  - Lamassu: `devices.cassette1..4` (and `recycler1..6` on newer servers)
    counts x the denominations in Lamassu's config (`cashOut_<device>_cassetteN`
    / `..._recyclerN`, from the newest `user_config` row of type 'config'),
    in the machine's fiat currency (`locale_fiatCurrency`, or the machine's
    override); read on the recovery pass, at most every few minutes;
  - bitSpire: `cassettes` in the newest settlement's metadata of each machine
    (`machine_npub`), parsed strictly (an untrusted claim: bounded, whole
    counts, positive denominations; anything else and the machine is shown
    as unreadable, never guessed);
* untracked = machine cash - tracked: the operator's own float plus any
  deposit never recorded. The alert fires above a threshold the operator sets
  (say, their own float);
* orphan fiat per week (orphans are the symptom of the same drift), charted,
  and alerted when the last 7 days pass a threshold.

A machine whose cash cannot be read says why: `error` in English and
`error_msg` (a Message), rendered in the reader's language by the API.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from loguru import logger

from .allocation import to_fiat
from .crud import S, db
from .messages import Message, MessageError
from .models import LamassuConfig, moment_utc, utc_now

MAX_CASSETTES = 16
MAX_DENOMINATION = Decimal("1000000")
MAX_COUNT = 100_000
LAMASSU_REFRESH = timedelta(minutes=5)
WEEKS = 12
BITSPIRE_SCAN = 500
CURRENCY = re.compile(r"^[A-Z]{3}$")

# The last reading of the Lamassu machines (this process).
lamassu_cash: dict[str, Any] = {"machines": None, "read_at": None, "error": None}


def parse_denomination(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise MessageError("drift.denomination_not_number")
    if len(str(value)) > 20:
        raise MessageError("drift.denomination_not_number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise MessageError("drift.denomination_not_number") from exc
    if not number.is_finite() or number <= 0 or number > MAX_DENOMINATION:
        raise MessageError("drift.denomination_out_of_range")
    if number != number.quantize(Decimal("0.01")):
        raise MessageError("drift.denomination_decimals")
    return number


def parse_count(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise MessageError("drift.count_invalid")
    return value


def parse_cassettes(raw: Any) -> list[dict[str, Any]]:
    """bitSpire's `cassettes`: a list of {denomination, count} (at most 16).
    Raises MessageError (a ValueError) on anything else."""
    if not isinstance(raw, list) or not raw or len(raw) > MAX_CASSETTES:
        raise MessageError("drift.cassettes_list")
    out = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise MessageError("drift.cassette_entry")
        out.append(
            {
                "denomination": parse_denomination(entry.get("denomination")),
                "count": parse_count(entry.get("count")),
            }
        )
    return out


def _machine(
    source: str,
    machine: str,
    name: str | None,
    currency: str | None,
    cassettes: list[dict[str, Any]] | None,
    reported_at: datetime | None,
    error: Message | None = None,
) -> dict[str, Any]:
    total = (
        to_fiat(sum((c["denomination"] * c["count"] for c in cassettes), Decimal(0)))
        if cassettes is not None and error is None
        else None
    )
    return {
        "source": source,
        "machine": machine[:100],
        "name": (name or "")[:100] or None,
        "currency": currency,
        "cassettes": cassettes or [],
        "total": total,
        "reported_at": reported_at,
        "error": error.render("en") if error else None,
        "error_msg": error,
    }


# ------------------------------------------------------------------- Lamassu


def lamassu_machines(
    devices: list[dict[str, Any]], config: dict[str, Any]
) -> list[dict[str, Any]]:
    """Machines from Lamassu's `devices` rows and config (pure)."""
    default_currency = config.get("locale_fiatCurrency")
    overrides = config.get("locale_overrides")
    per_machine: dict[str, str] = {}
    if isinstance(overrides, list):
        for entry in overrides:
            if isinstance(entry, dict) and isinstance(entry.get("machine"), str):
                if isinstance(entry.get("fiatCurrency"), str):
                    per_machine[entry["machine"]] = entry["fiatCurrency"]
    machines = []
    for row in devices:
        device = str(row["device_id"])
        currency = per_machine.get(device, default_currency)
        if not isinstance(currency, str) or not CURRENCY.match(currency):
            currency = None
        cassettes: list[dict[str, Any]] = []
        error: Message | None = None
        try:
            for unit, number_key, most in (
                ("cassette", "number_of_cassettes", 4),
                ("recycler", "number_of_recyclers", 6),
            ):
                present = [i for i in range(1, most + 1) if f"{unit}{i}" in row]
                if number_key in row and row[number_key] is not None:
                    present = [i for i in present if i <= int(row[number_key])]
                for i in present:
                    count = row[f"{unit}{i}"]
                    if count is None:
                        continue
                    count = parse_count(int(count))
                    denomination = config.get(f"cashOut_{device}_{unit}{i}")
                    if denomination is None or denomination == 0:
                        if count:
                            raise MessageError(
                                "drift.no_denomination", unit=f"{unit}{i}"
                            )
                        continue
                    cassettes.append(
                        {
                            "unit": f"{unit}{i}",
                            "denomination": parse_denomination(denomination),
                            "count": count,
                        }
                    )
        except MessageError as exc:
            error = exc.message
        except (ValueError, TypeError) as exc:
            error = Message("drift.unreadable_cassettes", {"error": str(exc)[:300]})
        if currency is None and error is None:
            error = Message("drift.no_currency")
        machines.append(
            _machine(
                "lamassu", device, row.get("name"), currency, cassettes, None, error
            )
        )
    return machines


async def refresh_lamassu_cash(
    config: LamassuConfig | None, force: bool = False
) -> None:
    """Read the Lamassu machines' cassettes (within the recovery pass's
    session when there is one). Never raises."""
    if not config or not config.is_active or not config.lamassu_configured:
        lamassu_cash.update(machines=None, read_at=None, error=None)
        return
    now = utc_now()
    read_at = lamassu_cash["read_at"]
    if not force and read_at and now - read_at < LAMASSU_REFRESH:
        return
    from .lamassu_source import _client_for

    try:
        async with _client_for(config) as client:
            devices, lamassu_config = await client.cash_units()
        machines = lamassu_machines(devices, lamassu_config)
        for machine in machines:
            machine["reported_at"] = now
        lamassu_cash.update(machines=machines, read_at=now, error=None)
    except Exception as exc:
        lamassu_cash.update(read_at=now, error=str(exc)[:300])
        logger.warning(f"satmachineadmin: Lamassu cassette read failed: {exc}")


# ------------------------------------------------------------------- bitSpire


async def _bitspire_reports(seen: set[str]) -> AsyncIterator[Any]:
    """bitSpire settlements that tell cassettes, newest first, BITSPIRE_SCAN
    per query, until every machine that ever told them is in `seen` (a quiet
    machine's last report may be older than the busy ones' last
    BITSPIRE_SCAN: it used to be left out) or there are no more."""
    where = (
        f"FROM {S}.settlements WHERE data_source = 'bitspire' "
        "AND device_id IS NOT NULL AND cash_out_data LIKE :told"
    )
    told = '%"cassettes"%'
    devices = {
        str(row["device_id"])
        for row in await db.fetchall(
            f"SELECT DISTINCT device_id {where}", {"told": told}
        )
    }
    offset = 0
    while not devices <= seen:
        rows = await db.fetchall(
            f"SELECT device_id, fiat_code, paid_at, cash_out_data {where} "
            "ORDER BY paid_at DESC, id DESC LIMIT :limit OFFSET :offset",
            {"limit": BITSPIRE_SCAN, "offset": offset, "told": told},
        )
        for row in rows:
            yield row
        if len(rows) < BITSPIRE_SCAN:
            return
        offset += len(rows)


async def bitspire_machines() -> list[dict[str, Any]]:
    """Each bitSpire machine's newest report of its cassettes."""
    seen: set[str] = set()
    machines: list[dict[str, Any]] = []
    async for row in _bitspire_reports(seen):
        device = str(row["device_id"])
        if device in seen:
            continue
        try:
            stored = json.loads(row["cash_out_data"] or "{}")
            extra = stored.get("payment_extra") if isinstance(stored, dict) else None
        except ValueError:
            extra = None
        if not isinstance(extra, dict) or "cassettes" not in extra:
            continue  # this report has none: an older one may
        seen.add(device)
        currency = row["fiat_code"]
        error: Message | None = None
        try:
            cassettes = parse_cassettes(extra["cassettes"])
        except ValueError as exc:
            cassettes = []
            why = exc.message if isinstance(exc, MessageError) else str(exc)[:300]
            error = Message("drift.unreadable_cassettes", {"error": why})
        machines.append(
            _machine(
                "bitspire",
                device,
                None,
                currency,
                cassettes,
                moment_utc(row["paid_at"]),
                error,
            )
        )
    return machines


# ------------------------------------------------------------------- figures


async def tracked_balances() -> dict[str, Decimal]:
    """Every client's balance summed per currency (confirmed deposits -
    confirmed payouts)."""
    totals: dict[str, Decimal] = {}
    for row in await db.fetchall(
        f"SELECT currency, COALESCE(SUM(amount), 0) AS total FROM {S}.dca_deposits "
        "WHERE status = 'confirmed' GROUP BY currency"
    ):
        currency = row["currency"]
        totals[currency] = totals.get(currency, Decimal(0)) + to_fiat(row["total"])
    for row in await db.fetchall(
        "SELECT COALESCE(currency, 'GTQ') AS currency, "
        f"COALESCE(SUM(amount_fiat), 0) AS total FROM {S}.dca_payments "
        "WHERE status = 'confirmed' GROUP BY COALESCE(currency, 'GTQ')"
    ):
        currency = row["currency"]
        totals[currency] = totals.get(currency, Decimal(0)) - to_fiat(row["total"])
    return totals


def _week_start(moment: datetime) -> str:
    day = moment.date() - timedelta(days=moment.weekday())
    return day.isoformat()


async def orphan_weeks(
    now: datetime,
) -> tuple[list[dict[str, Any]], dict[str, Decimal]]:
    """Orphan fiat per currency per ISO week (Monday) over the last WEEKS
    weeks, and per currency over the last 7 days."""
    since = now - timedelta(weeks=WEEKS)
    since = since - timedelta(days=since.weekday())
    rows = await db.fetchall(
        "SELECT fiat_code, orphan_fiat, created_at FROM "
        f"{S}.reconciliations WHERE created_at >= {db.timestamp_placeholder('since')}",
        {"since": since.timestamp() if db.type == "SQLITE" else since},
    )
    weeks: dict[tuple[str, str], Decimal] = {}
    last7: dict[str, Decimal] = {}
    for row in rows:
        created = moment_utc(row["created_at"])
        if created is None:
            continue
        fiat = to_fiat(row["orphan_fiat"])
        key = (_week_start(created), row["fiat_code"])
        weeks[key] = weeks.get(key, Decimal(0)) + fiat
        if now - created <= timedelta(days=7):
            last7[row["fiat_code"]] = last7.get(row["fiat_code"], Decimal(0)) + fiat
    series = [
        {"week": week, "currency": currency, "fiat": to_fiat(fiat)}
        for (week, currency), fiat in sorted(weeks.items())
    ]
    return series, last7


async def compute_drift(now: datetime | None = None) -> dict[str, Any]:
    now = now or utc_now()
    tracked = await tracked_balances()
    machines = list(lamassu_cash["machines"] or []) + await bitspire_machines()
    series, last7 = await orphan_weeks(now)
    cash: dict[str, Decimal] = {}
    for machine in machines:
        if machine["total"] is not None and machine["currency"]:
            cash[machine["currency"]] = (
                cash.get(machine["currency"], Decimal(0)) + machine["total"]
            )
    currencies = sorted(set(tracked) | set(cash) | set(last7))
    rows = []
    for currency in currencies:
        machine_cash = cash.get(currency)
        tracked_total = to_fiat(tracked.get(currency, Decimal(0)))
        rows.append(
            {
                "currency": currency,
                "tracked": tracked_total,
                "machine_cash": machine_cash,
                "untracked": (
                    to_fiat(machine_cash - tracked_total)
                    if machine_cash is not None
                    else None
                ),
                "orphan_fiat_7d": to_fiat(last7.get(currency, Decimal(0))),
            }
        )
    return {
        "currencies": rows,
        "machines": machines,
        "weekly_orphans": series,
        "lamassu_read_at": lamassu_cash["read_at"],
        "lamassu_error": lamassu_cash["error"],
    }
