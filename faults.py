"""Deterministic crash points for the crash-safety tests.

`SATMACHINE_CRASH_AT="payout_paid:3"` makes the process SIGKILL itself the third
time it reaches the point named `payout_paid`, exactly like a power cut there
(no cleanup, no shutdown hook). The variable is read once at import; unset, as
it always is outside tests/test_crash.py, `crash_point` returns at once.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_TARGET = os.environ.get("SATMACHINE_CRASH_AT", "")
_POINT, _, _NTH = _TARGET.partition(":")
_reached: Counter[str] = Counter()


def crash_point(name: str) -> None:
    if not _POINT or name != _POINT:
        return
    _reached[name] += 1
    if _reached[name] == int(_NTH or 1):
        os.kill(os.getpid(), signal.SIGKILL)
