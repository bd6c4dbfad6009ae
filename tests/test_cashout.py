"""The payment-metadata (bitSpire) cash-out source: accepted, validated, and
flagged rather than trusted blindly."""

from __future__ import annotations

from decimal import Decimal

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

S = 317_700
GOOD = {
    "source": "bitspire",
    "principal_sats": 300_226,
    "fee_sats": 17_474,
    "exchange_rate": "666164.22",
    "currency": "GTQ",
    "txid": "tx1",
    "machine_npub": "npub1machine",
    "bills": [{"denomination": 100, "count": 20}],
    "cassettes": [1, 2],
}


@pytest.fixture
def config(app):
    from satmachineadmin.models import LamassuConfig, utc_now

    now = utc_now()
    return LamassuConfig(id="c", created_at=now, updated_at=now)


async def test_valid_metadata_is_accepted(config):
    from satmachineadmin.cashout import parse_bitspire

    data = parse_bitspire(S, GOOD, config)
    assert data.fiat_amount == Decimal("2000.00")
    assert data.fiat_code == "GTQ"
    assert (data.split.principal_sats, data.split.commission_sats) == (300_226, 17_474)
    assert data.review_reason is None
    assert data.atm_txid == "tx1" and data.device_id == "npub1machine"


async def test_bills_as_mapping_and_rate_only(config):
    from satmachineadmin.cashout import parse_bitspire

    assert parse_bitspire(S, {**GOOD, "bills": {"100": 20}}, config).fiat_amount == 2000
    no_bills = {k: v for k, v in GOOD.items() if k != "bills"}
    assert parse_bitspire(S, no_bills, config).fiat_amount == Decimal("2000.00")


@pytest.mark.parametrize(
    "change",
    [
        {"principal_sats": 300_000},  # principal + fee != amount
        {"fee_sats": "17474"},
        {"currency": "Q"},
        {"exchange_rate": "-1"},
        {"exchange_rate": "abc"},
        {"exchange_rate": None},
    ],
)
async def test_invalid_metadata_is_rejected(config, change):
    from satmachineadmin.allocation import AllocationError
    from satmachineadmin.cashout import parse_bitspire

    with pytest.raises((ValueError, AllocationError)):
        parse_bitspire(S, {**GOOD, **change}, config)


async def test_fee_or_principal_mismatch_is_flagged_for_review(config):
    from satmachineadmin.cashout import parse_bitspire

    # Principal disagrees with the bills at the reported rate.
    wrong = {**GOOD, "bills": [{"denomination": 100, "count": 10}]}
    assert parse_bitspire(S, wrong, config).review_reason
    # Fee far from the operator's expected commission.
    config.expected_commission_percentage = 0.02
    review = parse_bitspire(S, GOOD, config).review_reason
    assert review and "expected" in review.render("en")
    config.expected_commission_percentage = 0.055
    assert parse_bitspire(S, GOOD, config).review_reason is None


async def test_other_payments_are_not_bitspire(config):
    from satmachineadmin.cashout import PaymentMetadataSource
    from satmachineadmin.models import Settlement, utc_now

    now = utc_now()
    settlement = Settlement(
        id="s",
        payment_hash="h",
        wallet_id="w",
        amount_sats=S,
        paid_at=now,
        created_at=now,
        updated_at=now,
    )
    source = PaymentMetadataSource()
    assert await source.lookup(settlement, {}, config) is None
    result = await source.lookup(settlement, {**GOOD, "principal_sats": 1}, config)
    assert result and result.state.value == "failed"
