"""Property-based fuzzing of the operator API from the OpenAPI schema LNbits
serves, restricted to /satmachineadmin/api/v1/dca, with admin credentials:
no 5xx, and every response conforms to its documented status codes, media
type and schema.

schemathesis (4.x) generates the cases; hypothesis runs them in a worker
thread, and each request is sent through the session's in-process app on the
session's event loop. Deterministic (derandomized, no example database) and
bounded: SATMACHINE_FUZZ_EXAMPLES cases per operation (default 40): valid
input, invalid input (which must get a 4xx, never a 5xx), and valid input
against real rows (a client, a deposit, a settlement waiting for data, a
completed one with an open orphan, the config).
"""

from __future__ import annotations

import asyncio
import collections
import os
import time

import pytest
from api_helpers import PREFIX, add_deposit, make_orphan, register_client

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXAMPLES = int(os.environ.get("SATMACHINE_FUZZ_EXAMPLES", "40"))
# These act on systems outside LNbits (the Lamassu database, over SSH): they
# are in the auth matrix, not fuzzed with generated hosts.
NOT_FUZZED = {("POST", "/test-connection"), ("POST", "/manual-poll")}
SAFE_HOST = {"host": "127.0.0.1", "ssh_host": "127.0.0.1", "use_ssh_tunnel": False}


async def _spec(env) -> dict:
    response = await env.http.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    spec["paths"] = {p: v for p, v in spec["paths"].items() if p.startswith(PREFIX)}
    return spec


async def test_openapi_documents_every_endpoint_with_its_models(env, app):
    from fastapi.routing import APIRoute

    spec = await _spec(env)
    served = {
        (method.lower(), route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and route.path.startswith(PREFIX + "/")
        for method in route.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert served == documented
    undocumented = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ok = [
                media.get("schema")
                for code, response in op["responses"].items()
                if code.startswith("2")
                for media in response.get("content", {}).values()
            ]
            # A real schema: a model, a list of models, a typed value; not `{}`
            # and not an untyped object.
            if not ok or not all(s and s != {"type": "object"} for s in ok):
                undocumented.append(f"{method.upper()} {path}: {ok}")
            if not path.endswith("/client-limits"):
                for code in ("401", "403"):
                    assert code in op["responses"], (method, path, code)
    assert not undocumented, undocumented
    # The paginated lists name their item model, and list their filters.
    for name in ("PayoutPage", "SettlementPage", "ReconciliationPage"):
        assert name in spec["components"]["schemas"]
    params = {
        p["name"] for p in spec["paths"][PREFIX + "/deposits"]["get"]["parameters"]
    }
    assert {"limit", "offset", "sortby", "direction", "search", "status"} <= params


async def _real_rows(env) -> dict[str, str]:
    settlement, orphan = await make_orphan(env, sats=4_000)
    # A payment nothing explains: a settlement waiting for cash-out data.
    source_id = settlement["wallet_id"]
    payer = await env.wallet("fuzz payer")
    await env.fund(payer.id, 10_000)
    payment_hash = await env.pay(payer.id, source_id, 3_000)
    await env.settle()
    response = await env.api("GET", "/settlements", params={"search": payment_hash})
    [waiting] = response.json()["data"]
    assert waiting["status"] == "waiting_data", waiting
    client = await register_client(env)
    await add_deposit(env, client["id"], "30", confirm=True)
    deposit = await add_deposit(env, client["id"], "12.50")
    config = (await env.api("GET", "/config")).json()
    return {
        "client_id": client["id"],
        "deposit_id": deposit["id"],
        "settlement_id": waiting["id"],
        "transaction_id": settlement["id"],
        "reconciliation_id": orphan["id"],
        "config_id": config["id"],
    }


async def test_fuzz_operator_api(env, app):
    import httpx
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    spec = await _spec(env)
    schema = schemathesis.openapi.from_dict(spec)
    ids = await _real_rows(env)
    key = (await env.wallet("fuzz operator")).adminkey
    restore_config = (await env.api("GET", "/config")).json()
    loop = asyncio.get_running_loop()
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]

    async with httpx.AsyncClient(
        # An exception in the app becomes the 500 a real server would send.
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://testserver",
        timeout=30,
    ) as client:

        def send(case) -> httpx.Response:
            kwargs = case.as_transport_kwargs(base_url="http://testserver")
            body = kwargs.get("json")
            if isinstance(body, dict) and case.path.startswith(PREFIX + "/config"):
                # Never point the extension at a generated host.
                body.update({k: v for k, v in SAFE_HOST.items() if k in body})
            headers = {**kwargs.get("headers", {}), "X-Api-Key": key}
            headers.pop("Authorization", None)
            request = client.request(
                kwargs["method"],
                kwargs["url"],
                params=kwargs.get("params"),
                headers=headers,
                cookies={},
                json=body if "json" in kwargs else None,
                content=kwargs.get("data") if "json" not in kwargs else None,
            )
            return asyncio.run_coroutine_threadsafe(request, loop).result(60)

        def fuzz(operation) -> list[str]:
            failures: list[str] = []
            params = {
                p.name: ids[p.name] for p in operation.path_parameters if p.name in ids
            }
            strategies = [
                operation.as_strategy(),
                operation.as_strategy(GenerationMode.NEGATIVE),
            ]
            if params:
                strategies.append(operation.as_strategy(path_parameters=params))
            strategy = st.one_of(*strategies)

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            )
            @given(case=strategy)
            def run(case) -> None:
                response = send(case)
                statuses[operation.label].append(response.status_code)
                case.validate_response(response, checks=checks)

            try:
                run()
            except (Exception, FailureGroup) as exc:  # FailureGroup: BaseException
                failures.append(f"{operation.label}:\n{str(exc)[:2000]}")
            return failures

        statuses: dict[str, list[int]] = collections.defaultdict(list)

        def fuzz_all() -> tuple[list[str], int]:
            failures: list[str] = []
            count = 0
            for result in schema.get_all_operations():
                operation = result.ok()
                label = (operation.method.upper(), operation.path[len(PREFIX) :])
                if label in NOT_FUZZED:
                    continue
                failures.extend(fuzz(operation))
                count += 1
            return failures, count

        started = time.monotonic()
        try:
            failures, count = await asyncio.to_thread(fuzz_all)
        finally:
            # Leave a sane active config behind for the tests that follow.
            await env.api(
                "POST",
                "/config",
                json={
                    k: restore_config.get(k)
                    for k in ("source_wallet_id", "commission_wallet_id")
                },
            )
        elapsed = time.monotonic() - started
    print(f"fuzzed {count} operations x {EXAMPLES} examples in {elapsed:.1f}s")
    for label, codes in sorted(statuses.items()):
        print(f"  {label}: {dict(collections.Counter(codes))}")
    # The generated cases reach the handlers, not only the validation layer.
    assert sum(code < 300 for codes in statuses.values() for code in codes) > count
    assert count >= 30
    assert not failures, "\n\n".join(failures[:10])
