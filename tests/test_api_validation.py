"""Bad input gets a clear 4xx with a message, and the data is unchanged
afterwards; unknown ids 404; state conflicts 409. Lists paginate, filter and
sort on every advertised field."""

from __future__ import annotations

from decimal import Decimal

import pytest
from api_helpers import PREFIX, add_deposit, make_orphan, register_client, snapshot

pytestmark = pytest.mark.asyncio(loop_scope="session")

HUGE = "x" * 100_000


def _message(response) -> str:
    """The error's message: a string, or LNbits' list of validation errors."""
    detail = response.json()["detail"]
    if isinstance(detail, list):
        assert detail and all(d.get("msg") for d in detail), detail
        return "; ".join(f"{d.get('loc')}: {d['msg']}" for d in detail)
    assert isinstance(detail, str) and detail, detail
    return detail


async def _rejected(env, method, path, expected, **kw) -> str:
    response = await env.api(method, path, **kw)
    assert response.status_code == expected, (method, path, kw, response.text)
    return _message(response)


# ------------------------------------------------------------------ deposits

BAD_AMOUNTS = [
    -5,
    "-0.01",
    0,
    "0.00",
    "abc",
    "",
    None,
    True,
    "NaN",
    "Infinity",
    "1e12",
    "1000000000.01",
    "1.234",
    [],
    {"amount": 1},
]


async def test_create_deposit_rejects_bad_input_and_changes_nothing(env):
    client = await register_client(env)
    await add_deposit(env, client["id"], "10")
    before = await snapshot(env)
    for amount in BAD_AMOUNTS:
        message = await _rejected(
            env,
            "POST",
            "/deposits",
            400,
            json={"client_id": client["id"], "amount": amount},
        )
        assert "amount" in message, message
    for currency in ["gtq", "GT", "GTQQ", "", "12$", 123, HUGE]:
        message = await _rejected(
            env,
            "POST",
            "/deposits",
            400,
            json={"client_id": client["id"], "amount": "5", "currency": currency},
        )
        assert "currency" in message, message
    await _rejected(
        env,
        "POST",
        "/deposits",
        400,
        json={"client_id": client["id"], "amount": "5", "notes": HUGE},
    )
    for client_id in ["", HUGE, None]:
        await _rejected(
            env, "POST", "/deposits", 400, json={"client_id": client_id, "amount": 5}
        )
    message = await _rejected(
        env, "POST", "/deposits", 404, json={"client_id": "nope", "amount": "5"}
    )
    assert "Client not found" in message
    await _rejected(env, "POST", "/deposits", 400, content=b"{not json")
    await _rejected(env, "POST", "/deposits", 400, json=[1, 2])
    assert await snapshot(env) == before


async def test_deposit_keeps_its_cents(env):
    client = await register_client(env)
    deposit = await add_deposit(env, client["id"], "7.54", confirm=True)
    assert Decimal(str(deposit["amount"])) == Decimal("7.54")
    balance = (await env.api("GET", f"/clients/{client['id']}/balance")).json()
    assert Decimal(str(balance["remaining_balance"])) == Decimal("7.54")


async def test_deposit_state_conflicts_are_409_and_change_nothing(env):
    client = await register_client(env)
    confirmed = await add_deposit(env, client["id"], "20", confirm=True)
    cancelled = await add_deposit(env, client["id"], "30")
    response = await env.api(
        "PUT", f"/deposits/{cancelled['id']}/status", json={"status": "cancelled"}
    )
    assert response.status_code == 200, response.text
    pending = await add_deposit(env, client["id"], "40")
    before = await snapshot(env)
    history = {
        d["id"]: (await env.api("GET", f"/deposits/{d['id']}/history")).json()
        for d in (confirmed, cancelled, pending)
    }

    # Confirming a confirmed deposit, cancelling it, re-opening it.
    for status in ("confirmed", "cancelled", "pending"):
        message = await _rejected(
            env,
            "PUT",
            f"/deposits/{confirmed['id']}/status",
            409,
            json={"status": status},
        )
        assert "confirmed" in message, message
    for status in ("confirmed", "cancelled"):
        await _rejected(
            env,
            "PUT",
            f"/deposits/{cancelled['id']}/status",
            409,
            json={"status": status},
        )
    message = await _rejected(
        env, "PUT", f"/deposits/{pending['id']}/status", 409, json={"status": "pending"}
    )
    assert "pending" in message
    # Editing a confirmed or cancelled deposit.
    for deposit in (confirmed, cancelled):
        message = await _rejected(
            env, "PUT", f"/deposits/{deposit['id']}", 409, json={"amount": "1"}
        )
        assert "pending" in message, message
    # Bad values on the pending one; an unknown status.
    for body in (
        {"amount": "-1"},
        {"amount": 0},
        {"currency": "usd"},
        {"notes": HUGE},
    ):
        await _rejected(env, "PUT", f"/deposits/{pending['id']}", 400, json=body)
    for status in ("done", "", None, "CONFIRMED"):
        await _rejected(
            env,
            "PUT",
            f"/deposits/{pending['id']}/status",
            400,
            json={"status": status},
        )
    # Unknown ids.
    await _rejected(env, "PUT", "/deposits/nope", 404, json={"amount": "1"})
    await _rejected(
        env, "PUT", "/deposits/nope/status", 404, json={"status": "confirmed"}
    )

    assert await snapshot(env) == before
    for deposit_id, entries in history.items():
        response = await env.api("GET", f"/deposits/{deposit_id}/history")
        assert response.json() == entries


async def test_editing_a_pending_deposit_is_audited(env):
    client = await register_client(env)
    deposit = await add_deposit(env, client["id"], "40")
    response = await env.api(
        "PUT",
        f"/deposits/{deposit['id']}",
        json={"amount": "45.50", "notes": "counted again"},
    )
    assert response.status_code == 200, response.text
    assert Decimal(str(response.json()["amount"])) == Decimal("45.50")
    history = (await env.api("GET", f"/deposits/{deposit['id']}/history")).json()
    assert [h["action"] for h in history] == ["created", "edited"]
    assert "40" in history[1]["details"] and "45.5" in history[1]["details"]
    response = await env.api(
        "PUT", f"/deposits/{deposit['id']}/status", json={"status": "cancelled"}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


# ------------------------------------------------------------------- clients


async def test_client_registration_and_update_reject_bad_input(env):
    client = await register_client(env)
    _, other_wallet = await env.user_with_wallet("validation other")
    before = await snapshot(env)
    message = await _rejected(
        env, "POST", "/clients", 404, json={"wallet_id": "no-such-wallet"}
    )
    assert "Wallet not found" in message
    message = await _rejected(
        env, "POST", "/clients", 409, json={"wallet_id": client["wallet_id"]}
    )
    assert "already registered" in message
    for body in (
        {"wallet_id": ""},
        {"wallet_id": HUGE},
        {"wallet_id": other_wallet.id, "username": HUGE},
        {"wallet_id": other_wallet.id, "dca_mode": "sometimes"},
        {"wallet_id": other_wallet.id, "fixed_mode_daily_limit": -1},
        {},
    ):
        await _rejected(env, "POST", "/clients", 400, json=body)
    for body in (
        {"dca_mode": "sometimes"},
        {"status": "deleted"},
        {"username": HUGE},
        {"fixed_mode_daily_limit": "0"},
    ):
        await _rejected(env, "PUT", f"/clients/{client['id']}", 400, json=body)
    for status in ("deleted", "", None):
        await _rejected(
            env,
            "PUT",
            f"/clients/{client['id']}/status",
            400,
            json={"status": status},
        )
    await _rejected(env, "PUT", "/clients/nope", 404, json={"username": "x"})
    await _rejected(env, "PUT", "/clients/nope/status", 404, json={"status": "active"})
    assert await snapshot(env) == before


async def test_client_rows_written_by_the_client_extension_do_not_crash(env):
    """The client extension writes dca_clients without validation: odd modes,
    statuses and a NULL limit must still list and read."""
    from satmachineadmin.crud import S, db

    client = await register_client(env)
    await db.execute(
        f"UPDATE {S}.dca_clients SET dca_mode = 'weird', status = 'paused', "
        "fixed_mode_daily_limit = NULL, username = NULL WHERE id = :id",
        {"id": client["id"]},
    )
    response = await env.api("GET", f"/clients/{client['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["dca_mode"] == "weird"
    response = await env.api("GET", "/clients", params={"dca_mode": "weird"})
    assert response.status_code == 200, response.text
    # Other tests leave odd rows too (test_untrusted_rows): this one is listed.
    assert client["id"] in [c["id"] for c in response.json()]
    response = await env.api(
        "PUT", f"/clients/{client['id']}/status", json={"status": "inactive"}
    )
    assert response.status_code == 200, response.text


# ------------------------------------------------------------ reconciliations


async def test_orphan_resolution_conflicts_and_bad_input(env):
    _, orphan = await make_orphan(env, sats=3_000)
    path = f"/reconciliations/{orphan['id']}/resolve"
    before = await snapshot(env)
    for body in (
        {"action": "burn"},
        {},
        {"action": "send_to_wallet", "wallet_id": HUGE},
        {"action": "operator_funds", "note": HUGE},
    ):
        await _rejected(env, "POST", path, 400, json=body)
    message = await _rejected(env, "POST", path, 400, json={"action": "send_to_wallet"})
    assert "wallet_id" in message
    await _rejected(
        env,
        "POST",
        path,
        400,
        json={"action": "send_to_wallet", "wallet_id": "no-such-wallet"},
    )
    message = await _rejected(
        env, "POST", path, 400, json={"action": "attribute_to_client", "client_id": "x"}
    )
    assert "client_id" in message
    await _rejected(
        env,
        "POST",
        "/reconciliations/nope/resolve",
        404,
        json={"action": "operator_funds"},
    )
    assert await snapshot(env) == before  # still open, nothing moved

    response = await env.api(
        "POST", path, json={"action": "operator_funds", "note": "my float"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "resolved"
    resolved = await snapshot(env)
    history = (await env.api("GET", f"/reconciliations/{orphan['id']}/history")).json()
    for body in (
        {"action": "operator_funds"},
        {"action": "send_to_wallet", "wallet_id": (await env.wallet("x")).id},
    ):
        message = await _rejected(env, "POST", path, 409, json=body)
        assert "resolved" in message, message
    assert await snapshot(env) == resolved
    again = (await env.api("GET", f"/reconciliations/{orphan['id']}/history")).json()
    assert again == history


# ---------------------------------------------------------------- settlements


async def test_settlement_actions_reject_bad_input_and_state(env):
    settlement, _ = await make_orphan(env, sats=2_500)
    sid = settlement["id"]
    before = await snapshot(env)
    for body in (
        {"fiat_amount": "-1", "principal_sats": 1},
        {"fiat_amount": "10", "principal_sats": -1},
        {"fiat_amount": "10", "fiat_code": "gtq", "principal_sats": 1},
        {"fiat_amount": "10", "commission_percentage": 1},
        {"fiat_amount": "10", "discount": 101, "commission_percentage": "0.05"},
        {"fiat_amount": "10", "raw_ticker_price": 0},
        {"fiat_amount": "10", "principal_sats": 1, "note": HUGE},
    ):
        await _rejected(env, "PUT", f"/settlements/{sid}/cash-out", 400, json=body)
    # Valid data, but the settlement is completed: a conflict.
    message = await _rejected(
        env,
        "PUT",
        f"/settlements/{sid}/cash-out",
        409,
        json={"fiat_amount": "10", "principal_sats": 1},
    )
    assert "completed" in message
    for reason in ("", "no", HUGE):
        await _rejected(
            env, "PUT", f"/settlements/{sid}/dismiss", 400, json={"reason": reason}
        )
    await _rejected(
        env, "PUT", f"/settlements/{sid}/dismiss", 409, json={"reason": "a top-up"}
    )
    await _rejected(env, "POST", f"/settlements/{sid}/retry", 409)
    await _rejected(
        env,
        "PUT",
        "/settlements/nope/cash-out",
        404,
        json={"fiat_amount": "10", "principal_sats": 1},
    )
    await _rejected(
        env, "PUT", "/settlements/nope/dismiss", 404, json={"reason": "x" * 5}
    )
    await _rejected(env, "POST", "/settlements/nope/retry", 404)
    assert await snapshot(env) == before


# -------------------------------------------------------------------- config


async def test_config_rejects_bad_input_and_keeps_secrets(env):
    source = await env.wallet("validation source")
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source.id, "password": "db-secret", "port": 5433},
    )
    assert response.status_code == 201, response.text
    config = response.json()
    assert config["password_set"] is True
    assert "password" not in config and "db-secret" not in response.text
    before = await snapshot(env)
    for body in (
        {"port": 0},
        {"port": 65536},
        {"ssh_port": -1},
        {"limit_currency": "gt"},
        {"max_daily_limit": "-5"},
        {"expected_commission_percentage": 1.5},
        {"host": HUGE},
        {"ssh_private_key": HUGE},
    ):
        await _rejected(env, "POST", "/config", 400, json=body)
        await _rejected(env, "PUT", f"/config/{config['id']}", 400, json=body)
    for key in ("source_wallet_id", "commission_wallet_id"):
        message = await _rejected(
            env, "PUT", f"/config/{config['id']}", 400, json={key: "no-such-wallet"}
        )
        assert key in message
    await _rejected(env, "PUT", "/config/nope", 404, json={"port": 5432})
    await _rejected(env, "DELETE", "/config/nope", 404)
    assert await snapshot(env) == before
    # A secret left out keeps its value.
    response = await env.api("PUT", f"/config/{config['id']}", json={"port": 5434})
    assert response.status_code == 200, response.text
    assert response.json()["password_set"] is True


async def test_dry_run_rejects_bad_input(env):
    for body in (
        {"amount_sats": 0, "fiat_amount": "10"},
        {"amount_sats": -1, "fiat_amount": "10"},
        {"amount_sats": 10**20, "fiat_amount": "10"},
        {"amount_sats": 1000, "fiat_amount": "0"},
        {"amount_sats": 1000, "fiat_amount": "10", "commission_percentage": 1},
        {"amount_sats": 1000, "fiat_amount": "10", "fiat_code": "Q"},
    ):
        await _rejected(env, "POST", "/test-transaction", 400, json=body)
    before = await snapshot(env)
    response = await env.api(
        "POST", "/test-transaction", json={"amount_sats": 10_000, "fiat_amount": "10"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["moved_money"] is False
    assert await snapshot(env) == before


# ---------------------------------------------------------- unknown ids, lists


async def test_every_get_with_an_unknown_id_is_404(env, app):
    from fastapi.routing import APIRoute

    checked = []
    for route in app.routes:
        if not (isinstance(route, APIRoute) and route.path.startswith(PREFIX)):
            continue
        if "GET" not in route.methods or "{" not in route.path:
            continue
        for unknown in ("nope", "x" * 5000, "'; DROP TABLE x;--", "%00"):
            path = route.path[len(PREFIX) :]
            url = path.replace(path[path.index("{") : path.index("}") + 1], unknown)
            response = await env.api("GET", url)
            if unknown == "%00":  # PostgreSQL text cannot hold it: refused
                assert response.status_code == 400, (url, response.text)
                assert "NUL" in _message(response)
                continue
            assert response.status_code == 404, (url[:100], response.text)
            assert "not found" in _message(response).lower()
        checked.append(route.path)
    assert len(checked) >= 8


LISTS = {
    "/clients": "ClientFilters",
    "/deposits": "DepositFilters",
    "/payouts": "PayoutFilters",
    "/settlements": "SettlementFilters",
    "/reconciliations": "ReconciliationFilters",
    "/transactions": "TransactionFilters",
}


def _items(body):
    return body["data"] if isinstance(body, dict) else body


async def test_lists_sort_by_every_advertised_field(env):
    """Each FilterModel's sort fields are real columns of its query."""
    from satmachineadmin import views_api

    client = await register_client(env)
    await add_deposit(env, client["id"], "12", confirm=True)
    await make_orphan(env, sats=1_500)
    for path, name in LISTS.items():
        model = getattr(views_api, name)
        for field in model.__sort_fields__:
            for direction in ("asc", "desc"):
                response = await env.api(
                    "GET", path, params={"sortby": field, "direction": direction}
                )
                assert response.status_code == 200, (path, field, response.text)
                assert isinstance(_items(response.json()), list)
        for field in model.__fields__:
            response = await env.api("GET", path, params={field: "x"})
            assert response.status_code == 200, (path, field, response.text)


async def test_nul_characters_are_refused_everywhere(env):
    """PostgreSQL cannot hold NUL in text: refused with a 400 in the body, the
    query and the path, before anything is written."""
    client = await register_client(env)
    before = await snapshot(env)
    for body in (
        {"client_id": client["id"], "amount": "5", "notes": "a\x00b"},
        {"client_id": "x\x00", "amount": "5"},
    ):
        message = await _rejected(env, "POST", "/deposits", 400, json=body)
        assert "NUL" in message
    await _rejected(
        env, "PUT", f"/clients/{client['id']}", 400, json={"username": "\x00"}
    )
    await _rejected(env, "GET", "/deposits", 400, params={"search": "\x00"})
    await _rejected(env, "GET", "/payouts", 400, params={"client_id": "a\x00"})
    # Credentials are checked first: a key with a NUL is simply not a key.
    await _rejected(env, "GET", "/clients", 401, params={"api-key": "\x00"})
    await _rejected(env, "GET", "/clients/%00/balance", 400)
    assert await snapshot(env) == before


async def test_list_parameters_are_validated(env):
    for path in LISTS:
        for params in (
            {"limit": -1},
            {"limit": 1001},
            {"limit": "ten"},
            {"offset": -1},
            {"sortby": "password"},
            {"sortby": "id; DROP TABLE x"},
            {"direction": "sideways"},
            {"search": HUGE[:201]},
        ):
            response = await env.api("GET", path, params=params)
            assert response.status_code == 400, (path, params, response.text)
            _message(response)


async def test_pagination_filters_and_sorting(env):
    client = await register_client(env)
    amounts = ["5", "50", "0.50", "500"]
    for amount in amounts:
        await add_deposit(env, client["id"], amount, confirm=amount != "0.50")
    base = {"client_id": client["id"]}

    response = await env.api("GET", "/deposits", params={**base, "limit": 3})
    assert response.status_code == 200
    assert len(response.json()) == 3
    assert response.headers["X-Total-Count"] == "4"
    rest = await env.api("GET", "/deposits", params={**base, "limit": 3, "offset": 3})
    assert len(rest.json()) == 1
    seen = {d["id"] for d in response.json()} | {d["id"] for d in rest.json()}
    assert len(seen) == 4

    response = await env.api(
        "GET", "/deposits", params={**base, "sortby": "amount", "direction": "asc"}
    )
    assert [Decimal(str(d["amount"])) for d in response.json()] == sorted(
        Decimal(a) for a in amounts
    )
    response = await env.api("GET", "/deposits", params={**base, "status": "pending"})
    assert [d["amount"] for d in response.json()] == [0.5]
    response = await env.api(
        "GET", "/deposits", params={**base, "status": "confirmed", "limit": 0}
    )
    assert response.headers["X-Total-Count"] == "3"

    # Clients: search, filter, and sort by remaining balance (computed).
    other = await register_client(env)
    await add_deposit(env, other["id"], "1000", confirm=True)
    # Search matches a part of one field: "api-client-1" also finds
    # "api-client-15" (when the tests run in another order), never a text
    # made of the end of one field and the start of the next (the username
    # followed by the start of its wallet id).
    response = await env.api("GET", "/clients", params={"search": client["username"]})
    found = response.json()
    assert client["id"] in [c["id"] for c in found]
    assert all(
        client["username"] in c["username"]
        or any(client["username"] in c[f] for f in ("wallet_id", "user_id", "id"))
        for c in found
    ), found
    across = client["username"] + client["wallet_id"][:4]
    response = await env.api("GET", "/clients", params={"search": across})
    assert response.status_code == 200, response.text
    assert response.json() == []
    response = await env.api(
        "GET", "/payouts", params={"search": client["username"] + client["id"][:4]}
    )
    assert response.status_code == 200, response.text
    response = await env.api("GET", "/alerts", params={"search": "a\nb"})
    assert response.status_code == 200, response.text
    response = await env.api(
        "GET",
        "/clients",
        params={"sortby": "remaining_balance", "direction": "desc", "limit": 1000},
    )
    assert response.status_code == 200, response.text
    balances = [Decimal(str(c["remaining_balance"])) for c in response.json()]
    assert balances == sorted(balances, reverse=True)
    ids = [c["id"] for c in response.json()]
    assert ids.index(other["id"]) < ids.index(client["id"])

    # Page-shaped lists: data and total.
    response = await env.api("GET", "/settlements", params={"limit": 1})
    body = response.json()
    assert set(body) == {"data", "total"} and len(body["data"]) <= 1
    _, orphan = await make_orphan(env, sats=1_200)
    response = await env.api("GET", "/reconciliations", params={"status": "open"})
    assert orphan["id"] in {r["id"] for r in response.json()["data"]}
    assert all(r["status"] == "open" for r in response.json()["data"])


async def test_paging_is_stable_when_rows_tie_on_the_sort_field(env):
    """Rows with one and the same sort value (SQLite keeps timestamps to the
    second; one settlement's payouts share theirs): paging through them, as
    the CSV exports do, brings every row exactly once."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import create_deposit
    from satmachineadmin.models import DcaDeposit, utc_now

    client = await register_client(env)
    moment = utc_now().replace(microsecond=0)
    created = set()
    for _ in range(7):
        deposit = DcaDeposit(
            id=urlsafe_short_hash(),
            client_id=client["id"],
            amount=Decimal("1.00"),
            status="pending",
            created_at=moment,
        )
        await create_deposit(deposit)
        created.add(deposit.id)
    for direction in ("asc", "desc"):
        seen = []
        for offset in range(0, 8, 2):
            response = await env.api(
                "GET",
                "/deposits",
                params={
                    "client_id": client["id"],
                    "limit": 2,
                    "offset": offset,
                    "sortby": "created_at",
                    "direction": direction,
                },
            )
            assert response.status_code == 200, response.text
            seen += [d["id"] for d in response.json()]
        assert sorted(seen) == sorted(created), direction
