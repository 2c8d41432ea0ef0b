"""requirements.lock: every dependency of pyproject.toml pinned, with hashes.

    python3 tools/lock.py            regenerate (`make lock`); pins still allowed are kept
    python3 tools/lock.py --upgrade  regenerate with the newest versions allowed
    python3 tools/lock.py --check    exit 1 if pyproject.toml's dependencies changed since
    python3 tools/lock.py --ensure   regenerate only when stale (`make setup` runs this)

The lock covers the runtime dependencies, the `dev` extra and the build backend, for every
platform and every Python >= the one `requires-python` names (`uv pip compile --universal
--generate-hashes`), so `pip install --require-hashes -r requirements.lock` followed by
`pip install --no-deps --no-build-isolation -e .` installs nothing unpinned.

Its second line records a hash of the lock's inputs (dependencies, extras, requires-python and
build requirements in pyproject.toml); an edit of anything else in pyproject.toml leaves it fresh.
uv comes from the lock itself (dev extra) into .venv; bootstrapped with its locked hashes when
.venv has none yet. Standard library only: it runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if sys.version_info < (3, 11):  # noqa: UP036 - a clear message on older Pythons, not a traceback
    sys.exit(f"Switchboard needs Python 3.11 or newer; this is {sys.version.split()[0]}")

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
VENV = ROOT / ".venv"
COMMAND = "make lock"
INPUTS_PREFIX = "# inputs-sha256: "


def lock_inputs(pyproject: Path = PYPROJECT) -> dict[str, object]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = data.get("project", {})
    return {
        "requires-python": project.get("requires-python", ""),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "build-requires": data.get("build-system", {}).get("requires", []),
    }


def inputs_digest(pyproject: Path = PYPROJECT) -> str:
    canonical = json.dumps(lock_inputs(pyproject), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def recorded_digest(lock: Path = LOCK) -> str | None:
    try:
        for line in lock.read_text(encoding="utf-8").splitlines()[:10]:
            if line.startswith(INPUTS_PREFIX):
                return line[len(INPUTS_PREFIX) :].split()[0]
    except OSError:
        pass
    return None


def is_fresh(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> bool:
    return recorded_digest(lock) == inputs_digest(pyproject)


def min_python(pyproject: Path = PYPROJECT) -> str:
    found = re.search(r">=\s*(\d+\.\d+)", str(lock_inputs(pyproject)["requires-python"]))
    return found.group(1) if found else f"{sys.version_info.major}.{sys.version_info.minor}"


def locked_entry(name: str, lock: Path = LOCK) -> str | None:
    """One package's lines (`name==v ; marker \\` and its `--hash` lines) from the lock."""
    try:
        lines = lock.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    out: list[str] = []
    for line in lines:
        if out and not line.startswith(" "):
            break
        if (out or line.startswith(f"{name}==")) and not line.lstrip().startswith("#"):
            out.append(line)
    return "\n".join(out) + "\n" if out else None


def uv_command() -> list[str]:
    """uv from .venv, else from PATH, else installed into .venv (hash-checked if locked)."""
    venv_uv = VENV / "bin" / "uv"
    if venv_uv.is_file():
        return [str(venv_uv)]
    on_path = shutil.which("uv")
    if on_path:
        return [on_path]
    python = VENV / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    entry = locked_entry("uv")
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "uv.txt"
        req.write_text(entry or "uv\n")
        hashes = ["--require-hashes"] if entry else []
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--no-deps", *hashes, "-r", str(req)],
            check=True,
        )
    return [str(venv_uv)]


def regenerate(*, upgrade: bool = False) -> None:
    build_requires = "".join(f"{r}\n" for r in lock_inputs()["build-requires"])  # type: ignore[attr-defined]
    cmd = [
        *uv_command(), "pip", "compile", str(PYPROJECT.name), "-",
        "--extra", "dev", "--universal", "--python-version", min_python(),
        "--generate-hashes", "--custom-compile-command", COMMAND,
        "--output-file", str(LOCK.name), "--quiet",
    ]  # fmt: skip
    if upgrade:
        cmd.append("--upgrade")
    env = {**os.environ, "UV_NO_CONFIG": "1"}
    subprocess.run(cmd, input=build_requires, text=True, check=True, cwd=ROOT, env=env)
    lines = LOCK.read_text(encoding="utf-8").splitlines(keepends=True)
    lines = [ln for ln in lines if not ln.startswith(INPUTS_PREFIX)]
    stamp = f"{INPUTS_PREFIX}{inputs_digest()}  (pyproject.toml's dependencies; `{COMMAND}`)\n"
    at = next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))
    lines.insert(at, stamp)
    LOCK.write_text("".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate or check requirements.lock.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 if the lock is stale")
    group.add_argument("--ensure", action="store_true", help="regenerate only if stale")
    group.add_argument("--upgrade", action="store_true", help="newest allowed versions")
    args = parser.parse_args(argv)
    fresh = is_fresh()
    if args.check:
        if not fresh:
            print(
                f"{LOCK.name} is stale: pyproject.toml's dependencies changed since it was made. "
                f"Run `{COMMAND}` and commit {LOCK.name}.",
                file=sys.stderr,
            )
            return 1
        print(f"{LOCK.name} matches pyproject.toml")
        return 0
    if args.ensure and fresh:
        return 0
    if args.ensure:
        print(
            f"*** {LOCK.name} is stale (pyproject.toml's dependencies changed): regenerating it "
            f"with `{COMMAND}`; commit the new {LOCK.name}. ***",
            file=sys.stderr,
        )
    try:
        regenerate(upgrade=args.upgrade)
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"could not regenerate {LOCK.name}: {e}", file=sys.stderr)
        return 1
    print(f"{LOCK.name} regenerated for Python >= {min_python()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
