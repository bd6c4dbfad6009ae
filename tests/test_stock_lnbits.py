"""The extension loads on a stock LNbits: LNbits installs an extension from its
release archive and never installs the extension's Python requirements, so at
import the extension may use only the standard library and what LNbits itself
depends on.

A fresh interpreter gets an import blocker that refuses every distribution
installed here that is not LNbits or one of its (transitive) dependencies
(asyncssh, the test tools...), then starts LNbits with this checkout as its
extension, exactly as the server does. The extension must load, register its
routes and say, where the SSH tunnel is configured, which package it needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import asyncio, importlib.abc, importlib.metadata as md, json, re, sys

def closure(root):
    # Distributions LNbits needs, following the extras each requirement asks
    # for (pydantic[email] brings email-validator) and their markers.
    from packaging.requirements import Requirement

    seen, todo = set(), [(root, frozenset())]
    while todo:
        raw, extras = todo.pop()
        name = re.sub(r"[-_.]+", "-", raw).lower()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker and not any(
                req.marker.evaluate({"extra": extra}) for extra in {"", *extras}
            ):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in seen}

allowed = closure("lnbits")
blocked = set()
for top, dists in md.packages_distributions().items():
    norm = {re.sub(r"[-_.]+", "-", d).lower() for d in dists}
    if not norm & allowed:
        blocked.add(top)
blocked.discard("satmachineadmin")

class Blocker(importlib.abc.MetaPathFinder):
    refused = []
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            self.refused.append(name)
            raise ImportError(f"{name} is not part of a stock LNbits")
        return None

sys.meta_path.insert(0, Blocker())

from lnbits_sandbox import offline_settings, prepare_run_dir
import os, pathlib
run_dir = pathlib.Path(sys.argv[1])
prepare_run_dir(run_dir)
os.environ.update(offline_settings(run_dir))
os.environ.pop("LNBITS_DATABASE_URL", None)
os.chdir(run_dir)

async def main():
    from lnbits.app import create_app
    app = create_app()
    async with app.router.lifespan_context(app):
        from lnbits.core.crud import get_installed_extension
        ext = await get_installed_extension("satmachineadmin")
        paths = sorted({getattr(r, "path", "") for r in app.routes})
        from satmachineadmin.lamassu import LamassuClient, LamassuSettings, LamassuError
        settings = LamassuSettings(host="127.0.0.1", port=5432, database="x",
            user="u", password="p", use_ssh_tunnel=True, ssh_host="127.0.0.1",
            ssh_username="u", ssh_password="p")
        try:
            await LamassuClient(settings).open_tunnel()
            ssh = "opened"
        except LamassuError as exc:
            ssh = str(exc)
        from satmachineadmin.models import _ssh_tunnel_unavailable
        print("REPORT " + json.dumps({
            "active": bool(ext and ext.active),
            "loaded": "satmachineadmin" in sys.modules,
            "routes": [p for p in paths if p.startswith("/satmachineadmin")],
            "refused": sorted(set(Blocker.refused)),
            "blocked_asyncssh": "asyncssh" in blocked,
            "ssh": ssh,
            "config_hint": _ssh_tunnel_unavailable(),
        }), flush=True)

asyncio.run(main())
"""


def test_loads_on_stock_lnbits_without_optional_packages():
    with tempfile.TemporaryDirectory(prefix="satmachine-stock-") as run_dir:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("LNBITS_") and k != "SATMACHINE_TEST_DB"
        }
        env["PYTHONPATH"] = str(HERE)
        result = subprocess.run(
            [sys.executable, "-c", CHILD, run_dir],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            cwd=run_dir,
        )
    assert result.returncode == 0, result.stderr[-4000:]
    [line] = [x for x in result.stdout.splitlines() if x.startswith("REPORT ")]
    report = json.loads(line.removeprefix("REPORT "))
    assert report["blocked_asyncssh"], "asyncssh must not count as an LNbits dep"
    assert report["loaded"] and report["active"], result.stderr[-4000:]
    assert "/satmachineadmin/api/v1/dca/client-limits" in report["routes"]
    assert "/satmachineadmin/api/v1/dca/settlements" in report["routes"]
    # What needs the optional package names it and the command that adds it.
    assert "asyncssh" in report["ssh"] and "pip install" in report["ssh"]
    assert report["config_hint"] and "asyncssh" in report["config_hint"]
