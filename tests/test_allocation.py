"""Unit and property tests for the pure settlement math (allocation.py).

The invariants of the money rules, checked over generated settlements:
conservation to the sat, nobody above floor(balance x rate), no negatives,
proportional when balances cover the fiat, capped clients end at 0.00, equal
balances get equal sats and equal fiat (and a larger balance never less), sats
if and only if a fiat debit, and an exact cover ends every balance at 0.00.
"""

from __future__ import annotations

import itertools
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
        # Sats and fiat go together: no sats for a 0.00 debit (clients with no
        # sats have no allocation, so no debit without sats either).
        assert a.fiat > 0
    check_equal_treatment(dist, balances)


def received(dist, balances):
    """(sats, fiat) per client in input order; (0, 0.00) without a payout."""
    got = {a.client_id: (a.sats, a.fiat) for a in dist.allocations}
    return [got.get(b.client_id, (0, Decimal("0.00"))) for b in balances]


def check_equal_treatment(dist, balances):
    """Equal balances: equal sats and equal fiat. Larger balance: never fewer
    sats nor less fiat than a smaller one."""
    pairs = sorted(
        zip(
            (to_fiat(b.balance) for b in balances),
            received(dist, balances),
            strict=True,
        ),
        key=lambda pair: pair[0],
    )
    for (low_balance, low), (high_balance, high) in itertools.pairwise(pairs):
        if low_balance == high_balance:
            assert low == high, (low_balance, low, high)
        else:
            assert low[0] <= high[0] and low[1] <= high[1], (low, high)


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
        # Capped or exact cover: each client that can receive a sat gets its
        # whole balance, so its remaining balance ends at exactly 0.00, and
        # exactly floor(balance x rate) sats. (Rule change: the exact cover
        # used to take the proportional path and leave cent crumbs; and a
        # capped client used to be allowed one sat below its worth.)
        for b in balances:
            worth = math.floor(Fraction(b.balance) * rate)
            got = next(
                (a for a in dist.allocations if a.client_id == b.client_id), None
            )
            if worth >= 1 and b.balance > 0:
                assert got is not None and got.fiat == b.balance
                assert got.sats == worth
            else:
                assert got is None
    else:
        # Covered: proportional. Sats within a sat of the client's exact share,
        # fiat within a cent of what those sats are worth at the rate.
        factor = Fraction(fiat) / Fraction(total)
        absent = 0
        absent_ceiling = 0
        for b in balances:
            got = next(
                (a for a in dist.allocations if a.client_id == b.client_id), None
            )
            ideal = Fraction(b.balance) * factor
            sats = got.sats if got else 0
            if got is None and math.floor(ideal * rate) >= 1:
                # Rule change: sats go only with a debit, so a client whose
                # sats would be worth less than a cent, with no cent left for
                # it, gets nothing (it used to get sats for 0.00).
                assert math.floor(ideal * rate) < rate / 100
                absent += 1
                absent_ceiling += math.ceil(ideal * rate)
            else:
                assert math.floor(ideal * rate) <= sats <= math.ceil(ideal * rate)
            if got is not None:
                worth = Fraction(got.sats) / rate
                assert abs(Fraction(got.fiat) - worth) < Fraction(1, 100)
        # Rounding against the caps or a tie of equal balances leaves fewer
        # than a sat per client; clients left without a debit leave their sats.
        assert dist.orphan_sats <= len(balances) + absent_ceiling


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
    distinct = len({b.balance for b in bal}) == len(bal)
    if dist.rate >= 100 and distinct:  # at least one sat per cent
        # Rule change: this held for any balances; now a tie of equal balances
        # that cannot all get the last sat or cent leaves it in the orphan
        # (see test_equal_balances_split_ten_sats; the example above: three
        # 0.01 balances cannot share the 2 sats left over), so it is checked
        # for distinct balances only. And a client whose sats are worth less
        # than a cent, with no cent left for it, leaves its sats in the orphan.
        assert dist.orphan_fiat == 0
        paid = {a.client_id for a in dist.allocations}
        unpaid = sum(1 for b in bal if b.client_id not in paid)
        assert dist.orphan_sats == 0 or dist.orphan_sats < unpaid * dist.rate / 100


tied_balances_st = st.lists(
    st.sampled_from([1, 2, 3, 7, 50, 99, 100, 754, 1_000, 69_000]),
    min_size=1,
    max_size=12,
).map(
    lambda values: [
        ClientBalance(f"c{i}", Decimal(v) * CENT) for i, v in enumerate(values)
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    principal=st.integers(min_value=0, max_value=10**9),
    commission=st.integers(min_value=0, max_value=10**6),
    fiat=st.integers(min_value=0, max_value=200_000).map(lambda v: Decimal(v) * CENT),
    balances=tied_balances_st,
)
@example(principal=10, commission=0, fiat=Decimal("1.00"), balances=[])
def test_equal_balances_get_equal_sats_and_fiat(principal, commission, fiat, balances):
    """Rule 1, with many ties: equal balances get equal sats and equal fiat,
    a larger balance never less; what a tie cannot share is orphaned."""
    balances = balances or [ClientBalance(f"c{i}", Decimal("10")) for i in range(3)]
    settlement = principal + commission
    dist = distribute(settlement, PrincipalSplit(principal, commission), fiat, balances)
    check_invariants(dist, balances)
    check_equal_treatment(dist, balances)


@settings(max_examples=300, deadline=None)
@given(
    principal=st.integers(min_value=1, max_value=10**7),
    fiat=st.integers(min_value=1, max_value=5_000).map(lambda v: Decimal(v) * CENT),
    balances=balances_st,
)
@example(
    principal=786,
    fiat=Decimal("0.03"),
    balances=[
        ClientBalance("a", Decimal("0.10")),
        ClientBalance("b", Decimal("0.47")),
        ClientBalance("c", Decimal("0.47")),
    ],
)
def test_sats_if_and_only_if_fiat(principal, fiat, balances):
    """Rule 2, at rates of many sats per cent (where a share of sats can be
    worth less than a cent): every payout has sats > 0 and fiat > 0.00, and a
    client without a payout is not debited (its fiat stays in the orphan)."""
    dist = distribute(principal, PrincipalSplit(principal, 0), fiat, balances)
    check_invariants(dist, balances)
    for a in dist.allocations:
        assert a.sats > 0 and a.fiat > 0
    assert dist.distributed_fiat + dist.orphan_fiat == dist.fiat_amount


@settings(max_examples=300, deadline=None)
@given(
    principal=st.integers(min_value=0, max_value=10**9),
    commission=st.integers(min_value=0, max_value=10**6),
    balances=st.one_of(balances_st, tied_balances_st),
)
@example(
    principal=217,
    commission=0,
    balances=[
        ClientBalance("a", Decimal("2.55")),
        ClientBalance("b", Decimal("2.02")),
        ClientBalance("c", Decimal("0.60")),
        ClientBalance("d", Decimal("2.46")),
    ],
)
def test_exact_cover_ends_every_balance_at_zero(principal, commission, balances):
    """Rule 3: the fiat equals the sum of the balances. Every client worth a sat
    is debited its whole balance and gets floor(balance x rate) sats; the
    orphan fiat is only the balances worth less than a sat, and the orphan
    sats are the sum of the fractions of balance x rate: fewer than one per
    client, none when every balance is worth a whole number of sats."""
    fiat = sum((b.balance for b in balances), Decimal("0.00"))
    settlement = principal + commission
    dist = distribute(settlement, PrincipalSplit(principal, commission), fiat, balances)
    check_invariants(dist, balances)
    if fiat == 0 or principal == 0:
        assert dist.allocations == () and dist.orphan_sats == principal
        return
    rate = dist.rate
    worth = {b.client_id: Fraction(b.balance) * rate for b in balances}
    got = {a.client_id: a for a in dist.allocations}
    unpaid_fiat = Decimal("0.00")
    for b in balances:
        if worth[b.client_id] >= 1:
            a = got[b.client_id]
            assert a.fiat == b.balance and a.capped
            assert a.sats == math.floor(worth[b.client_id])
        else:
            assert b.client_id not in got
            unpaid_fiat += b.balance
    assert dist.orphan_fiat == unpaid_fiat
    fractions = sum(w - math.floor(w) for w in worth.values())
    assert dist.orphan_sats == fractions  # an integer: sum(worth) == principal
    assert dist.orphan_sats < max(1, sum(1 for b in balances if b.balance > 0))
    if all(w.denominator == 1 for w in worth.values()):
        assert dist.orphan_sats == 0


def test_equal_balances_split_ten_sats():
    """Three equal balances, 10 sats (balances cover the fiat): 3 sats and the
    same 0.30 each; the tenth sat cannot go to all three, so it is the orphan's
    (it used to go to the first client: 4, 3, 3)."""
    balances = [ClientBalance(c, Decimal("10")) for c in "abc"]
    dist = distribute(10, PrincipalSplit(10, 0), Decimal("1.00"), balances)
    assert received(dist, balances) == [(3, Decimal("0.30"))] * 3
    assert dist.orphan_sats == 1 and dist.orphan_fiat == Decimal("0.10")
    check_invariants(dist, balances)
    # Capped, the same: each is debited its whole balance for 3 sats.
    dist = distribute(10, PrincipalSplit(10, 0), Decimal("30.01"), balances)
    assert received(dist, balances) == [(3, Decimal("10.00"))] * 3
    assert dist.orphan_sats == 1 and dist.orphan_fiat == Decimal("0.01")


def test_no_sats_for_a_zero_debit():
    """262 sats per cent: 0.10 of balance gets 76 sats, worth 0.29 of a cent.
    It used to be paid them for 0.00 (and the two equal 0.47 balances were
    debited 0.02 and 0.01); now every payout has a cent and equal balances
    are debited equally."""
    balances = [
        ClientBalance("a", Decimal("0.10")),
        ClientBalance("b", Decimal("0.47")),
        ClientBalance("c", Decimal("0.47")),
    ]
    dist = distribute(786, PrincipalSplit(786, 0), Decimal("0.03"), balances)
    assert received(dist, balances) == [
        (76, Decimal("0.01")),
        (355, Decimal("0.01")),
        (355, Decimal("0.01")),
    ]
    assert dist.orphan_sats == 0 and dist.orphan_fiat == 0
    check_invariants(dist, balances)
    # 32.2 sats per cent: 0.09 of balance gets 5 sats, worth 0.16 of a cent,
    # and the last cents go to larger remainders: no payout, no debit, its
    # 5 sats stay in the orphan (it used to get 5 sats for 0.00).
    balances = [
        ClientBalance("a", Decimal("0.09")),
        ClientBalance("b", Decimal("1.67")),
        ClientBalance("c", Decimal("2.06")),
        ClientBalance("d", Decimal("1.45")),
    ]
    dist = distribute(322, PrincipalSplit(322, 0), Decimal("0.10"), balances)
    assert received(dist, balances) == [
        (0, Decimal("0.00")),
        (102, Decimal("0.03")),
        (126, Decimal("0.04")),
        (89, Decimal("0.03")),
    ]
    assert dist.orphan_sats == 5 and dist.orphan_fiat == 0
    check_invariants(dist, balances)


def test_exact_cover_leaves_no_crumbs():
    """7.63 dispensed, balances summing to 7.63: every balance ends at 0.00 and
    the orphan fiat is 0.00 (it used to debit 2.54, 2.01, 0.60, 2.43 and orphan
    0.05). The 2 orphan sats are the fractions of balance x rate: giving them
    out would pay someone more than its balance is worth."""
    balances = [
        ClientBalance("a", Decimal("2.55")),
        ClientBalance("b", Decimal("2.02")),
        ClientBalance("c", Decimal("0.60")),
        ClientBalance("d", Decimal("2.46")),
    ]
    dist = distribute(217, PrincipalSplit(217, 0), Decimal("7.63"), balances)
    assert received(dist, balances) == [
        (72, Decimal("2.55")),
        (57, Decimal("2.02")),
        (17, Decimal("0.60")),
        (69, Decimal("2.46")),
    ]
    assert all(a.capped for a in dist.allocations)
    assert dist.orphan_fiat == 0 and dist.orphan_sats == 2
    # Whole sats per balance: nothing at all is orphaned.
    balances = [ClientBalance("a", Decimal("6")), ClientBalance("b", Decimal("4"))]
    dist = distribute(1_100, PrincipalSplit(1_000, 100), Decimal("10"), balances)
    assert received(dist, balances) == [(600, Decimal("6.00")), (400, Decimal("4.00"))]
    assert dist.orphan_sats == 0 and dist.orphan_fiat == 0


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
