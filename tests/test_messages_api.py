"""Every text the API writes during a request follows its language (#15):
HTTP errors, errors raised by the lower layers (processor conflicts, orphan
targets, commission recipients, statements), validation messages and the
Lamassu connection test. A static check keeps new code from writing English
literals into an HTTPException, and every message code used in the code from
missing in the catalog."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from api_helpers import PREFIX, add_deposit, make_orphan, register_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from messages import CATALOG  # noqa: E402

ES = {"Accept-Language": "es-GT,es;q=0.9"}

# Exceptions that take a message code as their first argument, and the helpers
# that write one into the API's answer.
CODE_TAKERS = {
    "text",
    "Message",
    "MessageError",
    "ProcessingError",
    "LamassuError",
    "AllocationError",
    "CommissionSplitError",
    "StatementInputError",
}
DETAIL_HELPERS = {"_conflict", "_bad", "_bad_request"}
PREFIXES = {code.split(".")[0] for code in CATALOG}
CODE_LIKE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+")


def _sources() -> list[Path]:
    skip = {"tests", "bench", ".venv", ".run", "node_modules", "scripts"}
    return [
        p
        for p in sorted(ROOT.rglob("*.py"))
        if not skip & set(p.relative_to(ROOT).parts)
    ]


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _is_literal_text(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):  # "a" + "b", "a %s" % x
        return _is_literal_text(node.left)
    return False


def _message_names(tree: ast.Module) -> set[str]:
    """The names a module imports from messages.py (its `text` may be
    SQLAlchemy's, e.g. in transaction_processor.py)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "messages":
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def test_no_http_error_is_written_as_an_english_literal():
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            detail = None
            if name == "HTTPException":
                if len(node.args) > 1:
                    detail = node.args[1]
                for keyword in node.keywords:
                    if keyword.arg == "detail":
                        detail = keyword.value
            elif name in DETAIL_HELPERS and node.args:
                detail = node.args[0]
            if detail is not None and _is_literal_text(detail):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"HTTP error texts not in messages.py: {found}"


def test_every_message_code_in_the_code_is_in_the_catalog():
    missing, used = [], set()
    for path in _sources():
        if path.name == "messages.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        takers = (CODE_TAKERS - {"text", "Message", "MessageError"}) | (
            _message_names(tree) & {"text", "Message", "MessageError"}
        )
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func) in takers:
                if not node.args:
                    continue
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    used.add(first.value)
                    if first.value not in CATALOG:
                        missing.append(f"{where}:{node.lineno} {first.value!r}")
                elif isinstance(first, ast.JoinedStr):
                    # text(f"not_found.{what}"): some code must start so.
                    head = first.values[0]
                    prefix = head.value if isinstance(head, ast.Constant) else ""
                    if not prefix or not any(c.startswith(prefix) for c in CATALOG):
                        missing.append(f"{where}:{node.lineno} f-string {prefix!r}")
            # A code handed on through a helper (lamassu.py's steps).
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and CODE_LIKE.fullmatch(node.value)
                and node.value.split(".")[0] in PREFIXES
                and node.value.split(".")[0] in {"lamassu", "conflict", "statement"}
                and node.value not in CATALOG
            ):
                missing.append(f"{where}:{node.lineno} {node.value!r}")
    assert not missing, f"message codes missing from CATALOG: {missing}"
    assert len(used) > 100  # the check really looked


# ----------------------------------------------------------- live requests

live = pytest.mark.asyncio(loop_scope="session")


async def _both(env, method: str, path: str, status: int, **kw) -> tuple[str, str]:
    """The detail of the same request in English (no header) and in Spanish."""
    headers = kw.pop("headers", None) or env.auth
    english = await env.api(method, path, headers=headers, **kw)
    spanish = await env.api(method, path, headers={**headers, **ES}, **kw)
    assert english.status_code == status, english.text
    assert spanish.status_code == status, spanish.text
    return _detail(english), _detail(spanish)


def _detail(response) -> str:
    detail = response.json()["detail"]
    if isinstance(detail, list):
        return "; ".join(d["msg"] for d in detail)
    return detail


@live
async def test_auth_errors_in_spanish(env, app):
    import httpx

    # No credentials at all: a client without the super user's session cookie.
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as bare:
        url = f"{PREFIX}/clients"
        english, spanish = await bare.get(url), await bare.get(url, headers=ES)
    assert english.status_code == spanish.status_code == 401, english.text
    assert english.json()["detail"] == "Missing access token or API key."
    assert spanish.json()["detail"] == "Falta el token de acceso o la clave API."
    assert await _both(env, "GET", "/clients", 401, headers={"X-Api-Key": "nope"}) == (
        "Invalid API key.",
        "Clave API inválida.",
    )
    _, wallet = await env.user_with_wallet("not an admin")
    assert await _both(
        env, "GET", "/clients", 403, headers={"X-Api-Key": wallet.adminkey}
    ) == (
        "Only the LNbits super user or admins.",
        "Solo el superusuario o los administradores de LNbits.",
    )
    own = await env.wallet("admin's own")
    english, spanish = await _both(
        env, "POST", "/deposits", 403, headers={"X-Api-Key": own.inkey}, json={}
    )
    assert english == "An invoice key may read; writing needs an admin key."
    assert spanish.startswith("Una clave de factura solo puede leer")


@live
async def test_bad_input_and_not_found_in_spanish(env):
    client = await register_client(env)
    # A validator's message (pydantic reports the MessageError's text).
    english, spanish = await _both(
        env,
        "POST",
        "/deposits",
        400,
        json={"client_id": client["id"], "amount": "1.234"},
    )
    assert "must have at most two decimal places" in english
    assert "debe tener como máximo dos decimales" in spanish
    english, spanish = await _both(
        env, "POST", "/deposits", 400, json={"client_id": client["id"], "amount": -5}
    )
    assert "must be greater than zero" in english
    assert "debe ser mayor que cero" in spanish
    # An endpoint's own check.
    english, spanish = await _both(
        env, "PUT", f"/clients/{client['id']}", 400, json={"dca_mode": "fixed"}
    )
    assert english == (
        "fixed_mode_daily_limit: a fixed-mode client needs a daily limit."
    )
    assert spanish == (
        "fixed_mode_daily_limit: un cliente en modo fijo necesita un límite diario."
    )
    # A bad sort field, a bad statement period, commission percentages.
    assert await _both(env, "GET", "/clients", 400, params={"sortby": "nope"}) == (
        "Invalid sort field.",
        "Campo de ordenamiento inválido.",
    )
    english, spanish = await _both(
        env, "GET", f"/statements/{client['id']}", 400, params={"period": "2026-13"}
    )
    assert english == "'period' has no month 13."
    assert spanish == "'period' no tiene un mes 13."
    wallet = await env.wallet("recipient")
    english, spanish = await _both(
        env,
        "PUT",
        "/commission-recipients",
        400,
        json={"recipients": [{"wallet_id": wallet.id, "percent": "abc"}]},
    )
    assert english == "recipient 1: percent 'abc' is not a number"
    assert spanish == "destinatario 1: el porcentaje 'abc' no es un número"
    english, spanish = await _both(
        env,
        "PUT",
        "/commission-recipients",
        400,
        json={"recipients": [{"wallet_id": wallet.id, "percent": "40"}]},
    )
    assert english == "percentages add up to 40 %, not 100 %"
    assert spanish == "los porcentajes suman 40 %, no 100 %"
    assert await _both(env, "GET", "/deposits/no-such-deposit", 404) == (
        "Deposit not found.",
        "Depósito no encontrado.",
    )


@live
async def test_conflicts_in_spanish(env):
    client = await register_client(env)
    deposit = await add_deposit(env, client["id"], "12", confirm=True)
    path = f"/deposits/{deposit['id']}/status"
    assert await _both(env, "PUT", path, 409, json={"status": "confirmed"}) == (
        "The deposit is already confirmed.",
        "El depósito ya está en estado confirmed.",
    )

    detail, orphan = await make_orphan(env)
    # The processor refuses (ProcessingError): nothing to retry.
    retry = f"/settlements/{detail['id']}/retry"
    assert await _both(env, "POST", retry, 409) == (
        "settlement is completed; nothing to retry",
        "la liquidación está en estado completed; no hay nada que reintentar",
    )
    # Orphan targets (a ValueError from orphan_resolution.py: 400).
    resolve = f"/reconciliations/{orphan['id']}/resolve"
    assert await _both(
        env, "POST", resolve, 400, json={"action": "send_to_wallet"}
    ) == ("a valid wallet_id is required", "se requiere un wallet_id válido")
    # Attributed to a client: its payout is paid; cancelling it is a conflict.
    target = await register_client(env)
    response = await env.api(
        "POST",
        resolve,
        json={"action": "attribute_to_client", "client_id": target["id"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "resolved", response.text
    payout_id = response.json()["payout_id"]
    assert await _both(
        env, "POST", f"/payouts/{payout_id}/cancel", 409, json={"reason": "test"}
    ) == (
        "payout is confirmed; nothing to cancel",
        "el pago está en estado confirmed; no hay nada que cancelar",
    )
    assert await _both(
        env, "POST", resolve, 409, json={"action": "operator_funds"}
    ) == (
        "reconciliation is already resolved",
        "la conciliación ya está en estado resolved",
    )


@live
async def test_lamassu_connection_test_in_spanish(env):
    from satmachineadmin import crud

    config = await crud.get_config()
    if not config:
        response = await env.api("POST", "/config", json={})
        assert response.status_code == 201, response.text
        config = await crud.get_config()
    assert config
    try:
        response = await env.api(
            "PUT",
            f"/config/{config.id}",
            json={
                "host": "127.0.0.1",
                "port": 1,  # nothing listens there
                "database_name": "lamassu",
                "username": "reader",
                "use_ssh_tunnel": False,
            },
        )
        assert response.status_code == 200, response.text
        english = (await env.api("POST", "/test-connection")).json()
        spanish = (
            await env.api("POST", "/test-connection", headers={**env.auth, **ES})
        ).json()
    finally:
        current = await crud.get_config()
        if current:  # leave no Lamassu config behind for the other tests
            current.host = ""
            await crud.update_config(current)
    assert english["success"] is spanish["success"] is False
    [step] = english["steps"]
    assert step["name"] == "Database login"
    assert step["message"].startswith("cannot reach the database at 127.0.0.1:1: ")
    assert english["message"] == f"Database login: {step['message']}"
    [paso] = spanish["steps"]
    assert paso["name"] == "Inicio de sesión en la base de datos"
    prefix = "no se puede conectar con la base de datos en 127.0.0.1:1: "
    assert paso["message"].startswith(prefix)
    # The driver's own words stay as they are, inside the translated frame.
    assert paso["message"][len(prefix) :] == step["message"].split(": ", 1)[1]
    assert spanish["message"] == f"{paso['name']}: {paso['message']}"


@live
async def test_lamassu_needs_its_settings_in_spanish(env):
    from satmachineadmin import crud

    config = await crud.get_config()
    if not config:
        response = await env.api("POST", "/config", json={})
        assert response.status_code == 201, response.text
        config = await crud.get_config()
    assert config
    config.host = ""  # as the other tests leave it
    await crud.update_config(config)
    assert await _both(env, "POST", "/test-connection", 400) == (
        "Set the Lamassu database host, database name and user first.",
        "Primero indique el host, el nombre y el usuario de la base de datos de "
        "Lamassu.",
    )


@live
async def test_stored_texts_stay_english_inside_a_spanish_request(env):
    """A LamassuError's str() (stored with a settlement by a lookup) is English
    whatever the request's language; its message renders for the reader."""
    from satmachineadmin.lamassu import LamassuError
    from satmachineadmin.messages import set_language

    set_language("es")
    try:
        error = LamassuError("lamassu.db_timeout", where="h:5432")
        assert str(error) == "the database at h:5432 did not answer in time"
        assert (
            error.message.render() == "la base de datos en h:5432 no respondió a tiempo"
        )
    finally:
        set_language("en")
