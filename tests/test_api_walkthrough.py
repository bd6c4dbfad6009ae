"""The README's curl walkthrough runs as written: its ```bash blocks, in order,
in one bash (-euo pipefail), with curl and jq, against a real LNbits server
process; then the end state is checked through the API."""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from live_server import LiveLNbits

pytestmark = pytest.mark.sqlite_only

DOC = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough_script() -> str:
    text = DOC.read_text()
    section = text[text.index("### API walkthrough (curl)") :]
    section = section[: section.index("\n## ")]  # up to the next section
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 5
    return "\n".join(blocks)


def test_curl_walkthrough_runs_as_written():
    for tool in ("bash", "curl", "jq"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    live = LiveLNbits()
    try:
        live.start()
        live.first_install()
        operator = live.create_wallet("Operator")
        source = live.create_wallet("Source")
        payer = live.create_wallet("ATM customer")
        live.credit(payer["id"], 50_000)
        client = live.create_user_wallet("maria")

        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walkthrough_script()],
            env={
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LNBITS": live.url,
                "ADMIN_KEY": operator["adminkey"],
                "SOURCE_WALLET": source["id"],
                "SOURCE_INKEY": source["inkey"],
                "CLIENT_WALLET": client["id"],
                "PAYER_ADMIN_KEY": payer["adminkey"],
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        # Offline, as the run command: flagged (no price feed), then accepted.
        assert "settlement: flagged" in out
        assert "cannot be checked" in out
        assert "resolving again: HTTP 409" in out

        settlement = live.api("GET", "/settlements", params={"limit": 1}).json()
        settlement = settlement["data"][0]
        assert settlement["status"] == "completed"
        assert settlement["distributed_sats"] == 10_000
        assert settlement["orphan_sats"] == 10_000
        assert settlement["commission_sats"] == 1_000
        clients = live.api("GET", "/clients").json()
        assert [c["username"] for c in clients] == ["maria"]
        assert Decimal(str(clients[0]["remaining_balance"])) == 0
        assert live.balance(client) == 10_000
        recs = live.api("GET", "/reconciliations").json()["data"]
        assert [(r["status"], r["resolution"]) for r in recs] == [
            ("resolved", "operator_funds")
        ]
        # The orphan and the (unconfigured) commission stayed in the source.
        assert live.balance(source) == 11_000
    finally:
        live.close()
