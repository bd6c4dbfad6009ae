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
from .models import LamassuConfig, ManualCashOutData, Settlement

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
    review_reason: str | None = None


@dataclass
class Lookup:
    state: LookupState
    detail: str
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


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name} is missing")
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"{name} is not a number") from exc
    if not number.is_finite():
        raise ValueError(f"{name} is not a number")
    return number


def _bills_total(bills: Any) -> Decimal | None:
    """Sum dispensed bills given as {"100": 2} or [{"denomination": 100,
    "count": 2}, ...]; None when absent or unreadable."""
    total = Decimal(0)
    if isinstance(bills, dict):
        items = list(bills.items())
    elif isinstance(bills, list):
        items = []
        for bill in bills:
            if not isinstance(bill, dict):
                return None
            items.append((bill.get("denomination"), bill.get("count", 1)))
    else:
        return None
    for denomination, count in items:
        try:
            value, number = Decimal(str(denomination)), int(count)
        except (InvalidOperation, TypeError, ValueError):
            return None
        if value < 0 or number < 0:
            return None
        total += value * number
    return total if total > 0 else None


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
        except (ValueError, AllocationError) as exc:
            return Lookup(LookupState.failed, f"invalid bitSpire metadata: {exc}")
        return Lookup(LookupState.found, "from the payment's bitSpire metadata", data)


def parse_bitspire(amount_sats: int, extra: dict, config: LamassuConfig) -> CashOutData:
    principal = extra.get("principal_sats")
    fee = extra.get("fee_sats")
    if not isinstance(principal, int) or not isinstance(fee, int):
        raise ValueError("principal_sats and fee_sats must be integers")
    split = split_reported(amount_sats, principal, fee)
    currency = extra.get("currency")
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise ValueError("currency must be a 3-letter code")
    rate = _decimal(extra.get("exchange_rate"), "exchange_rate")
    if rate <= 0:
        raise ValueError("exchange_rate must be positive")
    bills_fiat = _bills_total(extra.get("bills"))
    fiat = to_fiat(
        bills_fiat if bills_fiat is not None else Decimal(principal) * rate / 10**8
    )
    if fiat <= 0:
        raise ValueError("no fiat amount can be derived")

    review = None
    tolerance = FEE_TOLERANCE_SATS + amount_sats // 100
    if bills_fiat is not None:
        expected_principal = split_from_ticker(amount_sats, fiat, rate).principal_sats
        if abs(expected_principal - principal) > tolerance:
            review = (
                f"reported principal {principal} sats does not match "
                f"{fiat} {currency} at {rate} ({expected_principal} sats)"
            )
    if review is None and config.expected_commission_percentage is not None:
        expected_fee = split_from_commission(
            amount_sats, Decimal(str(config.expected_commission_percentage))
        ).commission_sats
        if abs(expected_fee - fee) > tolerance:
            review = (
                f"reported fee {fee} sats differs from the expected {expected_fee} "
                f"sats ({config.expected_commission_percentage:.2%} commission)"
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
                f"principal_sats {data.principal_sats} exceeds the settlement's "
                f"{sats} sats"
            )
        split = PrincipalSplit(data.principal_sats, sats - data.principal_sats)
    elif data.raw_ticker_price is not None:
        split = split_from_ticker(sats, data.fiat_amount, data.raw_ticker_price)
    elif data.commission_percentage is not None:
        c_eff = effective_commission(data.commission_percentage, data.discount)
        split = split_from_commission(sats, c_eff)
    else:
        raise AllocationError(
            "give principal_sats, raw_ticker_price or commission_percentage"
        )
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
