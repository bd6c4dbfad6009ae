"""Property tests for fixed mode in the pure allocation (allocation.py, #12).

A fixed-mode client carries a daily cap (what is left of its allowance) besides
its balance. Checked over generated settlements: sats and cents conserved; no
client above its balance, its allowance, or floor(cap x rate) sats; clients
below their caps proportional to their balances; what a capped client cannot
take goes to the others (an orphan beyond rounding crumbs only when every
client is at its cap); and without caps exactly the flow-only split of before
(a frozen copy of the old module, tests/allocation_flow_only.py).
"""

from __future__ import annotations

import os
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import allocation_flow_only as old

from allocation import (
    ClientBalance,
    PrincipalSplit,
    distribute,
)

EXAMPLES = int(os.environ.get("ALLOC_EXAMPLES", "300"))
CENT = Decimal("0.01")

cents_st = st.integers(min_value=1, max_value=2_000_000).map(
    lambda c: Decimal(c) * CENT
)
client_st = st.tuples(
    cents_st,
    st.one_of(st.none(), st.integers(min_value=0, max_value=500_000)),
)
clients_st = st.lists(client_st, min_size=0, max_size=8)
fiat_st = st.integers(min_value=0, max_value=5_000_000).map(lambda c: Decimal(c) * CENT)
principal_st = st.integers(min_value=0, max_value=50_000_000)


def _balances(clients) -> list[ClientBalance]:
    return [
        ClientBalance(f"c{i}", balance, None if cap is None else Decimal(cap) * CENT)
        for i, (balance, cap) in enumerate(clients)
    ]


def _effective(b: ClientBalance) -> Decimal:
    return b.balance if b.cap is None else max(Decimal(0), min(b.balance, b.cap))


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(
    principal=principal_st,
    commission=st.integers(0, 10_000),
    fiat=fiat_st,
    clients=clients_st,
)
@example(  # README's worked example
    principal=100_000,
    commission=5_000,
    fiat=Decimal("1000"),
    clients=[
        (Decimal("800"), None),
        (Decimal("600"), 5_000),
        (Decimal("600"), None),
    ],
)
def test_fixed_caps_invariants(principal, commission, fiat, clients):
    balances = _balances(clients)
    settlement = principal + commission
    dist = distribute(settlement, PrincipalSplit(principal, commission), fiat, balances)
    # Conservation, to the sat and the cent; nothing negative.
    assert dist.distributed_sats + dist.commission_sats + dist.orphan_sats == settlement
    assert dist.distributed_fiat + dist.orphan_fiat == dist.fiat_amount
    assert dist.orphan_sats >= 0 and dist.orphan_fiat >= 0
    by_id = {b.client_id: b for b in balances}
    rate = dist.rate
    for a in dist.allocations:
        b = by_id[a.client_id]
        cap = _effective(b)
        assert 0 < a.fiat <= cap
        assert a.fiat <= b.balance
        if b.cap is not None:
            assert a.fiat <= b.cap  # never above the day's allowance left
        assert 0 < a.sats <= int(Fraction(cap) * rate)  # floor(cap x rate)
        assert a.capped == (a.fiat == b.balance)
    if not fiat or not principal:
        assert dist.allocations == ()
        return
    eligible = [b for b in balances if _effective(b) > 0]
    caps_total = sum((_effective(b) for b in eligible), Decimal(0))
    got = {a.client_id: a for a in dist.allocations}
    if caps_total <= fiat:
        # Everyone can be filled: each paid client takes exactly its cap.
        for b in eligible:
            if b.client_id in got:
                assert got[b.client_id].fiat == _effective(b)
        return
    # Room left somewhere: only rounding crumbs may be orphaned (per client
    # less than a sat, or the sats of a share worth less than a cent, which
    # is never paid without a debit), the rest goes to clients with room.
    n = len(eligible)
    per_client = 1 + rate / 100
    assert dist.orphan_sats <= n * per_client, (dist.orphan_sats, n)
    assert Fraction(dist.orphan_fiat) <= n * (1 / rate + Fraction(1, 100)), dist
    # Paid clients below their caps are proportional to their balances: each
    # within a sat of its exact share.
    room = [
        b
        for b in eligible
        # two sats below floor(cap x rate): surely not filled to its cap
        if b.client_id in got
        and got[b.client_id].sats <= int(Fraction(_effective(b)) * rate) - 2
    ]
    for i in room:
        for j in room:
            si, sj = got[i.client_id].sats, got[j.client_id].sats
            bi, bj = Fraction(i.balance), Fraction(j.balance)
            assert abs(si * bj - sj * bi) <= bi + bj, (i, j, si, sj)


@SETTINGS
@given(
    principal=principal_st,
    commission=st.integers(0, 10_000),
    fiat=fiat_st,
    clients=st.lists(cents_st, min_size=0, max_size=8),
    loose=st.booleans(),
)
def test_without_caps_exactly_the_flow_only_split(
    principal, commission, fiat, clients, loose
):
    """No client fixed (or every allowance at least the balance): the result
    is exactly what the flow-only allocation gave, field for field."""
    settlement = principal + commission
    split = PrincipalSplit(principal, commission)
    new = distribute(
        settlement,
        split,
        fiat,
        [
            ClientBalance(f"c{i}", b, b + 1 if loose else None)
            for i, b in enumerate(clients)
        ],
    )
    ref = old.distribute(
        settlement,
        old.PrincipalSplit(principal, commission),
        fiat,
        [old.ClientBalance(f"c{i}", b) for i, b in enumerate(clients)],
    )
    assert [(a.client_id, a.sats, a.fiat, a.capped) for a in new.allocations] == [
        (a.client_id, a.sats, a.fiat, a.capped) for a in ref.allocations
    ]
    assert all(not a.limited for a in new.allocations)
    assert (
        new.orphan_sats,
        new.orphan_fiat,
        new.capped,
        new.rate,
        new.commission_sats,
    ) == (ref.orphan_sats, ref.orphan_fiat, ref.capped, ref.rate, ref.commission_sats)


@SETTINGS
@given(
    principal=principal_st,
    fiat=fiat_st,
    balance=cents_st,
    cap=st.integers(0, 500_000),
    others=st.lists(cents_st, max_size=4),
)
def test_equal_clients_are_treated_equally(principal, fiat, balance, cap, others):
    """Two fixed clients with the same balance and allowance get the same."""
    caps = Decimal(cap) * CENT
    balances = [
        ClientBalance("x1", balance, caps),
        ClientBalance("x2", balance, caps),
        *(ClientBalance(f"o{i}", b) for i, b in enumerate(others)),
    ]
    dist = distribute(principal, PrincipalSplit(principal, 0), fiat, balances)
    got = {a.client_id: (a.sats, a.fiat) for a in dist.allocations}
    assert got.get("x1") == got.get("x2")


def test_worked_example_from_the_readme():
    """1000 GTQ dispensed for 100,000 sats (100 sats/GTQ). Ana (flow, 800),
    Beto (fixed, 600 left, 50 left of today's limit), Carla (flow, 600).
    Proportional shares would be 400 / 300 / 300; Beto can take 50, so the
    250 he cannot take goes to Ana and Carla in proportion to 800:600."""
    balances = [
        ClientBalance("ana", Decimal("800")),
        ClientBalance("beto", Decimal("600"), Decimal("50")),
        ClientBalance("carla", Decimal("600")),
    ]
    dist = distribute(105_000, PrincipalSplit(100_000, 5_000), Decimal(1000), balances)
    got = {a.client_id: (a.sats, a.fiat, a.limited) for a in dist.allocations}
    assert got["beto"] == (5_000, Decimal("50.00"), True)
    # 950 GTQ between 800 and 600: 542.857... and 407.142...
    assert got["ana"][0] + got["carla"][0] == 95_000
    assert got["ana"] == (54_286, Decimal("542.86"), False)
    assert got["carla"] == (40_714, Decimal("407.14"), False)
    assert dist.orphan_sats == 0 and dist.orphan_fiat == 0


def test_orphan_only_when_everyone_is_capped():
    balances = [
        ClientBalance("flow", Decimal("100")),
        ClientBalance("fixed", Decimal("500"), Decimal("20")),
    ]
    dist = distribute(50_000, PrincipalSplit(50_000, 0), Decimal(500), balances)
    got = {a.client_id: (a.sats, a.fiat) for a in dist.allocations}
    assert got == {
        "flow": (10_000, Decimal("100.00")),
        "fixed": (2_000, Decimal("20.00")),
    }
    assert dist.orphan_sats == 38_000 and dist.orphan_fiat == Decimal("380.00")
    # A used-up allowance takes nothing: the flow client takes all it can.
    used_up = [
        ClientBalance("flow", Decimal("1000")),
        ClientBalance("fixed", Decimal("500"), Decimal("0")),
    ]
    dist = distribute(50_000, PrincipalSplit(50_000, 0), Decimal(500), used_up)
    assert [(a.client_id, a.sats) for a in dist.allocations] == [("flow", 50_000)]
