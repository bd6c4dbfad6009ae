"""The folder and settings every LNbits started by the tests (and the benchmark)
runs with: this checkout as its only extension, FakeWallet funding, no network
(no manifests, no exchange-rate providers), no reserve fee, no rate limit.

Importing this module does not import `lnbits`: LNbits fixes its settings at
import, so callers put `offline_settings()` into the environment first.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The extension's switch (read when it starts) for its periodic recovery loop.
# The in-process test app turns the loop off (`IN_PROCESS_SETTINGS`): a pass
# then runs only when a test calls one, never between another test's "nothing
# changed" snapshots. A separate LNbits process (live_server.py, the crash
# tests, the benchmark) keeps the production loop, start-up pass included.
RECOVERY_LOOP_ENV = "SATMACHINE_RECOVERY_LOOP"
IN_PROCESS_SETTINGS = {RECOVERY_LOOP_ENV: "off"}


def prepare_run_dir(run_dir: Path) -> Path:
    """`extensions/satmachineadmin` -> this checkout, `data/`, and `lnbits` ->
    the installed package (LNbits serves its static files relative to the
    working directory). Safe to call again on the same folder."""
    (run_dir / "extensions").mkdir(parents=True, exist_ok=True)
    (run_dir / "data").mkdir(exist_ok=True)
    links = {
        run_dir / "extensions" / "satmachineadmin": ROOT,
        run_dir / "lnbits": _lnbits_package(),
    }
    for link, target in links.items():
        if not link.is_symlink():
            link.symlink_to(target)
    return run_dir


def offline_settings(run_dir: Path) -> dict[str, str]:
    return {
        "LNBITS_DATA_FOLDER": str(run_dir / "data"),
        "LNBITS_EXTENSIONS_PATH": str(run_dir),
        "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
        "LNBITS_EXTENSIONS_DEFAULT_INSTALL": "",
        "LNBITS_EXTENSIONS_MANIFESTS": "[]",
        "LNBITS_WASM_EXTENSIONS_MANIFESTS": "[]",
        "LNBITS_PRICE_AGGREGATOR_ENABLED": "false",
        "LNBITS_EXCHANGE_RATE_PROVIDERS": "[]",
        "LNBITS_RATE_LIMIT_NO": "100000000",
        "LNBITS_ADMIN_UI": "true",
        "LNBITS_RESERVE_FEE_MIN": "0",
        "LNBITS_RESERVE_FEE_PERCENT": "0",
        "AUTH_HTTPS_ONLY": "false",
        "DEBUG": "false",
    }


def _lnbits_package() -> Path:
    # find_spec locates a top-level package without running its __init__.
    spec = importlib.util.find_spec("lnbits")
    assert spec and spec.origin, "LNbits is not installed"
    return Path(spec.origin).resolve().parent


def payments_in_flight() -> bool:
    """True while a payment is not yet handled everywhere: LNbits' invoice
    queues or any listener's queue (this extension's, other extensions',
    a bench's) not empty, this extension's listener holding a payment, or the
    money lock taken. Callers poll it until it is False twice in a row (an
    item just taken off a queue shows in none of them for a moment)."""
    from lnbits.task_manager import task_manager
    from satmachineadmin import tasks
    from satmachineadmin.transaction_processor import processing_lock

    queues = [task_manager.invoice_queue, task_manager.internal_invoice_queue]
    queues += [t.invoice_queue for t in task_manager.tasks if t.invoice_queue]
    return (
        any(q.qsize() for q in queues)
        or tasks.in_flight["payments"] > 0
        or processing_lock.locked()
    )
