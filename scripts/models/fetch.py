"""Pinned downloads from package registries with sha256 checks.

Archives are fetched with the ordinary clients (`pip download`, `npm pack`) into
`.cache/downloads/<registry>/` and are only used after their sha256 matches the pin. A mismatch
(corrupted file, wrong version served, tampering) is an error that names the package, the
expected and the actual digest; the bad file is moved aside so the next run fetches it again.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


class FetchError(RuntimeError):
    """A registry package could not be fetched or did not match its pin."""


@dataclass(frozen=True)
class Package:
    """One exact registry artefact: `filename` is what the registry serves for this version."""

    registry: str  # "pypi" or "npm"
    name: str
    version: str
    filename: str
    sha256: str
    # Extra `pip download` arguments that select one exact file (platform wheels).
    pip_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}" if self.registry == "pypi" else f"{self.name}@{self.version}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check(pkg: Package, path: Path) -> None:
    actual = sha256_file(path)
    if actual != pkg.sha256:
        bad = path.with_name(path.name + ".bad")
        os.replace(path, bad)
        raise FetchError(
            f"{pkg.registry} package {pkg.spec} ({pkg.filename}): sha256 mismatch\n"
            f"  expected {pkg.sha256}\n  actual   {actual}\n"
            f"  the file was moved aside to {bad}; run again to re-download it"
        )


# Registry hiccups (a dropped connection, a 5xx) are the usual cause of a failed fetch on a fresh
# machine, and one lost archive fails the whole setup, so each download is tried a few times.
ATTEMPTS = 3
RETRY_WAIT_S = (10, 30)


def _client_command(pkg: Package, dest: str) -> list[str]:
    if pkg.registry == "pypi":
        # --no-deps: we want one archive, never an install. --ignore-requires-python: some
        # pinned packages declare an upper Python bound that is irrelevant for reading files.
        return [sys.executable, "-m", "pip", "download", "--no-deps", "--ignore-requires-python",
                "--disable-pip-version-check", "-q", "-d", dest, *pkg.pip_args, pkg.spec]
    if pkg.registry == "npm":
        # --loglevel=error, not --silent: --silent also swallows npm's own error lines, which left
        # a failed fetch with no reason at all.
        return ["npm", "pack", "--loglevel=error", "--pack-destination", dest, pkg.spec]
    raise FetchError(f"unknown registry {pkg.registry!r} for {pkg.name}")


def _client_env(pkg: Package, dest_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    if pkg.registry == "npm":
        # npm's own cache lives under $HOME by default; keep it beside ours so that a fresh
        # machine with an unusual or read-only home still fetches. No update or funding checks:
        # they are extra network requests that can only fail.
        env.setdefault("npm_config_cache", str(dest_dir.parent / "npm-cache"))
        env.setdefault("npm_config_update_notifier", "false")
        env.setdefault("npm_config_fund", "false")
    return env


def _run_client(pkg: Package, cmd: list[str], env: dict[str, str]) -> None:
    """Run the registry client, retrying failures; raise with its own output after the last try."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
        except FileNotFoundError as e:
            raise FetchError(f"cannot fetch {pkg.spec}: registry client not found ({e.filename})") from e
        except subprocess.TimeoutExpired:
            res = None
        if res is not None and res.returncode == 0:
            return
        why = ("timed out after 1800 s" if res is None else
               f"exit code {res.returncode}: " + ((res.stderr + res.stdout).strip()[-2000:] or "no output"))
        if attempt == ATTEMPTS:
            raise FetchError(f"`{' '.join(cmd)}` failed {ATTEMPTS} times for {pkg.spec}; last: {why}")
        wait = RETRY_WAIT_S[min(attempt, len(RETRY_WAIT_S)) - 1]
        print(f"fetching {pkg.spec} failed ({why.splitlines()[0]}); retrying in {wait} s", file=sys.stderr,
              flush=True)
        time.sleep(wait)


def _download(pkg: Package, dest_dir: Path) -> Path:
    """Run the registry client into a scratch dir next to the cache and return the new file."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".dl-") as tmp:
        cmd = _client_command(pkg, tmp)
        _run_client(pkg, cmd, _client_env(pkg, dest_dir))
        got = Path(tmp) / pkg.filename
        if not got.exists():
            listing = ", ".join(sorted(os.listdir(tmp))) or "nothing"
            raise FetchError(
                f"{pkg.registry} package {pkg.spec}: expected file {pkg.filename}, got {listing} "
                "(wrong version or platform served?)"
            )
        final = dest_dir / pkg.filename
        os.replace(got, final)
    return final


def fetch(pkg: Package, cache_root: Path) -> Path:
    """Return the path of the verified archive, downloading it if it is not cached."""
    path = cache_root / pkg.registry / pkg.filename
    if not path.exists():
        path = _download(pkg, path.parent)
    _check(pkg, path)
    return path


def read_member(archive: Path, member: str) -> bytes:
    """Read one file out of a wheel/zip or a .tar.gz/.tgz without extracting the archive."""
    name = archive.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            try:
                return z.read(member)
            except KeyError:
                raise FetchError(f"{archive.name}: no member {member!r}") from None
    if name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive, "r:gz") as t:
            try:
                f = t.extractfile(member)
            except KeyError:
                f = None
            if f is None:
                raise FetchError(f"{archive.name}: no member {member!r}")
            return f.read()
    raise FetchError(f"{archive}: unsupported archive type")


def read_members(archive: Path, members: list[str]) -> dict[str, bytes]:
    """Like read_member for several files; one pass over a tarball (they can be 150 MB)."""
    if archive.name.endswith((".tar.gz", ".tgz")):
        want, out = set(members), {}
        with tarfile.open(archive, "r:gz") as t:
            for info in t:
                if info.name in want:
                    out[info.name] = t.extractfile(info).read()
        missing = want - set(out)
        if missing:
            raise FetchError(f"{archive.name}: no member(s) {sorted(missing)}")
        return out
    return {m: read_member(archive, m) for m in members}


def remove_cached(pkg: Package, cache_root: Path) -> None:
    path = cache_root / pkg.registry / pkg.filename
    if path.exists():
        path.unlink()


__all__ = ["Package", "FetchError", "fetch", "read_member", "read_members", "sha256_file", "remove_cached"]
