#!/usr/bin/env python3
"""Build the release archive LNbits installs, and its entry in manifest.json.

    scripts/release.py [--url-base URL] [--version X.Y.Z] [--out-dir dist]
                       [--manifest manifest.json]

What LNbits' extension manager (1.6.2) does with a manifest entry
(`{"extensions": [{"id", "version", "archive", "hash", ...}]}`): it downloads
`archive`, refuses it unless its sha256 is `hash`, reads `<top>/config.json`
from the zip, extracts the zip's first top-level folder into
`<extensions>/<id>/` (replacing what was there), runs the new migrations and
mounts the routes. So the archive is `satmachineadmin-<version>.zip` holding
one folder, `satmachineadmin-<version>/`, with only what runs inside LNbits:
the modules, config.json, static/, templates/ and the docs. No tests, bench,
scripts, virtualenv or node_modules.

The version comes from config.json; `--version` overrides it in the archive's
copy of config.json only (the checkout is never changed). The archive is
reproducible: same files, same bytes, same hash.

The archive's URL is `<url base>/satmachineadmin-<version>.zip`. The base is
`--url-base`, else $SATMACHINE_RELEASE_URL_BASE, else this project's GitHub
release for the tag `v<version>`; `{version}` in it is replaced by the version.
The entry for this id and version in the manifest is replaced (or added);
other versions and other extensions are kept.

Only the standard library: it runs with any Python 3.10+.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
URL_BASE_ENV = "SATMACHINE_RELEASE_URL_BASE"

# Top-level files and folders of the checkout that go into the archive, besides
# every *.py module at the root and any sub-package (a folder with __init__.py).
TOP_FILES = ("config.json", "description.md", "toc.md", "README.md")
TOP_DIRS = ("static", "templates", "docs")
# Never shipped, wherever they are.
SKIP_DIRS = {"__pycache__", "node_modules", "tests", "bench", "scripts"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".sqlite3", ".orig", ".rej", ".swp", "~")


def load_config(root: Path = ROOT) -> dict[str, Any]:
    config = json.loads((root / "config.json").read_text())
    for key in ("id", "version", "name"):
        if not config.get(key):
            raise SystemExit(f"config.json has no {key!r}")
    return config


def _shipped(path: Path) -> bool:
    return not path.name.startswith(".") and not path.name.endswith(SKIP_SUFFIXES)


def _walk(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.iterdir()):
        if not _shipped(path) or path.name in SKIP_DIRS:
            continue
        if path.is_dir():
            files += _walk(path)
        elif path.is_file():
            files.append(path)
    return files


def release_files(root: Path = ROOT) -> list[str]:
    """The archive's files, as paths relative to the checkout, sorted."""
    if not (root / "__init__.py").is_file():
        raise SystemExit(f"{root} is not the extension (no __init__.py)")
    files: list[Path] = []
    for path in sorted(root.iterdir()):
        if not _shipped(path) or path.name in SKIP_DIRS:
            continue
        if path.is_file() and (path.suffix == ".py" or path.name in TOP_FILES):
            files.append(path)
        elif path.is_dir() and (
            path.name in TOP_DIRS or (path / "__init__.py").is_file()
        ):
            files += _walk(path)
    for name in ("LICENSE", "LICENSE.md", "LICENSE.txt"):
        if (root / name).is_file():
            files.append(root / name)
    return sorted(path.relative_to(root).as_posix() for path in files)


def _zip_time() -> tuple[int, int, int, int, int, int]:
    # Fixed (or SOURCE_DATE_EPOCH) so that the same files give the same hash.
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return (1980, 1, 1, 0, 0, 0)
    stamp = time.gmtime(max(int(epoch), 315532800))
    return (stamp[0], stamp[1], stamp[2], stamp[3], stamp[4], stamp[5])


def build_archive(
    out_dir: Path, version: str | None = None, root: Path = ROOT
) -> tuple[Path, dict[str, Any]]:
    """Write `<id>-<version>.zip` into out_dir; returns its path and the
    config.json it carries."""
    config = load_config(root)
    overridden = bool(version) and version != config["version"]
    if version:
        config["version"] = version
    version = str(config["version"])
    if not re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", version):
        raise SystemExit(f"not a version: {version!r}")
    top = f"{config['id']}-{version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{top}.zip"
    date_time = _zip_time()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in release_files(root):
            data = (root / name).read_bytes()
            if name == "config.json" and overridden:
                data = (json.dumps(config, indent=2) + "\n").encode()
            info = zipfile.ZipInfo(f"{top}/{name}", date_time=date_time)
            info.create_system = 3  # unix, so the mode below is honoured
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=9)
    archive.write_bytes(buffer.getvalue())
    return archive, config


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _github_repo(config: dict[str, Any]) -> str | None:
    match = re.fullmatch(
        r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?", config.get("repo", "")
    )
    return match.group(1) if match else None


def default_url_base(config: dict[str, Any]) -> str:
    repo = _github_repo(config)
    if not repo:
        raise SystemExit(
            "config.json's repo is not on GitHub: "
            f"pass --url-base or set {URL_BASE_ENV}"
        )
    return f"https://github.com/{repo}/releases/download/v{{version}}"


def manifest_entry(
    config: dict[str, Any], archive: Path, url_base: str
) -> dict[str, Any]:
    """An `ExplicitRelease` of LNbits' manifest format."""
    version = str(config["version"])
    base = url_base.replace("{version}", version).rstrip("/")
    repo = _github_repo(config)
    tile = config.get("tile") or ""
    icon = tile
    if repo and tile.count("/") >= 2:
        # Where LNbits itself looks for a GitHub extension's tile: the tile is
        # served by the extension, so before installing the page needs a URL.
        icon = f"https://github.com/{repo}/raw/main/{tile.split('/', 2)[2]}"
    entry: dict[str, Any] = {
        "id": config["id"],
        "name": config["name"],
        "version": version,
        "short_description": config.get("short_description"),
        "icon": icon or None,
        "repo": config.get("repo"),
        "html_url": (
            f"https://github.com/{repo}/releases/tag/v{version}" if repo else None
        ),
        "archive": f"{base}/{archive.name}",
        "hash": sha256(archive),
        "min_lnbits_version": config.get("min_lnbits_version"),
        "max_lnbits_version": config.get("max_lnbits_version"),
    }
    return {key: value for key, value in entry.items() if value is not None}


def _version_key(version: str) -> tuple:
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"[.+-]", version)
    )


def update_manifest(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Put the entry into LNbits' manifest at path (created if missing): the
    same id and version is replaced, other releases are kept."""
    manifest: dict[str, Any] = {}
    if path.is_file():
        manifest = json.loads(path.read_text() or "{}")
    releases = [
        e
        for e in manifest.get("extensions", [])
        if (e.get("id"), e.get("version")) != (entry["id"], entry["version"])
    ]
    releases.append(entry)
    releases.sort(key=lambda e: (e.get("id", ""), _version_key(e.get("version", ""))))
    manifest["extensions"] = releases
    # A GitHub "repos" entry for the same id would list GitHub's source
    # zipballs (tests and all, no hash) next to these archives: drop it.
    repos = [r for r in manifest.get("repos", []) if r.get("id") != entry["id"]]
    if repos:
        manifest["repos"] = repos
    else:
        manifest.pop("repos", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def uncommitted(files: list[str], root: Path = ROOT) -> list[str]:
    """Shipped files that differ from git's HEAD (none if git is missing)."""
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--", *files],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return [line[3:] for line in result.stdout.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the LNbits release archive and its manifest entry."
    )
    parser.add_argument(
        "--url-base",
        default=os.environ.get(URL_BASE_ENV),
        help=f"where the archive will be downloaded from (default ${URL_BASE_ENV}, "
        "else the GitHub release v{version} of config.json's repo)",
    )
    parser.add_argument(
        "--version", help="override config.json's version, in the archive only"
    )
    parser.add_argument("--out-dir", type=Path, default=ROOT / "dist")
    parser.add_argument("--manifest", type=Path, default=ROOT / "manifest.json")
    args = parser.parse_args(argv)

    archive, config = build_archive(args.out_dir, args.version)
    url_base = args.url_base or default_url_base(config)
    entry = manifest_entry(config, archive, url_base)
    update_manifest(args.manifest, entry)
    with zipfile.ZipFile(archive) as zf:
        count = len(zf.namelist())
    print(f"archive:  {archive} ({count} files, {archive.stat().st_size} bytes)")
    print(f"sha256:   {entry['hash']}")
    print(f"url:      {entry['archive']}")
    print(f"manifest: {args.manifest} (version {entry['version']})")
    sys.stdout.flush()
    dirty = uncommitted(release_files())
    if dirty:
        print(
            "warning: built with uncommitted changes (tag and upload a build of "
            f"a commit): {', '.join(dirty)}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
