"""Pure commission split: a settlement's commission shared among recipients.

No LNbits imports and no I/O. Percentages are exact decimals (at most four
places) that add up to exactly 100; sats are integers.

Rounding rule (largest remainder, the parts add up to the commission exactly):

* Each recipient's exact share is ``C * p_i / 100`` (an exact Fraction); it
  first gets the floor of that.
* The sats still unassigned (fewer than the number of recipients) go one each
  to the recipients with the largest fractional remainders; ties go to the
  larger percentage, then to the earlier recipient in the list. A recipient
  never gets a sat when its remainder is 0.
* So ``sum(parts) == C``, every part is the floor or the ceiling of its exact
  share (within 1 sat of it), nothing is negative, and the same inputs always
  give the same parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction

try:  # messages.py is pure too; tests load this module on its own
    from .messages import MessageError
except ImportError:  # pragma: no cover
    from messages import MessageError  # type: ignore[no-redef]

HUNDRED = Decimal(100)
MAX_PLACES = 4
MAX_RECIPIENTS = 20


class CommissionSplitError(MessageError):
    """Percentages that cannot describe a commission split (a ValueError; its
    text in the request's language, messages.py)."""


def parse_percent(value: object) -> Decimal:
    """An exact percentage: a number (or numeric text) in (0, 100] with at most
    four decimal places. Floats go through repr() so 33.3 stays 33.3."""
    if isinstance(value, bool):
        raise CommissionSplitError("percent.not_a_number")
    try:
        text = repr(value) if isinstance(value, float) else str(value)
        number = Decimal(text.strip())
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise CommissionSplitError("percent.unreadable", value=repr(value)) from exc
    if not number.is_finite():
        raise CommissionSplitError("percent.not_finite")
    if number <= 0 or number > HUNDRED:
        raise CommissionSplitError("percent.out_of_range", number=str(number))
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PLACES:
        if number != number.quantize(Decimal(1).scaleb(-MAX_PLACES)):
            raise CommissionSplitError(
                "percent.too_many_places", number=str(number), places=MAX_PLACES
            )
    return Decimal(f"{number.normalize():f}")  # 60.0 -> 60, 33.30 -> 33.3


def check_percentages(percentages: Sequence[Decimal]) -> None:
    """Refuse a set of percentages that does not add up to exactly 100."""
    if not percentages:
        raise CommissionSplitError("recipients.none")
    if len(percentages) > MAX_RECIPIENTS:
        raise CommissionSplitError("recipients.too_many", maximum=MAX_RECIPIENTS)
    total = sum(percentages, Decimal(0))
    if total != HUNDRED:
        raise CommissionSplitError(
            "recipients.total_not_100", total=f"{total.normalize():f}"
        )


def split_commission(commission_sats: int, percentages: Sequence[Decimal]) -> list[int]:
    """The commission's parts, one per percentage, in the same order."""
    if not isinstance(commission_sats, int) or isinstance(commission_sats, bool):
        raise CommissionSplitError("commission.sats_not_integer")
    if commission_sats < 0:
        raise CommissionSplitError("commission.sats_negative")
    check_percentages(percentages)
    exact = [Fraction(commission_sats) * Fraction(p) / 100 for p in percentages]
    parts = [e.numerator // e.denominator for e in exact]
    left = commission_sats - sum(parts)
    order = sorted(
        range(len(exact)),
        key=lambda i: (-(exact[i] - parts[i]), -Fraction(percentages[i]), i),
    )
    for i in order[:left]:
        # left < number of recipients with a positive remainder, always: the
        # remainders add up to exactly `left`, each below 1.
        parts[i] += 1
    return parts
