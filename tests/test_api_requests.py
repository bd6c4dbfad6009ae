"""Requests (issue 11, part 4): authentication comes before any work on the
body; depth and size are bounded; no 5xx and no log flood from any input;
deposits accept ISO 4217 currencies LNbits knows; unknown fields are refused."""

from __future__ import annotations

import json

import pytest
from api_helpers import add_deposit, register_client

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _nested(depth: int) -> bytes:
    return ("[" * depth + "]" * depth).encode()


class _LogCount:
    def __init__(self):
        from loguru import logger

        self.lines = 0
        self._id = logger.add(self._sink, level="DEBUG")

    def _sink(self, message) -> None:
        self.lines += str(message).count("\n") or 1

    def close(self) -> None:
        from loguru import logger

        logger.remove(self._id)


async def test_deeply_nested_body_without_credentials_is_401_and_quiet(env, app):
    import httpx

    body = _nested(400)
    assert len(body) < 1000
    logs = _LogCount()
    try:
        # A client of its own: the session's client holds the login cookie.
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as anonymous:
            response = await anonymous.post(
                "/satmachineadmin/api/v1/dca/deposits",
                content=body,
                headers={"Content-Type": "application/json"},
            )
    finally:
        logs.close()
    assert response.status_code == 401, response.text
    assert logs.lines < 50, logs.lines


async def test_deeply_nested_body_with_credentials_is_a_clear_400(env):
    for depth in (40, 400, 5000):
        logs = _LogCount()
        try:
            response = await env.api(
                "POST",
                "/deposits",
                content=_nested(depth),
                headers={**env.auth, "Content-Type": "application/json"},
            )
        finally:
            logs.close()
        assert 400 <= response.status_code < 500, (depth, response.text)
        assert logs.lines < 50, (depth, logs.lines)
    response = await env.api(
        "POST",
        "/deposits",
        content=json.dumps({"client_id": _deep_dict(60)}).encode(),
        headers={**env.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "nested" in response.text


def _deep_dict(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


async def test_oversized_body_is_refused(env):
    response = await env.api(
        "POST",
        "/deposits",
        content=json.dumps({"notes": "x" * 300_000}).encode(),
        headers={**env.auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text


@pytest.mark.parametrize("code", ["AAA", "ZZZ", "XXX", "QQQ"])
async def test_deposits_accept_only_known_currencies(env, code):
    client = await register_client(env)
    response = await env.api(
        "POST",
        "/deposits",
        json={"client_id": client["id"], "amount": "10", "currency": code},
    )
    assert response.status_code == 400, response.text
    assert code in response.text
    deposits = (
        await env.api("GET", "/deposits", params={"client_id": client["id"]})
    ).json()
    assert (deposits["data"] if isinstance(deposits, dict) else deposits) == []
    deposit = await add_deposit(env, client["id"], "10", "EUR")
    response = await env.api(
        "PUT", f"/deposits/{deposit['id']}", json={"currency": code}
    )
    assert response.status_code == 400, response.text


async def test_unknown_field_in_a_deposit_edit_is_refused(env):
    client = await register_client(env)
    deposit = await add_deposit(env, client["id"], "10", "EUR")
    response = await env.api("PUT", f"/deposits/{deposit['id']}", json={"ammount": "5"})
    assert response.status_code in (400, 422), response.text
    assert "ammount" in response.text
    fetched = (await env.api("GET", f"/deposits/{deposit['id']}")).json()
    assert fetched == deposit
