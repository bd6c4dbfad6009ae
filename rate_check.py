"""Cash-out data is a claim: the price it implies is checked against a price
this extension did not get from the same claimant, before any client balance is
debited.

Whoever holds the source wallet's invoice key can create an invoice whose
`extra` claims a bitSpire cash-out; a Lamassu row or a typed entry can be wrong.
The price that matters to clients is the one they buy at: the cash-out's fiat
over its principal (fiat per BTC). It must agree, within the configured
tolerance (default 10 %), with an independent price:

1. LNbits' own exchange-rate service, where it answers;
2. else the median price of the recent settlements in that currency that were
   distributed (each of them passed this check or was accepted by the operator).

A price that disagrees, or that nothing can confirm, flags the settlement with
the reason: no money moves until the operator accepts or corrects it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from statistics import median

from loguru import logger

from .cashout import price_disagreement, price_of
from .crud import get_recent_settlement_prices
from .messages import Message
from .models import LamassuConfig, Settlement

RECENT_WINDOW = timedelta(days=7)
RECENT_COUNT = 10


async def lnbits_price(currency: str) -> Decimal | None:
    """Fiat per BTC from LNbits' exchange-rate service, or None if it has none
    (offline, currency not served)."""
    try:
        from lnbits.utils.exchange_rates import get_fiat_rate_and_price_satoshis

        _, price = await get_fiat_rate_and_price_satoshis(currency)
    except Exception as exc:  # a price feed being down is "no answer", not an error
        logger.debug(f"satmachineadmin: no LNbits price for {currency}: {exc}")
        return None
    return Decimal(str(price)) if price and price > 0 else None


async def reference_price(
    currency: str, before: datetime, exclude_id: str
) -> tuple[Decimal | None, Message]:
    """An independent price (fiat per BTC) and where it came from."""
    price = await lnbits_price(currency)
    if price is not None:
        return price, Message("rate.source_lnbits")
    recent = await get_recent_settlement_prices(
        currency, before - RECENT_WINDOW, exclude_id, RECENT_COUNT
    )
    if recent:
        return Decimal(median(recent)), Message(
            "rate.source_median", {"count": len(recent), "currency": currency}
        )
    return None, Message(
        "rate.source_none", {"currency": currency, "days": RECENT_WINDOW.days}
    )


async def rate_review_reason(
    settlement: Settlement, config: LamassuConfig | None
) -> Message | None:
    """Why the settlement's cash-out price cannot be trusted, or None."""
    assert settlement.fiat_amount is not None and settlement.fiat_code
    assert settlement.principal_sats is not None
    claimed = price_of(settlement.fiat_amount, settlement.principal_sats)
    if claimed is None:
        return Message("cash_out.no_principal")
    tolerance = Decimal(str(config.rate_tolerance_percent if config else 10))
    reference, source = await reference_price(
        settlement.fiat_code, settlement.paid_at, settlement.id
    )
    if reference is None:
        return Message(
            "cash_out.price_unchecked",
            {
                "price": f"{claimed:,.2f}",
                "currency": settlement.fiat_code,
                "source": source,
            },
        )
    return price_disagreement(
        claimed, reference, tolerance, settlement.fiat_code, source
    )
