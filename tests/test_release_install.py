"""LNbits installs this extension from its own release: `scripts/release.py`
(what `make release` runs) builds the archive and the manifest entry, a
loopback HTTP server publishes both, and a real LNbits 1.6.2 server process
with an EMPTY extensions folder installs it through its extension manager (the
endpoints the Extensions page uses): list the releases from the manifest,
download, check the sha256, unpack, migrate, activate. Then the operator enables
and uses it; then version 1.0.1 (the same code, the version bumped in the
archive's config.json only) is installed over it the same way: the data is
kept, the migrations are at the same version, the extension still answers;
then a release with one more migration: the upgrade runs it. And after a
restart LNbits loads the installed copy, data and all.

The server runs as on a stock LNbits: a sitecustomize refuses to import any
installed distribution that is not LNbits or one of its dependencies
(asyncssh, the test tools...), as tests/test_stock_lnbits.py does in-process.
Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import closing
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from live_server import LiveLNbits

pytestmark = pytest.mark.sqlite_only

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "scripts" / "release.py"
EXT = "satmachineadmin"
VERSION = json.loads((ROOT / "config.json").read_text())["version"]


def bumped(version: str, by: int) -> str:
    major, minor, patch = [*version.split("."), "0", "0"][:3]
    if not (major + minor + patch).isdigit():
        return f"{version}.{by}"
    return f"{major}.{minor}.{int(patch) + by}"


NEXT_VERSION = bumped(VERSION, 1)  # the same code
PROBE_VERSION = bumped(VERSION, 2)  # plus a new migration

STOCK_SITECUSTOMIZE = r'''
"""Test only: refuse every installed distribution that is not LNbits or one of
its (transitive) dependencies, as a stock LNbits install would lack it."""
import importlib.abc
import importlib.metadata as md
import json
import os
import re
import sys

from packaging.requirements import Requirement


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(root):
    seen, todo = set(), [(root, frozenset())]
    while todo:
        raw, extras = todo.pop()
        key = (_norm(raw), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = md.requires(key[0]) or []
        except md.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker and not any(
                req.marker.evaluate({"extra": e}) for e in {"", *extras}
            ):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in seen}


_allowed = _closure("lnbits")
_blocked = {
    top
    for top, dists in md.packages_distributions().items()
    if not {_norm(d) for d in dists} & _allowed
}


class _StockOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _blocked:
            raise ImportError(f"{name} is not part of a stock LNbits")
        return None


sys.meta_path.insert(0, _StockOnly())
with open(os.environ["SATMACHINE_STOCK_REPORT"], "w") as _f:
    json.dump(sorted(_blocked), _f)
'''


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture
def files() -> Iterator[tuple[Path, str]]:
    """A folder published on a loopback HTTP server: (folder, base URL)."""
    with tempfile.TemporaryDirectory(prefix="satmachine-release-") as folder:
        handler = functools.partial(_Quiet, directory=folder)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Path(folder), f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()


def release(folder: Path, url_base: str, version: str | None = None) -> dict:
    """Run scripts/release.py into folder; returns the manifest entry."""
    command = [sys.executable, str(RELEASE), "--out-dir", str(folder)]
    command += ["--manifest", str(folder / "manifest.json"), "--url-base", url_base]
    if version:
        command += ["--version", version]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    [entry] = [
        e
        for e in manifest["extensions"]
        if e["id"] == EXT and e["version"] == (version or VERSION)
    ]
    return entry


def add_migration(folder: Path, entry: dict, number: int) -> dict:
    """The release in entry, with one more migration appended to its
    migrations.py (a new table); its hash updated in the manifest."""
    archive = folder / entry["archive"].rsplit("/", 1)[1]
    with zipfile.ZipFile(archive) as zf:
        items = [(info, zf.read(info)) for info in zf.infolist()]
    probe = (
        f"\n\nasync def m{number:03d}_release_probe(db):\n"
        '    await db.execute("CREATE TABLE satoshimachine.release_probe (id TEXT)")\n'
    ).encode()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in items:
            if info.filename.endswith("/migrations.py"):
                data += probe
            zf.writestr(info, data)
    manifest = json.loads((folder / "manifest.json").read_text())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    for release_entry in manifest["extensions"]:
        if release_entry["archive"] == entry["archive"]:
            release_entry["hash"] = digest
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return {**entry, "hash": digest}


def ext_tables(live: LiveLNbits) -> set[str]:
    path = live.dir / "data" / "ext_satoshimachine.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}


def db_version(live: LiveLNbits) -> int | None:
    with closing(sqlite3.connect(live.dir / "data" / "database.sqlite3")) as conn:
        row = conn.execute(
            "SELECT version FROM dbversions WHERE db = ?", (EXT,)
        ).fetchone()
    return row[0] if row else None


def install(live: LiveLNbits, manifest_url: str, entry: dict):
    """What the Extensions page sends for the release picked in its list."""
    return live.http.post(
        "/api/v1/extension",
        json={
            "ext_id": EXT,
            "archive": entry["archive"],
            "source_repo": manifest_url,
            "version": entry["version"],
        },
        headers=live.auth,
        timeout=60,
    )


def installed_version(live: LiveLNbits) -> str:
    response = live.http.get("/api/v1/extension/all", headers=live.auth)
    assert response.status_code == 200, response.text
    [ext] = [e for e in response.json() if e["id"] == EXT]
    assert ext["isInstalled"] and ext["isActive"], ext
    return ext["installedRelease"]["version"]


def test_install_and_upgrade_from_the_release_manifest(files):
    folder, base = files
    manifest_url = f"{base}/manifest.json"
    (folder / "builder.json").write_text("{}")
    entry = release(folder, base)

    # The archive: one top folder with config.json; only what runs in LNbits.
    with zipfile.ZipFile(folder / f"{EXT}-{VERSION}.zip") as zf:
        names = zf.namelist()
    top = f"{EXT}-{VERSION}/"
    assert all(n.startswith(top) for n in names)
    inside = {n[len(top) :] for n in names}
    assert {"config.json", "__init__.py", "migrations.py", "views_api.py"} <= inside
    assert any(n.startswith("templates/") for n in inside)
    assert any(n.startswith("static/") for n in inside)
    unwanted = ("tests/", "bench/", "scripts/", ".venv/", "node_modules/", ".git")
    assert not [n for n in inside if n.startswith(unwanted) or "__pycache__" in n]
    assert not [n for n in inside if n.startswith(("test-artifacts/", "data/"))]
    assert "manifest.json" not in inside

    stock = folder / "stock"
    stock.mkdir()
    (stock / "sitecustomize.py").write_text(STOCK_SITECUSTOMIZE)
    live = LiveLNbits(
        link_extension=False,
        LNBITS_EXTENSIONS_MANIFESTS=json.dumps([manifest_url]),
        # Also consulted for releases; keep it on loopback (an empty manifest).
        LNBITS_EXTENSIONS_BUILDER_MANIFEST_URL=f"{base}/builder.json",
        PYTHONPATH=str(stock),
        SATMACHINE_STOCK_REPORT=str(folder / "stock-report.json"),
    )
    extensions = live.dir / "extensions"
    try:
        assert list(extensions.iterdir()) == []
        live.start()
        live.first_install(enable=False)
        blocked = json.loads((folder / "stock-report.json").read_text())
        assert "asyncssh" in blocked, "the server must run without asyncssh"
        assert live.http.get(f"/{EXT}/api/v1/dca/client-limits").status_code == 404

        # The release as the Extensions page lists it, from the manifest.
        response = live.http.get(f"/api/v1/extension/{EXT}/releases", headers=live.auth)
        assert response.status_code == 200, response.text
        [listed] = [r for r in response.json() if r["source_repo"] == manifest_url]
        assert listed["version"] == VERSION
        assert listed["archive"] == entry["archive"]
        assert listed["hash"] == entry["hash"]
        assert listed["is_version_compatible"] is True

        # A manifest whose hash does not match the archive: refused, nothing
        # unpacked.
        good_manifest = (folder / "manifest.json").read_text()
        (folder / "manifest.json").write_text(
            good_manifest.replace(entry["hash"], "0" * 64)
        )
        response = install(live, manifest_url, entry)
        assert response.status_code == 400, response.text
        assert "hash" in response.json()["detail"].lower()
        assert not (extensions / EXT).exists()
        (folder / "manifest.json").write_text(good_manifest)

        # Install, as the Extensions page does; then enable it for the operator.
        response = install(live, manifest_url, entry)
        assert response.status_code == 200, response.text + live.log_tail()
        assert response.json()["code"] == EXT
        ext_dir = extensions / EXT
        assert ext_dir.is_dir() and not ext_dir.is_symlink()
        config = json.loads((ext_dir / "config.json").read_text())
        assert config["version"] == VERSION
        assert not (ext_dir / "tests").exists()
        assert installed_version(live) == VERSION
        migrations = (ext_dir / "migrations.py").read_text()
        last_migration = max(
            int(n) for n in re.findall(r"^async def m(\d{3})_", migrations, re.M)
        )
        assert db_version(live) == last_migration
        live.enable_extension()

        # Use it: configuration, a client, a confirmed deposit, the overview.
        source = live.create_wallet("Source")
        response = live.api("POST", "/config", json={"source_wallet_id": source["id"]})
        assert response.status_code == 201, response.text
        maria = live.create_user_wallet("maria")
        response = live.api(
            "POST", "/clients", json={"wallet_id": maria["id"], "username": "maria"}
        )
        assert response.status_code == 201, response.text
        client_id = response.json()["id"]
        response = live.api(
            "POST",
            "/deposits",
            json={"client_id": client_id, "amount": "100.00", "currency": "GTQ"},
        )
        assert response.status_code == 201, response.text
        deposit_id = response.json()["id"]
        response = live.api(
            "PUT", f"/deposits/{deposit_id}/status", json={"status": "confirmed"}
        )
        assert response.status_code == 200, response.text
        summary = live.api("GET", "/summary")
        assert summary.status_code == 200, summary.text
        assert float(summary.json()["deposits_confirmed"]) == 100.0
        # Its page and static files come from the unpacked archive.
        page = live.http.get(f"/{EXT}/", headers=live.auth)
        assert page.status_code == 200, page.text[:500]
        tile = live.http.get(f"/{EXT}/static/image/satmachine.png")
        assert tile.status_code == 200

        # A newer release of the same code, installed over it the same way.
        newer = release(folder, base, NEXT_VERSION)
        response = live.http.get(f"/api/v1/extension/{EXT}/releases", headers=live.auth)
        versions = {r["version"] for r in response.json()}
        assert {VERSION, NEXT_VERSION} <= versions
        response = install(live, manifest_url, newer)
        assert response.status_code == 200, response.text + live.log_tail()
        config = json.loads((ext_dir / "config.json").read_text())
        assert config["version"] == NEXT_VERSION
        assert installed_version(live) == NEXT_VERSION
        assert db_version(live) == last_migration

        def kept() -> None:
            clients = live.api("GET", "/clients")
            assert clients.status_code == 200, clients.text
            assert [c["id"] for c in clients.json()] == [client_id]
            deposit = live.api("GET", f"/deposits/{deposit_id}")
            assert deposit.status_code == 200, deposit.text
            assert deposit.json()["status"] == "confirmed"
            summary = live.api("GET", "/summary")
            assert summary.status_code == 200, summary.text
            assert float(summary.json()["deposits_confirmed"]) == 100.0
            config = live.api("GET", "/config")
            assert config.json()["source_wallet_id"] == source["id"]

        kept()
        # And it still writes.
        response = live.api(
            "POST",
            "/deposits",
            json={"client_id": client_id, "amount": "5.00", "currency": "GTQ"},
        )
        assert response.status_code == 201, response.text

        # A release with a new migration: the upgrade runs it (LNbits imports
        # the new migrations.py: nothing in the extension may import it at
        # load time, or the old module would be reused until a restart).
        assert "release_probe" not in ext_tables(live)
        probe = add_migration(
            folder, release(folder, base, PROBE_VERSION), last_migration + 1
        )
        response = install(live, manifest_url, probe)
        assert response.status_code == 200, response.text + live.log_tail()
        assert installed_version(live) == PROBE_VERSION
        assert db_version(live) == last_migration + 1
        assert "release_probe" in ext_tables(live)
        kept()

        # After a restart LNbits loads the installed copy from its folder.
        live.stop()
        live.start()
        live.login()
        assert live.http.get(f"/{EXT}/api/v1/dca/client-limits").status_code == 200
        assert installed_version(live) == PROBE_VERSION
        assert db_version(live) == last_migration + 1
        kept()
    finally:
        live.close()
