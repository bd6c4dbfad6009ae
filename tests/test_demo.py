"""`scripts/run.sh --demo` seeds a fresh LNbits (scripts/demo.py) with the seed
incident: run it against a real LNbits process and check what the operator
will see, and that a second run leaves the data alone."""

from __future__ import annotations

import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from live_server import LiveLNbits

pytestmark = pytest.mark.sqlite_only

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"


def run_demo(live: LiveLNbits) -> str:
    result = subprocess.run(
        [sys.executable, str(DEMO), "--port", str(live.port)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_demo_seeds_the_seed_incident_once():
    live = LiveLNbits()
    try:
        live.start()
        assert "demo: seeded" in run_demo(live)

        response = live.http.post(
            "/api/v1/auth", json={"username": "demo", "password": "demo-password-1"}
        )
        assert response.status_code == 200, response.text
        live.token = response.json()["access_token"]
        settlements = live.api("GET", "/settlements").json()["data"]
        assert len(settlements) == 1
        path = f"/settlements/{settlements[0]['id']}"
        # Offline (no price feed) nothing confirms the ATM's price: the
        # settlement waits flagged until the operator accepts it.
        deadline = time.monotonic() + 60
        while (settlement := live.api("GET", path).json())["status"] != "flagged":
            assert time.monotonic() < deadline, settlement
            time.sleep(0.2)
        assert "cannot be checked" in settlement["status_detail"]
        assert settlement["payouts"] == []
        response = live.api("POST", f"{path}/accept", json={"reason": "demo"})
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 60  # the split runs after the acceptance
        while (settlement := live.api("GET", path).json())["status"] != "completed":
            assert time.monotonic() < deadline, settlement
            time.sleep(0.2)
        assert settlement["amount_sats"] == 317_700
        payouts = settlement["payouts"]
        assert len(payouts) == 4
        assert all(p["status"] == "confirmed" for p in payouts)
        orphan = settlement["reconciliation"]
        assert orphan and orphan["status"] == "open"
        assert (
            sum(p["amount_sats"] for p in payouts)
            + settlement["commission_sats"]
            + orphan["orphan_sats"]
            == 317_700
        )
        for client in live.api("GET", "/clients").json():
            assert Decimal(str(client["remaining_balance"])) == 0

        assert "demo: already seeded" in run_demo(live)
        assert len(live.api("GET", "/settlements").json()["data"]) == 1
    finally:
        live.close()
