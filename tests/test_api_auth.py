"""The auth matrix, generated from the routes the app actually serves under
/satmachineadmin/api/v1/dca: a new endpoint is covered the moment it exists.

Who gets in (auth.py):
* no credentials: 401 (GET /client-limits alone is public and shows only
  {max_daily_limit_gtq, currency});
* an ordinary user's keys or token: 403, on everything;
* the invoice key of an admin's wallet: reads pass, writes 403;
* the admin key of an admin's wallet, the super user's token, and the token of
  an LNbits admin (settings.lnbits_admin_users): everything passes.

"Passes" means the request got past auth: not 401/403, and never a 5xx. The
bodies and ids sent with valid credentials are harmless (unknown ids, a wallet
that does not exist, a dry run); denied requests target real rows, and the
data is compared before and after.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from api_helpers import PREFIX, add_deposit, make_orphan, register_client, snapshot
from fastapi.routing import APIRoute

pytestmark = pytest.mark.asyncio(loop_scope="session")

PUBLIC = {("GET", "/client-limits")}
READ_METHODS = {"GET"}
UNKNOWN = "unknown-id-0000"

# Bodies that pass validation but touch nothing when sent with valid
# credentials to unknown ids (404) or an unknown wallet (400/404). An endpoint
# missing here gets `{}`: its validation answer (4xx) still proves auth passed.
BODIES: dict[tuple[str, str], dict] = {
    ("POST", "/clients"): {"wallet_id": "no-such-wallet"},
    ("PUT", "/clients/{client_id}"): {"username": "renamed"},
    ("PUT", "/clients/{client_id}/status"): {"status": "inactive"},
    ("POST", "/deposits"): {"client_id": UNKNOWN, "amount": "10", "currency": "GTQ"},
    ("PUT", "/deposits/{deposit_id}"): {"amount": "11"},
    ("PUT", "/deposits/{deposit_id}/status"): {"status": "confirmed"},
    ("PUT", "/settlements/{settlement_id}/cash-out"): {
        "fiat_amount": "10",
        "principal_sats": 1,
    },
    ("PUT", "/settlements/{settlement_id}/dismiss"): {"reason": "not a sale"},
    ("POST", "/reconciliations/{reconciliation_id}/resolve"): {
        "action": "operator_funds"
    },
    ("POST", "/config"): {"source_wallet_id": "no-such-wallet"},
    ("PUT", "/config/{config_id}"): {"source_wallet_id": "no-such-wallet"},
    ("POST", "/test-transaction"): {"amount_sats": 10_000, "fiat_amount": "10"},
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # relative to PREFIX, with {params}
    route: APIRoute

    @property
    def is_read(self) -> bool:
        return self.method in READ_METHODS

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    def url(self, ids: dict[str, str]) -> str:
        return re.sub(r"{(\w+)}", lambda m: ids.get(m.group(1), UNKNOWN), self.path)

    def body(self) -> dict | None:
        if self.route.body_field is None:
            return None
        return BODIES.get((self.method, self.path), {})

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def endpoints(app) -> list[Endpoint]:
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path.startswith(PREFIX + "/"):
            for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
                found.append(Endpoint(method, route.path[len(PREFIX) :], route))
    return found


def _calls(dependant) -> set:
    calls = set()
    for dep in dependant.dependencies:
        if dep.call is not None:
            calls.add(dep.call)
        calls |= _calls(dep)
    return calls


async def _request(env, endpoint: Endpoint, headers: dict, ids: dict):
    # env.http holds the super user's session cookie from logging in: use a
    # client with an empty cookie jar, so only `headers` authenticate.
    return await env.bare.request(
        endpoint.method,
        PREFIX + endpoint.url(ids),
        headers=headers,
        json=endpoint.body(),
    )


@dataclass
class Principals:
    super_token: dict
    super_admin_key: dict
    super_invoice_key: dict
    admin_token: dict
    admin_admin_key: dict
    admin_invoice_key: dict
    user_admin_key: dict
    user_invoice_key: dict
    user_token: dict


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def _named_user(env, username: str):
    """A user with a username (an access token names its user by it), a
    wallet, and the extension enabled."""
    from uuid import uuid4

    from lnbits.core.models import Account
    from lnbits.core.services import create_user_account

    user = await create_user_account(Account(id=uuid4().hex, username=username))
    wallet = await env.wallet(f"{username} wallet", user.id)
    await env.enable_for(user.id)
    return user, wallet


@pytest.fixture(scope="module")
async def bare_env(env, app):
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        env.bare = client
        yield env


@pytest.fixture(scope="module")
async def principals(bare_env):
    env = bare_env
    from lnbits.helpers import create_access_token
    from lnbits.settings import settings

    wallet = await env.wallet("auth matrix super")
    admin, admin_wallet = await _named_user(env, "authmatrixadmin")
    user, user_wallet = await _named_user(env, "authmatrixuser")
    settings.lnbits_admin_users.append(admin.id)
    try:
        yield Principals(
            super_token=env.auth,
            super_admin_key={"X-Api-Key": wallet.adminkey},
            super_invoice_key={"X-Api-Key": wallet.inkey},
            admin_token=_bearer(create_access_token({"sub": admin.username})),
            admin_admin_key={"X-Api-Key": admin_wallet.adminkey},
            admin_invoice_key={"X-Api-Key": admin_wallet.inkey},
            user_admin_key={"X-Api-Key": user_wallet.adminkey},
            user_invoice_key={"X-Api-Key": user_wallet.inkey},
            user_token=_bearer(create_access_token({"sub": user.username})),
        )
    finally:
        settings.lnbits_admin_users.remove(admin.id)


@pytest.fixture(scope="module")
async def real_ids(env, principals) -> dict[str, str]:
    """Real rows for the denied requests to aim at."""
    settlement, reconciliation = await make_orphan(env, sats=2_000)
    client = await register_client(env)
    deposit = await add_deposit(env, client["id"], "25")
    config = (await env.api("GET", "/config")).json()
    machine = await _machine_with_commission_part(env, settlement["id"])
    return {
        "machine_id": machine["id"],
        "part_id": machine["part_id"],
        "client_id": client["id"],
        "deposit_id": deposit["id"],
        "settlement_id": settlement["id"],
        "transaction_id": settlement["id"],
        "reconciliation_id": reconciliation["id"],
        "config_id": config["id"],
    }


async def _machine_with_commission_part(env, settlement_id: str) -> dict:
    """A machine (#14), and a commission part row to aim the part paths at."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db
    from satmachineadmin.models import CommissionPayout, utc_now

    response = await env.api(
        "POST", "/machines", json={"device_id": f"auth-{urlsafe_short_hash()}"}
    )
    assert response.status_code == 201, response.text
    now = utc_now()
    part = CommissionPayout(
        id=urlsafe_short_hash(),
        settlement_id=settlement_id,
        position=99,
        wallet_id="0" * 32,
        percent="100",
        amount_sats=0,
        status="kept",
        created_at=now,
        updated_at=now,
    )
    await db.insert("satoshimachine.commission_payouts", part)
    return {**response.json(), "part_id": part.id}


async def test_every_router_route_is_served_and_guarded(app):
    """Each route of the extension's router is mounted, and carries exactly
    the dependency its method calls for: reads ReadAccess, writes WriteAccess,
    only client-limits neither."""
    from satmachineadmin.auth import operator_read, operator_write
    from satmachineadmin.views_api import satmachineadmin_api_router

    served = {str(e) for e in endpoints(app)}
    declared = {
        f"{method} {route.path.removeprefix('/api/v1/dca')}"
        for route in satmachineadmin_api_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods - {"HEAD", "OPTIONS"}
    }
    assert declared and declared <= served, declared - served
    assert len(served) >= 35

    wrong = []
    for endpoint in endpoints(app):
        calls = _calls(endpoint.route.dependant)
        if (endpoint.method, endpoint.path) in PUBLIC:
            ok = operator_read not in calls and operator_write not in calls
        elif endpoint.is_read:
            ok = operator_read in calls and operator_write not in calls
        else:
            ok = operator_write in calls
        if not ok:
            wrong.append(str(endpoint))
    assert not wrong, f"endpoints without the right access dependency: {wrong}"


async def test_client_limits_is_public_and_reveals_nothing_else(env, principals):
    for headers in ({}, principals.user_admin_key, {"X-Api-Key": "garbage"}):
        response = await env.bare.get(PREFIX + "/client-limits", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"max_daily_limit_gtq", "currency"}
        assert isinstance(body["max_daily_limit_gtq"], int | float)
        assert re.fullmatch(r"[A-Z]{3}", body["currency"])


async def _denied_everywhere(env, app, headers: dict, ids: dict, expected: int):
    before = await snapshot(env)
    wrong = []
    for endpoint in endpoints(app):
        if (endpoint.method, endpoint.path) in PUBLIC:
            continue
        response = await _request(env, endpoint, headers, ids)
        if response.status_code != expected:
            wrong.append((str(endpoint), response.status_code, response.text[:200]))
        elif not isinstance(response.json().get("detail"), str):
            wrong.append((str(endpoint), "no message", response.text[:200]))
    assert not wrong, wrong
    assert await snapshot(env) == before


async def test_no_credentials_get_401(env, app, real_ids):
    await _denied_everywhere(env, app, {}, real_ids, 401)


async def test_unknown_key_and_bad_token_get_401(env, app, real_ids):
    await _denied_everywhere(env, app, {"X-Api-Key": "not-a-key"}, real_ids, 401)
    await _denied_everywhere(
        env, app, {"Authorization": "Bearer not.a.token"}, real_ids, 401
    )


@pytest.mark.parametrize("who", ["user_admin_key", "user_invoice_key", "user_token"])
async def test_ordinary_user_gets_403_everywhere(env, app, principals, real_ids, who):
    await _denied_everywhere(env, app, getattr(principals, who), real_ids, 403)


@pytest.mark.parametrize("who", ["admin_invoice_key", "super_invoice_key"])
async def test_admin_invoice_key_reads_but_cannot_write(
    env, app, principals, real_ids, who
):
    headers = getattr(principals, who)
    before = await snapshot(env)
    wrong = []
    for endpoint in endpoints(app):
        if (endpoint.method, endpoint.path) in PUBLIC:
            continue
        # Reads aim at real rows (must answer 200); writes at real rows too
        # (must be refused, and change nothing).
        response = await _request(env, endpoint, headers, real_ids)
        if endpoint.is_read:
            if response.status_code != 200:
                wrong.append((str(endpoint), response.status_code, response.text))
        elif response.status_code != 403:
            wrong.append((str(endpoint), response.status_code, response.text))
    assert not wrong, wrong
    assert await snapshot(env) == before


@pytest.mark.parametrize(
    "who", ["super_token", "super_admin_key", "admin_token", "admin_admin_key"]
)
async def test_admins_pass_everywhere(env, app, principals, real_ids, who):
    """Reads of real rows answer 200; writes (to unknown ids, or with an unknown
    wallet) get past auth to a 2xx/4xx answer, never a 5xx."""
    headers = getattr(principals, who)
    wrong = []
    for endpoint in endpoints(app):
        ids = real_ids if endpoint.is_read else {}
        response = await _request(env, endpoint, headers, ids)
        status = response.status_code
        if endpoint.is_read and status != 200:
            wrong.append((str(endpoint), status, response.text[:300]))
        elif status in (401, 403) or status >= 500:
            wrong.append((str(endpoint), status, response.text[:300]))
    assert not wrong, wrong


async def test_extension_must_be_enabled_for_the_admin(env, principals):
    """An admin who has not enabled the extension is refused, with a reason."""
    from lnbits.core.crud import get_user_extension, update_user_extension
    from lnbits.settings import settings

    admin, wallet = await env.user_with_wallet("auth matrix admin, not enabled")
    ext = await get_user_extension(admin.id, "satmachineadmin")
    assert ext
    ext.active = False
    await update_user_extension(ext)
    settings.lnbits_admin_users.append(admin.id)
    try:
        response = await env.bare.get(
            PREFIX + "/clients", headers={"X-Api-Key": wallet.adminkey}
        )
        assert response.status_code == 403, response.text
        assert "enabled" in response.json()["detail"].lower()
    finally:
        settings.lnbits_admin_users.remove(admin.id)


async def test_the_dashboard_page_is_for_admins(env, principals):
    """A direct load of /satmachineadmin/ answers LNbits' own page (the dynamic
    frontend then reads static/routes.json) to the super user and admins only;
    an ordinary user gets 403. The page's static files are public and hold no
    data: the API above is the real guard."""
    for headers in (principals.super_token, principals.admin_token):
        response = await env.bare.get("/satmachineadmin/", headers=headers)
        assert response.status_code == 200, response.text[:300]
        assert "RENDERED_ROUTE" in response.text
    response = await env.bare.get("/satmachineadmin/", headers=principals.user_token)
    assert response.status_code == 403, response.text[:300]
    routes = await env.bare.get("/satmachineadmin/static/routes.json")
    assert routes.status_code == 200
    assert [(r["path"], r["name"]) for r in routes.json()] == [
        ("/satmachineadmin/", "PageSatmachineadmin")
    ]
    for route in routes.json():
        for key in ("template", "component"):
            assert (await env.bare.get(route[key])).status_code == 200, route[key]
        for lang in ("en", "es"):
            strings = await env.bare.get(f"{route['i18n']}/{lang}.js")
            assert strings.status_code == 200
