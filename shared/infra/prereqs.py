"""The programs the local infrastructure needs, installed when they are missing.

Kafka 4 needs Java 17+, its jars are fetched once with Maven, and PostgreSQL needs the server
binaries (initdb, pg_ctl). On Debian and Ubuntu a missing one is installed with apt-get,
non-interactively, as root or through `sudo -n`; elsewhere the error names the exact command.

Standard library only: the Makefile runs `python3 shared/infra/prereqs.py` before the
virtualenv exists, and `switchboard infra up` calls the same functions.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("switchboard.infra")

JAVA_MIN = 17
# Debian/Ubuntu packages, first available wins: Debian 12 has 17, Debian 13 and Ubuntu 24.04
# have 21; `default-jre-headless` is 11 on Ubuntu 22.04, hence it comes last.
JAVA_PACKAGES = ("openjdk-17-jre-headless", "openjdk-21-jre-headless", "default-jre-headless")
POSTGRES_BINARIES = ("initdb", "pg_ctl", "postgres")

# What to run on systems without apt-get, by /etc/os-release ID (or ID_LIKE).
OTHER_SYSTEMS = {
    "fedora": "sudo dnf install -y java-17-openjdk-headless maven postgresql-server",
    "rhel": "sudo dnf install -y java-17-openjdk-headless maven postgresql-server",
    "suse": "sudo zypper install -y java-17-openjdk-headless maven postgresql-server",
    "arch": "sudo pacman -S --needed jre17-openjdk-headless maven postgresql",
    "alpine": "apk add openjdk17-jre-headless maven postgresql",
    "darwin": "brew install openjdk@17 maven postgresql@15",
}


class PrerequisiteError(RuntimeError):
    """A program the local infrastructure needs is missing and could not be installed."""


@dataclass(frozen=True)
class Need:
    name: str  # "java", "maven", "postgresql"
    why: str
    apt_packages: tuple[str, ...]  # alternatives: the first one apt can install is used


_PY = f"python3.{sys.version_info.minor}"

NEEDS = {
    "venv": Need("venv", f"{_PY}'s venv module makes .venv", (f"{_PY}-venv", "python3-venv")),
    "java": Need("java", f"Java {JAVA_MIN}+ runs the local Kafka 4 broker", JAVA_PACKAGES),
    "maven": Need("maven", "Maven downloads the Kafka jars once", ("maven",)),
    "postgresql": Need(
        "postgresql", "the PostgreSQL server binaries (initdb, pg_ctl)", ("postgresql",)
    ),
    # --- the console's browser tests (not the infrastructure): Debian's Chromium, driven by
    # Playwright through its executable path; a test tool's own browser download never works
    # here (closed network), so the system's package is the browser.
    "chromium": Need("chromium", "Chromium runs the console's browser tests", ("chromium",)),
}


# --- what is there ----------------------------------------------------------------------------


def java_path() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def java_major(java: str) -> int | None:
    """The major version `java -version` reports (8 for "1.8.0_x", 17 for "17.0.15")."""
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def java_ok() -> bool:
    java = java_path()
    return java is not None and (java_major(java) or 0) >= JAVA_MIN


def maven_ok() -> bool:
    return shutil.which("mvn") is not None


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name)) or (0,)


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin dir (/usr/lib/postgresql/N/bin), else the one of the
    `pg_ctl` on PATH; None if neither has the server binaries."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.insert(0, Path(on_path).resolve().parent)
    for d in reversed(candidates):
        if all((d / b).is_file() for b in POSTGRES_BINARIES):
            return d
    return None


def venv_ok() -> bool:
    try:
        import ensurepip  # noqa: F401  (Debian ships it in pythonX.Y-venv)
    except ImportError:
        return False
    return True


CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    """The system's Chromium: CHROMIUM_PATH, else the first of CHROMIUM_NAMES on PATH."""
    named = os.environ.get("CHROMIUM_PATH")
    if named:
        return named if Path(named).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


CHECKS: dict[str, Callable[[], bool]] = {
    "venv": venv_ok,
    "chromium": lambda: chromium_path() is not None,
    "java": java_ok,
    "maven": maven_ok,
    "postgresql": lambda: postgres_bindir() is not None,
}


INFRA = ("java", "maven", "postgresql")


def missing(names: tuple[str, ...] = INFRA) -> list[Need]:
    return [NEEDS[n] for n in names if not CHECKS[n]()]


# --- installing -------------------------------------------------------------------------------


def _os_ids() -> list[str]:
    if sys.platform == "darwin":
        return ["darwin"]
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return []
    ids: list[str] = []
    for key in ("ID", "ID_LIKE"):
        found = re.search(rf"^{key}=\"?([^\"\n]*)", text, re.M)
        if found:
            ids += found.group(1).split()
    return ids


def _privilege() -> list[str] | None:
    """[] as root, ["sudo", "-n"] if sudo works without a password, else None."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["sudo", "-n"]
    return None


def _apt_candidate(package: str) -> bool:
    done = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    )
    found = re.search(r"Candidate:\s*(\S+)", done.stdout)
    return found is not None and found.group(1) != "(none)"


def _apt_packages(needs: list[Need]) -> list[str]:
    chosen = []
    for need in needs:
        available = [p for p in need.apt_packages if _apt_candidate(p)]
        chosen.append(available[0] if available else need.apt_packages[0])
    return chosen


def install_command(needs: list[Need]) -> str:
    """The command that installs `needs` on this system, for messages."""
    if shutil.which("apt-get"):
        pkgs = " ".join(n.apt_packages[0] for n in needs)
        sudo = "" if os.geteuid() == 0 else "sudo "
        return f"{sudo}apt-get update && {sudo}apt-get install -y --no-install-recommends {pkgs}"
    if any(n.name != "venv" for n in needs):
        for os_id in _os_ids():
            if os_id in OTHER_SYSTEMS:
                return OTHER_SYSTEMS[os_id]
    return "your system's packages for: " + "; ".join(n.why for n in needs)


def ensure(names: tuple[str, ...] = INFRA, *, dry_run: bool = False) -> list[str]:
    """Install what of `names` is missing (apt-get on Debian/Ubuntu, as root or `sudo -n`).

    Returns the apt packages installed (or, with `dry_run`, that would be). Raises
    PrerequisiteError naming the exact command when it cannot install them itself.
    """
    needs = missing(names)
    if not needs:
        return []
    what = "; ".join(n.why for n in needs)
    privilege = _privilege() if shutil.which("apt-get") else None
    if privilege is None:
        raise PrerequisiteError(
            f"missing: {what}.\nInstall them with:\n    {install_command(needs)}\n"
            "then run the command again."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = [*privilege, "apt-get", "update", "-q"]
    if dry_run:
        pkgs = [n.apt_packages[0] for n in needs]
        print(" ".join(update))
        print(" ".join([*privilege, "apt-get", "install", "-y", "--no-install-recommends", *pkgs]))
        return pkgs
    log.warning("missing: %s. Installing with apt-get ...", what)
    subprocess.run(update, env=env, check=False)
    pkgs = _apt_packages(needs)
    cmd = [*privilege, "apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs]
    log.warning("%s", " ".join(cmd))
    done = subprocess.run(cmd, env=env, check=False)
    still = missing(names)
    if done.returncode != 0 or still:
        raise PrerequisiteError(
            f"apt-get could not install {' '.join(pkgs)} (exit {done.returncode}); "
            f"still missing: {'; '.join(n.why for n in still) or 'nothing'}"
        )
    return pkgs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install what the local infrastructure needs.")
    parser.add_argument("names", nargs="*", default=list(INFRA), choices=list(NEEDS))
    parser.add_argument("--dry-run", action="store_true", help="print the install commands only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ensure(tuple(args.names), dry_run=args.dry_run)
    except PrerequisiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
