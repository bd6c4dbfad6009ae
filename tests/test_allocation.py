"""Unit and property tests for the pure settlement math (allocation.py).

The invariants of the money rules, checked over generated settlements:
conservation to the sat, nobody above floor(balance x rate), no negatives,
proportional when balances cover the fiat, capped clients end at 0.00.
"""

from __future__ import annotations

import math
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

# The pure module has no LNbits imports: load it straight from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from allocation import (
    AllocationError,
    ClientBalance,
    PrincipalSplit,
    crypto_atoms_match,
    distribute,
    effective_commission,
    lamassu_expected_crypto_atoms,
    split_from_commission,
    split_from_ticker,
    split_reported,
    to_fiat,
)

CENT = Decimal("0.01")

cents = st.integers(min_value=0, max_value=5_000_000)  # up to 50,000.00
balances_st = st.lists(cents, min_size=0, max_size=25).map(
    lambda values: [
        ClientBalance(f"c{i}", Decimal(v) * CENT) for i, v in enumerate(values)
    ]
)
settlement_st = st.integers(min_value=0, max_value=2_100_000_000_000_000)
commission_st = st.decimals(
    min_value=Decimal("0"), max_value=Decimal("0.2"), places=4, allow_nan=False
)
discount_st = st.decimals(
    min_value=Decimal("0"), max_value=Decimal("100"), places=2, allow_nan=False
)
fiat_st = st.integers(min_value=0, max_value=10_000_000).map(
    lambda v: Decimal(v) * CENT
)


def check_invariants(dist, balances):
    by_id = {b.client_id: b.balance for b in balances}
    # Conservation, sats and fiat.
    assert (
        dist.distributed_sats + dist.commission_sats + dist.orphan_sats
        == dist.settlement_sats
    )
    assert dist.distributed_fiat + dist.orphan_fiat == dist.fiat_amount
    assert dist.orphan_sats >= 0 and dist.orphan_fiat >= 0
    assert dist.commission_sats >= 0
    seen = set()
    for a in dist.allocations:
        assert a.client_id not in seen
        seen.add(a.client_id)
        balance = by_id[a.client_id]
        # Positive, integer, never above what the balance is worth.
        assert isinstance(a.sats, int) and a.sats > 0
        assert a.fiat >= 0 and a.fiat == a.fiat.quantize(CENT)
        assert a.fiat <= balance
        assert a.sats <= math.floor(Fraction(balance) * dist.rate)
        if a.capped:
            assert a.fiat == balance


@settings(
    max_examples=int(__import__("os").environ.get("ALLOC_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    settlement=settlement_st,
    c=commission_st,
    discount=discount_st,
    fiat=fiat_st,
    balances=balances_st,
)
@example(
    settlement=317_700,
    c=Decimal("0.055"),
    discount=Decimal("0"),
    fiat=Decimal("2000"),
    balances=[
        ClientBalance("a", Decimal("690")),
        ClientBalance("b", Decimal("7.54")),
        ClientBalance("c", Decimal("2.38")),
        ClientBalance("d", Decimal("0.07")),
    ],
)
@example(
    settlement=1,
    c=Decimal("0"),
    discount=Decimal("0"),
    fiat=Decimal("0.01"),
    balances=[ClientBalance("a", Decimal("1"))],
)
@example(
    settlement=1000,
    c=Decimal("0.1"),
    discount=Decimal("100"),
    fiat=Decimal("10"),
    balances=[],
)
def test_invariants(settlement, c, discount, fiat, balances):
    split = split_from_commission(settlement, effective_commission(c, discount))
    dist = distribute(settlement, split, fiat, balances)
    check_invariants(dist, balances)

    total = sum((b.balance for b in balances), Decimal(0))
    rate = dist.rate
    if fiat == 0 or split.principal_sats == 0 or total == 0:
        assert dist.allocations == ()
        assert dist.orphan_sats == split.principal_sats
        return
    if total <= fiat:
        # Capped: each client that can receive a sat gets its whole balance, so
        # its remaining balance ends at exactly 0.00.
        for b in balances:
            worth = math.floor(Fraction(b.balance) * rate)
            got = next(
                (a for a in dist.allocations if a.client_id == b.client_id), None
            )
            if worth >= 1 and b.balance > 0:
                assert got is not None and got.fiat == b.balance
            # Largest remainder may leave a client one sat below its worth only
            # if the principal ran out.
            if got is not None:
                assert got.sats >= worth - 1 or dist.orphan_sats == 0
    else:
        # Covered: proportional. Sats within a sat of the client's exact share,
        # fiat within a cent of what those sats are worth at the rate.
        factor = Fraction(fiat) / Fraction(total)
        for b in balances:
            got = next(
                (a for a in dist.allocations if a.client_id == b.client_id), None
            )
            ideal = Fraction(b.balance) * factor
            sats = got.sats if got else 0
            assert math.floor(ideal * rate) <= sats <= math.ceil(ideal * rate)
            if got is not None:
                worth = Fraction(got.sats) / rate
                assert abs(Fraction(got.fiat) - worth) < Fraction(1, 100)
        # Rounding against the caps can leave at most a sat per client.
        assert dist.orphan_sats <= len(balances)


@settings(max_examples=200, deadline=None)
@given(
    settlement=st.integers(min_value=1, max_value=10**12),
    fiat=st.integers(min_value=1, max_value=10_000_000).map(
        lambda v: Decimal(v) * CENT
    ),
    balances=st.lists(
        st.integers(min_value=1, max_value=5_000_000), min_size=1, max_size=20
    ),
)
@example(settlement=11, fiat=Decimal("0.08"), balances=[1, 1, 1])
def test_proportional_when_covered_with_room(settlement, fiat, balances):
    """Balances at least double the fiat: nothing is orphaned once sats are
    plentiful (at least one sat per cent), and shares follow the balances."""
    bal = [ClientBalance(f"c{i}", Decimal(v) * CENT) for i, v in enumerate(balances)]
    total = sum((b.balance for b in bal), Decimal(0))
    if total < 2 * fiat:
        bal.append(ClientBalance("big", 2 * fiat))
    split = PrincipalSplit(settlement, 0)
    dist = distribute(settlement, split, fiat, bal)
    check_invariants(dist, bal)
    if dist.rate >= 100:  # at least one sat per cent
        assert dist.orphan_sats == 0
        assert dist.orphan_fiat == 0


def test_seed_incident_numbers():
    """SEED_ISSUE: 317,700 sats for 2000 GTQ, balances 690 / 7.54 / 2.38 / 0.07.
    Every client receives its whole balance; the rest is one orphan."""
    balances = [
        ClientBalance("a", Decimal("690")),
        ClientBalance("b", Decimal("7.54")),
        ClientBalance("c", Decimal("2.38")),
        ClientBalance("d", Decimal("0.07")),
    ]
    split = split_reported(317_700, 300_000, 17_700)
    dist = distribute(317_700, split, Decimal("2000"), balances)
    assert dist.capped
    assert [a.fiat for a in dist.allocations] == [
        Decimal("690.00"),
        Decimal("7.54"),
        Decimal("2.38"),
        Decimal("0.07"),
    ]
    assert [a.sats for a in dist.allocations] == [103_500, 1_131, 357, 10]
    assert dist.orphan_fiat == Decimal("1300.01")
    assert dist.orphan_sats == 300_000 - 103_500 - 1_131 - 357 - 10
    assert dist.distributed_sats + 17_700 + dist.orphan_sats == 317_700


def test_covered_split_is_proportional():
    balances = [
        ClientBalance("a", Decimal("600")),
        ClientBalance("b", Decimal("300")),
        ClientBalance("c", Decimal("100")),
    ]
    dist = distribute(10_000, PrincipalSplit(9_500, 500), Decimal("100"), balances)
    assert [a.sats for a in dist.allocations] == [5700, 2850, 950]
    assert [a.fiat for a in dist.allocations] == [
        Decimal("60.00"),
        Decimal("30.00"),
        Decimal("10.00"),
    ]
    assert dist.orphan_sats == 0 and dist.orphan_fiat == 0 and not dist.capped


def test_zero_clients_everything_is_orphan():
    dist = distribute(5000, PrincipalSplit(4500, 500), Decimal("50"), [])
    assert dist.allocations == () and dist.orphan_sats == 4500
    assert dist.orphan_fiat == Decimal("50.00")


def test_zero_balances_everything_is_orphan():
    balances = [ClientBalance("a", Decimal("0")), ClientBalance("b", Decimal("0"))]
    dist = distribute(5000, PrincipalSplit(5000, 0), Decimal("50"), balances)
    assert dist.allocations == () and dist.orphan_sats == 5000


def test_one_sat_settlement():
    balances = [ClientBalance("a", Decimal("1")), ClientBalance("b", Decimal("1"))]
    dist = distribute(1, PrincipalSplit(1, 0), Decimal("0.01"), balances)
    check_invariants(dist, balances)
    assert dist.distributed_sats + dist.orphan_sats == 1


def test_huge_settlement_is_exact():
    sats = 21_000_000 * 100_000_000
    balances = [ClientBalance(f"c{i}", Decimal("33333.33")) for i in range(7)]
    dist = distribute(sats, PrincipalSplit(sats, 0), Decimal("99999999.99"), balances)
    check_invariants(dist, balances)
    assert dist.capped


def test_tiny_balance_worth_less_than_a_sat_keeps_its_balance():
    # 0.5 sats per GTQ: a 0.01 GTQ balance is worth nothing in sats, so the
    # client gets no payout and no fiat debit rather than a 0-sat payment.
    balances = [ClientBalance("a", Decimal("0.01")), ClientBalance("b", Decimal("10"))]
    dist = distribute(50, PrincipalSplit(50, 0), Decimal("100"), balances)
    check_invariants(dist, balances)
    assert [a.client_id for a in dist.allocations] == ["b"]
    assert dist.orphan_fiat == Decimal("90.00")


def test_full_discount_means_no_commission():
    c_eff = effective_commission(Decimal("0.055"), Decimal("100"))
    assert c_eff == 0
    assert split_from_commission(317_700, c_eff) == PrincipalSplit(317_700, 0)


def test_split_from_commission_uses_lamassu_formula():
    # Lamassu sells at ticker x (1 - c): the commission is c of the amount
    # paid, not the old admin's c / (1 + c).
    split = split_from_commission(100_000, Decimal("0.055"))
    assert split == PrincipalSplit(94_500, 5_500)


def test_split_from_ticker():
    split = split_from_ticker(317_700, Decimal("2000"), Decimal("666666.67"))
    assert split.principal_sats == 300_000
    assert split.commission_sats == 17_700
    # Never more principal than was paid.
    assert split_from_ticker(100, Decimal("2000"), Decimal("1")).principal_sats == 100


def test_lamassu_expected_atoms_round_trip():
    atoms = lamassu_expected_crypto_atoms(
        Decimal("2000"), Decimal("666666.67"), Decimal("0.05")
    )
    assert atoms % 100 == 0
    assert crypto_atoms_match(
        atoms, Decimal("2000"), Decimal("666666.67"), Decimal("0.05")
    )
    assert not crypto_atoms_match(
        atoms + 1000, Decimal("2000"), Decimal("666666.67"), Decimal("0.05")
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: split_reported(100, 60, 30),
        lambda: split_reported(100, -1, 101),
        lambda: split_from_commission(-5, Decimal("0.05")),
        lambda: split_from_commission(100, Decimal("1")),
        lambda: split_from_ticker(100, Decimal("10"), Decimal("0")),
        lambda: distribute(100, PrincipalSplit(50, 40), Decimal("1"), []),
        lambda: distribute(100, PrincipalSplit(100, 0), Decimal("-1"), []),
        lambda: distribute(
            100,
            PrincipalSplit(100, 0),
            Decimal("1"),
            [ClientBalance("a", Decimal(1)), ClientBalance("a", Decimal(2))],
        ),
    ],
)
def test_bad_inputs_are_rejected(call):
    with pytest.raises(AllocationError):
        call()


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_to_fiat_keeps_cents_of_floats(value):
    result = to_fiat(value)
    assert result == result.quantize(CENT)
    assert abs(result - Decimal(repr(value))) <= Decimal("0.005")


def test_to_fiat_examples():
    assert to_fiat(7.54) == Decimal("7.54")
    assert to_fiat("2.38") == Decimal("2.38")
    assert to_fiat(0.07) == Decimal("0.07")
