"""Finding a settlement's cash-out: what fiat left the machine for these sats.

One interface, three sources, asked in order (DOMAIN.md step 3):
1. the payment's own metadata (`extra`), as bitSpire ATMs send it;
2. the Lamassu database (legacy lamassu-server), see `lamassu_source.py`;
3. the operator, entering it by hand through the API (`manual_cash_out`).

A source answers with a `Lookup`: found (with `CashOutData`), waiting (it knows the
cash-out but the cash is not confirmed out yet), failed (it can never be
distributed: rejected, expired, not dispensed), or None when it knows nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, Protocol

from .allocation import (
    AllocationError,
    PrincipalSplit,
    effective_commission,
    split_from_commission,
    split_from_ticker,
    split_reported,
    to_fiat,
)
from .messages import Message, MessageError
from .models import MAX_FIAT, LamassuConfig, ManualCashOutData, Settlement

BITSPIRE_SOURCE = "bitspire"
# Lamassu and bitSpire round the customer's sats to 100; allow that much slack
# (plus 1%) before calling a reported fee wrong.
FEE_TOLERANCE_SATS = 100


class LookupState(str, Enum):
    found = "found"
    waiting = "waiting"
    failed = "failed"


@dataclass
class CashOutData:
    source: str
    fiat_amount: Decimal
    fiat_code: str
    split: PrincipalSplit
    commission_percentage: Decimal | None = None
    discount: Decimal | None = None
    reported_fee_sats: int | None = None
    lamassu_transaction_id: str | None = None
    device_id: str | None = None
    atm_txid: str | None = None
    cash_out_time: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # A discrepancy the operator must look at before anything is distributed.
    review_reason: Message | None = None


@dataclass
class Lookup:
    state: LookupState
    detail: Message | str  # a message; a plain string only from a source's error
    data: CashOutData | None = None


class CashOutSource(Protocol):
    name: str

    async def lookup(
        self, settlement: Settlement, payment_extra: dict, config: LamassuConfig
    ) -> Lookup | None: ...


def payment_extra_of(settlement: Settlement) -> dict:
    """The settlement payment's `extra`, saved when the settlement was recorded."""
    if not settlement.cash_out_data:
        return {}
    try:
        stored = json.loads(settlement.cash_out_data)
    except ValueError:
        return {}
    extra = stored.get("payment_extra") if isinstance(stored, dict) else None
    return extra if isinstance(extra, dict) else {}


# Bounds on what an ATM may claim: far beyond any real cash-out, and small
# enough that no arithmetic on them can overflow.
MAX_SATS = 21_000_000 * 100_000_000
MAX_FIAT_PER_BTC = Decimal("1e13")
MAX_BILL = Decimal("1e9")
MAX_BILL_COUNT = 100_000


def _sats(value: Any, name: str) -> int:
    """A whole number of sats: an int (not a bool, not a float), 0..21M BTC."""
    if type(value) is not int:
        raise MessageError("cash_out.sats_not_integer", name=name)
    if not 0 <= value <= MAX_SATS:
        raise MessageError("cash_out.out_of_range", name=name)
    return value


def _decimal(value: Any, name: str, maximum: Decimal) -> Decimal:
    """A positive decimal number no larger than `maximum`, given as a number or
    a short string; never a bool, NaN, infinity or a 1E+999999999."""
    if isinstance(value, bool) or value is None:
        raise MessageError("cash_out.missing", name=name)
    if not isinstance(value, int | float | str) or len(str(value)) > 40:
        raise MessageError("cash_out.not_a_number", name=name)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise MessageError("cash_out.not_a_number", name=name) from exc
    if not number.is_finite() or not -12 <= number.adjusted() <= 15:
        raise MessageError("cash_out.implausible_number", name=name)
    if number <= 0 or number > maximum:
        raise MessageError(
            "cash_out.positive_at_most", name=name, maximum=f"{maximum:,}"
        )
    return number


def _bills_total(bills: Any) -> Decimal | None:
    """Sum dispensed bills given as {"100": 2} or [{"denomination": 100,
    "count": 2}, ...]; None when absent. Bills that are present but unreadable
    are an error: they are the only fact about the cash that left."""
    if bills is None:
        return None
    if isinstance(bills, dict):
        items = list(bills.items())
    elif isinstance(bills, list):
        items = []
        for bill in bills:
            if not isinstance(bill, dict):
                raise MessageError("cash_out.bill_entries")
            items.append((bill.get("denomination"), bill.get("count", 1)))
    else:
        raise MessageError("cash_out.bills_shape")
    if len(items) > 100:
        raise MessageError("cash_out.too_many_bills")
    total = Decimal(0)
    for denomination, count in items:
        value = _decimal(denomination, "bill denomination", MAX_BILL)
        if type(count) is not int or not 0 <= count <= MAX_BILL_COUNT:
            raise MessageError("cash_out.bill_count")
        total += value * count
    if total <= 0:
        raise MessageError("cash_out.bills_nothing")
    return total


def price_of(fiat: Decimal, principal_sats: int) -> Decimal | None:
    """Fiat per BTC at which the clients buy: the cash over its principal."""
    if principal_sats <= 0:
        return None
    return Decimal(fiat) * 10**8 / principal_sats


def price_disagreement(
    claimed: Decimal,
    reference: Decimal,
    tolerance_percent: Decimal,
    currency: str,
    source: Message | str,
) -> Message | None:
    """Why a claimed price is not trusted (off by more than the tolerance from
    the reference), or None."""
    off = abs(claimed - reference) / reference * 100
    if off <= tolerance_percent:
        return None
    return Message(
        "cash_out.price_off",
        {
            "price": f"{claimed:,.2f}",
            "currency": currency,
            "off": f"{off:.1f}",
            "reference": f"{reference:,.2f}",
            "source": source,
            "tolerance": str(tolerance_percent),
        },
    )


class PaymentMetadataSource:
    """bitSpire puts the cash-out in the invoice's extra:
    {source: 'bitspire', principal_sats, fee_sats, exchange_rate, currency, txid,
    machine_npub, bills, cassettes}. `exchange_rate` is fiat per BTC."""

    name = BITSPIRE_SOURCE

    async def lookup(
        self, settlement: Settlement, payment_extra: dict, config: LamassuConfig
    ) -> Lookup | None:
        if payment_extra.get("source") != BITSPIRE_SOURCE:
            return None
        try:
            data = parse_bitspire(settlement.amount_sats, payment_extra, config)
        except (ValueError, AllocationError, ArithmeticError) as exc:
            return Lookup(
                LookupState.failed,
                Message("cash_out.bitspire_invalid", {"error": error_of(exc)}),
            )
        except Exception as exc:  # a claim we cannot read is never "try again"
            return Lookup(
                LookupState.failed,
                Message(
                    "cash_out.bitspire_unreadable",
                    {"error": exc.__class__.__name__},
                ),
            )
        return Lookup(LookupState.found, Message("cash_out.bitspire_found"), data)


def error_of(exc: BaseException) -> Message | str:
    """An exception as a part of a stored text: its message when it has one
    (MessageError), else its text as it is (from LNbits, a driver...)."""
    message = getattr(exc, "message", None)
    return message if isinstance(message, Message) else str(exc)


def parse_bitspire(amount_sats: int, extra: dict, config: LamassuConfig) -> CashOutData:
    principal = _sats(extra.get("principal_sats"), "principal_sats")
    fee = _sats(extra.get("fee_sats"), "fee_sats")
    split = split_reported(amount_sats, principal, fee)
    currency = extra.get("currency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise MessageError("cash_out.currency_code")
    rate = _decimal(extra.get("exchange_rate"), "exchange_rate", MAX_FIAT_PER_BTC)
    bills_fiat = _bills_total(extra.get("bills"))
    fiat = to_fiat(
        bills_fiat if bills_fiat is not None else Decimal(principal) * rate / 10**8
    )
    if fiat <= 0:
        raise MessageError("cash_out.no_fiat")
    if fiat > MAX_FIAT:
        # More than any cash-out, and more than the fiat columns hold.
        raise MessageError(
            "cash_out.implausible_fiat", fiat=str(fiat), maximum=f"{MAX_FIAT:,}"
        )

    review: Message | None = None
    tolerance = FEE_TOLERANCE_SATS + amount_sats // 100
    if bills_fiat is not None:
        # Not capped at the amount paid: bills worth far more than the
        # principal at the reported rate must show, not vanish in a min().
        expected_principal = round(fiat * 10**8 / rate)
        if abs(expected_principal - principal) > tolerance:
            review = Message(
                "cash_out.principal_mismatch",
                {
                    "principal": principal,
                    "fiat": str(fiat),
                    "currency": currency,
                    "rate": str(rate),
                    "expected": expected_principal,
                },
            )
    if review is None and config.expected_commission_percentage is not None:
        expected_fee = split_from_commission(
            amount_sats, Decimal(str(config.expected_commission_percentage))
        ).commission_sats
        if abs(expected_fee - fee) > tolerance:
            review = Message(
                "cash_out.fee_differs",
                {
                    "fee": fee,
                    "expected": expected_fee,
                    "percent": f"{config.expected_commission_percentage:.2%}",
                },
            )
    txid = extra.get("txid")
    npub = extra.get("machine_npub")
    return CashOutData(
        source=BITSPIRE_SOURCE,
        fiat_amount=fiat,
        fiat_code=currency.upper(),
        split=split,
        reported_fee_sats=fee,
        atm_txid=str(txid)[:200] if txid else None,
        device_id=str(npub)[:200] if npub else None,
        raw={k: v for k, v in extra.items() if k != "tag"},
        review_reason=review,
    )


def manual_cash_out(settlement: Settlement, data: ManualCashOutData) -> CashOutData:
    """The operator's own figures for a settlement no source explains."""
    sats = settlement.amount_sats
    c_eff = None
    if data.principal_sats is not None:
        if data.principal_sats > sats:
            raise AllocationError(
                "cash_out.principal_exceeds", principal=data.principal_sats, sats=sats
            )
        split = PrincipalSplit(data.principal_sats, sats - data.principal_sats)
    elif data.raw_ticker_price is not None:
        split = split_from_ticker(sats, data.fiat_amount, data.raw_ticker_price)
    elif data.commission_percentage is not None:
        c_eff = effective_commission(data.commission_percentage, data.discount)
        split = split_from_commission(sats, c_eff)
    else:
        raise AllocationError("cash_out.give_one")
    return CashOutData(
        source="manual",
        fiat_amount=data.fiat_amount,
        fiat_code=data.fiat_code,
        split=split,
        commission_percentage=data.commission_percentage,
        discount=data.discount,
        lamassu_transaction_id=data.lamassu_transaction_id,
        device_id=data.device_id,
        raw=json.loads(data.json()),
    )
