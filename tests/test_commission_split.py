"""The pure commission split (commission_split.py): exact sats by largest
remainder, checked for every input hypothesis can think of."""

from __future__ import annotations

import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# The pure module has no LNbits imports: load it straight from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from commission_split import (
    CommissionSplitError,
    check_percentages,
    parse_percent,
    split_commission,
)


@st.composite
def percentages(draw) -> list[Decimal]:
    """1-6 exact percentages (up to 4 places) adding up to exactly 100."""
    n = draw(st.integers(1, 6))
    units = 1_000_000  # 100 % in 1/10000 of a percent
    cuts = sorted(
        draw(
            st.lists(
                st.integers(1, units - 1), min_size=n - 1, max_size=n - 1, unique=True
            )
        )
    )
    bounds = [0, *cuts, units]
    return [Decimal(bounds[i + 1] - bounds[i]).scaleb(-4) for i in range(n)]


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2_100_000_000_000_000), percentages())
def test_parts_conserve_the_commission_within_a_sat(commission, shares):
    parts = split_commission(commission, shares)
    assert sum(parts) == commission
    assert len(parts) == len(shares)
    for part, share in zip(parts, shares, strict=True):
        exact = Fraction(commission) * Fraction(share) / 100
        assert part >= 0
        assert abs(part - exact) < 1
        assert part in (exact.numerator // exact.denominator, -(-exact // 1))
    # Deterministic.
    assert split_commission(commission, shares) == parts


def test_three_way_split_example():
    shares = [Decimal(60), Decimal(30), Decimal(10)]
    assert split_commission(14_096, shares) == [8_458, 4_229, 1_409]
    assert split_commission(1, shares) == [1, 0, 0]
    assert split_commission(0, shares) == [0, 0, 0]
    # Equal remainders: the larger percentage first, then list order.
    thirds = [Decimal("33.3333"), Decimal("33.3333"), Decimal("33.3334")]
    # Exact shares 0.666666, 0.666666, 0.666668: the last has the largest
    # remainder, then the tie between the first two goes to the first.
    assert split_commission(2, thirds) == [1, 0, 1]
    assert split_commission(10, [Decimal(50), Decimal(50)]) == [5, 5]
    assert split_commission(11, [Decimal(50), Decimal(50)]) == [6, 5]


@pytest.mark.parametrize(
    "shares",
    [[], [Decimal(60), Decimal(30)], [Decimal(60), Decimal(40), Decimal("0.0001")]],
)
def test_percentages_not_adding_to_100_are_refused(shares):
    with pytest.raises(CommissionSplitError):
        check_percentages(shares)
    with pytest.raises(CommissionSplitError):
        split_commission(100, shares)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("60", Decimal(60)),
        ("33.3333", Decimal("33.3333")),
        (12.5, Decimal("12.5")),
        ("60.00", Decimal(60)),
        ("0.0001", Decimal("0.0001")),
        (100, Decimal(100)),
    ],
)
def test_parse_percent(text, value):
    assert parse_percent(text) == value


@pytest.mark.parametrize(
    "bad",
    [
        "0",
        "-5",
        "100.0001",
        "1.00001",
        "1e-30",
        "1" * 40 + ".00001",
        "abc",
        "NaN",
        "sNaN",
        "Infinity",
        True,
        None,
    ],
)
def test_parse_percent_refuses(bad):
    with pytest.raises(CommissionSplitError):
        parse_percent(bad)
