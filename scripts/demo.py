"""Seed a running LNbits (started by `scripts/run.sh --demo`) with a demo setup:
super user `demo` / `demo-password-1`, source and commission wallets, four
clients with the confirmed balances of the incident that started this project
(690, 7.54, 2.38 and 0.07 GTQ), and one settlement of 317,700 sats for 2000 GTQ
paid into the source wallet by an "ATM customer" wallet (funded by an admin
credit: FakeWallet demo money). Open the dashboard to see the split and orphan.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

USERNAME, PASSWORD = "demo", "demo-password-1"


def call(base: str, method: str, path: str, body=None, token=None, key=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if key:
        headers["X-Api-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data, headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
        return json.loads(text) if text else None


def wait_until_up(base: str) -> None:
    for _ in range(120):
        try:
            urllib.request.urlopen(base + "/api/v1/health", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # 307 before the first install: it is up
        except Exception:
            time.sleep(0.5)
    sys.exit("LNbits did not come up")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    wait_until_up(base)
    time.sleep(1)
    try:
        call(
            base,
            "PUT",
            "/api/v1/auth/first_install",
            {"username": USERNAME, "password": PASSWORD, "password_repeat": PASSWORD},
        )
    except urllib.error.HTTPError:
        pass  # already installed
    try:
        token = call(
            base, "POST", "/api/v1/auth", {"username": USERNAME, "password": PASSWORD}
        )["access_token"]
    except urllib.error.HTTPError:
        print("demo: this data folder already has another super user; skipping seed")
        return
    call(base, "PUT", "/api/v1/extension/satmachineadmin/enable", token=token)
    api = "/satmachineadmin/api/v1/dca"
    if call(base, "GET", api + "/config", token=token):
        print("demo: already seeded")
        return

    def wallet(name: str) -> dict:
        return call(base, "POST", "/api/v1/wallet", {"name": name}, token=token)

    source, commission, customer = (
        wallet("ATM source"),
        wallet("Commission"),
        wallet("ATM customer"),
    )
    call(
        base,
        "POST",
        api + "/config",
        {"source_wallet_id": source["id"], "commission_wallet_id": commission["id"]},
        token=token,
    )
    for name, amount in (
        ("Ana", "690"),
        ("Beto", "7.54"),
        ("Carla", "2.38"),
        ("Dani", "0.07"),
    ):
        client_wallet = wallet(f"DCA {name}")
        client = call(
            base,
            "POST",
            api + "/clients",
            {"wallet_id": client_wallet["id"], "username": name},
            token=token,
        )
        deposit = call(
            base,
            "POST",
            api + "/deposits",
            {"client_id": client["id"], "amount": amount, "currency": "GTQ"},
            token=token,
        )
        call(
            base,
            "PUT",
            f"{api}/deposits/{deposit['id']}/status",
            {"status": "confirmed"},
            token=token,
        )
    call(
        base,
        "PUT",
        "/users/api/v1/balance",
        {"id": customer["id"], "amount": 400_000},
        token=token,
    )
    invoice = call(
        base,
        "POST",
        "/api/v1/payments",
        {
            "out": False,
            "amount": 317_700,
            "memo": "ATM Lightning Sale",
            "extra": {
                "source": "bitspire",
                "principal_sats": 300_226,
                "fee_sats": 17_474,
                "exchange_rate": "666164.22",
                "currency": "GTQ",
                "bills": [{"denomination": 100, "count": 20}],
                "txid": "demo-cash-out",
            },
        },
        key=source["inkey"],
    )
    call(
        base,
        "POST",
        "/api/v1/payments",
        {"out": True, "bolt11": invoice["bolt11"]},
        key=customer["adminkey"],
    )
    print(
        f"demo: seeded. Log in at {base}/ as {USERNAME} / {PASSWORD} and open "
        f"{base}/satmachineadmin/. Offline no price feed confirms the ATM's "
        "price, so the settlement waits flagged: accept it under Settlements."
    )


if __name__ == "__main__":
    main()
