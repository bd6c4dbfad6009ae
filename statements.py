"""Client statements: the figures of one client's account over a period.

Pure arithmetic on plain dataclasses (no LNbits, no database), so it can be
tested on its own; the queries are in views_api_statements.py and the CSV/PDF
rendering in statements_render.py.

The balance is the client extension's own: confirmed deposits minus the fiat
of confirmed payouts, per currency. A deposit counts from the moment it was
confirmed (`COALESCE(confirmed_at, created_at)`), a purchase from
`COALESCE(transaction_time, created_at)`. A period is whole UTC days, both ends
included: it starts at 00:00 UTC of its first day and ends just before 00:00
UTC of the day after its last. So for every currency

    closing balance = opening balance + deposits in the period
                      - fiat of the purchases in the period.

Fiat is Decimal cents, sats are ints; prices (fiat per BTC) are rounded to the
cent, half to even, like every other fiat figure of the extension.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

try:  # messages.py is pure too; tests load this module on its own
    from .messages import MessageError
except ImportError:  # pragma: no cover
    from messages import MessageError  # type: ignore[no-redef]

CENT = Decimal("0.01")
SATS_PER_BTC = 100_000_000
ZERO = Decimal("0.00")

# A statement covers at most this many days (five years and a bit): enough
# for any tax year or a multi-year summary, bounded so one request stays small.
MAX_PERIOD_DAYS = 5 * 366 + 1
EARLIEST_DATE = date(2009, 1, 1)  # no bitcoin before then
LATEST_DATE = date(2100, 12, 31)

FORMATS = ("csv", "pdf")
LANGUAGES = ("en", "es")


class StatementInputError(MessageError):
    """A request for a statement that cannot be answered (bad dates, unknown
    format or language); the message says what to change."""


def cents(value: Any) -> Decimal:
    """Any number (Decimal, int, float as its shortest repr, text) to cents."""
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        number = Decimal(str(value))
    return number.quantize(CENT, rounding=ROUND_HALF_EVEN)


def utc(moment: datetime) -> datetime:
    """A naive timestamp (PostgreSQL, rows of the client extension) is UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


# --------------------------------------------------------------------- period


@dataclass(frozen=True)
class Period:
    start: date  # first day, included
    end: date  # last day, included

    @property
    def starts_at(self) -> datetime:
        return datetime.combine(self.start, time(0), tzinfo=timezone.utc)

    @property
    def ends_at(self) -> datetime:
        """The first moment after the period (exclusive bound)."""
        return datetime.combine(
            self.end + timedelta(days=1), time(0), tzinfo=timezone.utc
        )

    def contains(self, moment: datetime) -> bool:
        return self.starts_at <= utc(moment) < self.ends_at

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()}_{self.end.isoformat()}"


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$", re.ASCII)
_YEAR = re.compile(r"^(\d{4})$", re.ASCII)


def _parse_day(text: str, name: str) -> date:
    text = text.strip()
    if not _DAY.match(text):
        raise StatementInputError("statement.date_format", name=name)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise StatementInputError(
            "statement.not_real_date", name=name, value=text
        ) from None


def _period_shortcut(text: str) -> Period:
    found = _MONTH.match(text.strip()) or _YEAR.match(text.strip())
    if not found:
        raise StatementInputError("statement.period_format")
    year = int(found.group(1))
    if not EARLIEST_DATE.year <= year <= LATEST_DATE.year:
        raise StatementInputError(
            "statement.dates_range", earliest=EARLIEST_DATE, latest=LATEST_DATE
        )
    if found.re is _YEAR:
        return Period(date(year, 1, 1), date(year, 12, 31))
    month = int(found.group(2))
    if not 1 <= month <= 12:
        raise StatementInputError("statement.no_month", month=f"{month:02d}")
    following = date(year + month // 12, month % 12 + 1, 1)
    return Period(date(year, month, 1), following - timedelta(days=1))


def parse_period(
    period: str | None,
    start: str | None,
    end: str | None,
    today: date,
) -> Period:
    """The statement's days from either `period` (YYYY-MM or YYYY) or
    `from` (YYYY-MM-DD) and `to` (YYYY-MM-DD, default today, UTC); with
    neither, the current month up to today."""
    if period and (start or end):
        raise StatementInputError("statement.period_or_range")
    if period:
        result = _period_shortcut(period)
    elif start:
        first = _parse_day(start, "from")
        last = _parse_day(end, "to") if end else today
        result = Period(first, last)
    elif end:
        raise StatementInputError("statement.to_needs_from")
    else:  # nothing said: this month so far
        result = Period(today.replace(day=1), today)
    if result.start > result.end:
        raise StatementInputError(
            "statement.from_after_to", start=result.start, end=result.end
        )
    if result.start < EARLIEST_DATE or result.end > LATEST_DATE:
        raise StatementInputError(
            "statement.dates_range", earliest=EARLIEST_DATE, latest=LATEST_DATE
        )
    days = (result.end - result.start).days + 1
    if days > MAX_PERIOD_DAYS:
        raise StatementInputError(
            "statement.too_long", maximum=MAX_PERIOD_DAYS, days=days
        )
    return result


def check_choice(value: str | None, choices: tuple[str, ...], name: str) -> str:
    chosen = (value or choices[0]).strip().lower()
    if chosen not in choices:
        given = (value or "")[:20]
        raise StatementInputError(
            "statement.bad_choice",
            name=name,
            choices=", ".join(choices),
            given=repr(given),
        )
    return chosen


# ---------------------------------------------------------------------- input


@dataclass(frozen=True)
class Deposit:
    """A confirmed deposit; `at` is when it was confirmed."""

    at: datetime
    amount: Decimal
    currency: str
    id: str = ""


@dataclass(frozen=True)
class Purchase:
    """A confirmed DCA payout: `sats` bought for `fiat` of the client's balance."""

    at: datetime
    sats: int
    fiat: Decimal
    currency: str
    machine: str | None = None  # the settlement's device (ATM) id
    id: str = ""


@dataclass(frozen=True)
class Carried:
    """Sums of one currency from before the period (the database adds them up
    so a statement never reads a client's whole history row by row)."""

    currency: str
    deposits: Decimal = ZERO
    fiat: Decimal = ZERO
    sats: int = 0


# --------------------------------------------------------------------- output


@dataclass(frozen=True)
class PurchaseLine:
    at: datetime
    sats: int
    fiat: Decimal
    price: Decimal | None  # fiat per BTC paid: fiat / sats * 1e8
    machine: str | None
    id: str = ""


@dataclass
class CurrencyStatement:
    currency: str
    opening_balance: Decimal
    deposits: list[Deposit] = field(default_factory=list)
    purchases: list[PurchaseLine] = field(default_factory=list)
    total_deposited: Decimal = ZERO
    total_fiat: Decimal = ZERO
    total_sats: int = 0
    average_cost: Decimal | None = None  # fiat per BTC over the period
    closing_balance: Decimal = ZERO


@dataclass
class ClientStatement:
    client_id: str
    client_name: str | None
    period: Period
    generated_at: datetime
    currencies: list[CurrencyStatement] = field(default_factory=list)

    @property
    def total_sats(self) -> int:
        return sum(c.total_sats for c in self.currencies)


def price_per_btc(fiat: Decimal, sats: int) -> Decimal | None:
    """Fiat per bitcoin paid for `sats`, to the cent; None without sats."""
    if sats <= 0:
        return None
    return cents(Decimal(fiat) * SATS_PER_BTC / sats)


def build_statement(
    client_id: str,
    client_name: str | None,
    period: Period,
    deposits: Iterable[Deposit],
    purchases: Iterable[Purchase],
    carried: Iterable[Carried] = (),
    generated_at: datetime | None = None,
) -> ClientStatement:
    """One client's statement. `deposits` and `purchases` may hold rows from
    before the period (folded into the opening balance, like `carried`) and
    from after it (ignored)."""
    start, end = period.starts_at, period.ends_at
    opening: dict[str, Decimal] = {}
    sections: dict[str, CurrencyStatement] = {}

    def section(currency: str) -> CurrencyStatement:
        if currency not in sections:
            sections[currency] = CurrencyStatement(currency, ZERO)
        return sections[currency]

    for carry in carried:
        opening[carry.currency] = (
            opening.get(carry.currency, ZERO)
            + cents(carry.deposits)
            - cents(carry.fiat)
        )
    for deposit in deposits:
        at = utc(deposit.at)
        if at >= end:
            continue
        amount = cents(deposit.amount)
        if at < start:
            opening[deposit.currency] = opening.get(deposit.currency, ZERO) + amount
            continue
        entry = section(deposit.currency)
        entry.deposits.append(Deposit(at, amount, deposit.currency, deposit.id))
        entry.total_deposited += amount
    for purchase in purchases:
        at = utc(purchase.at)
        if at >= end:
            continue
        fiat = cents(purchase.fiat)
        if at < start:
            opening[purchase.currency] = opening.get(purchase.currency, ZERO) - fiat
            continue
        entry = section(purchase.currency)
        entry.purchases.append(
            PurchaseLine(
                at,
                int(purchase.sats),
                fiat,
                price_per_btc(fiat, int(purchase.sats)),
                purchase.machine,
                purchase.id,
            )
        )
        entry.total_fiat += fiat
        entry.total_sats += int(purchase.sats)
    # A currency with a balance carried in appears even without activity.
    for currency, balance in opening.items():
        if balance != 0:
            section(currency)
    for currency, entry in sections.items():
        entry.opening_balance = opening.get(currency, ZERO)
        entry.deposits.sort(key=lambda d: (d.at, d.id))
        entry.purchases.sort(key=lambda p: (p.at, p.id))
        entry.average_cost = price_per_btc(entry.total_fiat, entry.total_sats)
        entry.closing_balance = (
            entry.opening_balance + entry.total_deposited - entry.total_fiat
        )
    return ClientStatement(
        client_id=client_id,
        client_name=client_name,
        period=period,
        generated_at=generated_at or datetime.now(timezone.utc),
        currencies=[sections[c] for c in sorted(sections)],
    )
