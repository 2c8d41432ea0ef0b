"""The set-up helpers that need no broker or database: where PostgreSQL's data goes, how
secrets are written, what is installed when a program is missing, and the dependency lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shared.infra import postgres, prereqs
from shared.infra.local import Endpoints, mask_password
from shared.infra.proc import write_private
from shared.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
import lock

# --- PostgreSQL's data dir as root ------------------------------------------------------------


def test_each_state_dir_gets_its_own_server_dir_outside_it(tmp_path: Path) -> None:
    a, b = tmp_path / "one" / ".switchboard", tmp_path / "two" / ".switchboard"
    assert postgres.server_dir(a) == postgres.server_dir(a)
    assert postgres.server_dir(a) != postgres.server_dir(b)
    assert postgres.server_dir(a / "test") != postgres.server_dir(a)
    for d in (a, b):
        assert postgres.server_dir(d).parent == postgres.SERVER_BASE
        assert not postgres.server_dir(d).is_relative_to(tmp_path)


def test_server_dir_names_are_safe_and_bounded(tmp_path: Path) -> None:
    odd = tmp_path / "a b;$(rm -rf)" / ("x" * 300) / ".switchboard"
    name = postgres.server_dir(odd).name
    assert len(name) <= 53 and all(c.isalnum() or c == "-" for c in name)


def test_relative_and_absolute_state_dirs_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert postgres.server_dir(Path("state")) == postgres.server_dir(tmp_path / "state")


def test_paths_keep_the_server_dir_out_of_the_state_dir_only_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres.os, "geteuid", lambda: 0)
    as_root = postgres.Paths.of(tmp_path)
    assert as_root.data.is_relative_to(postgres.SERVER_BASE)
    assert as_root.passwords.is_relative_to(tmp_path) and as_root.log.is_relative_to(tmp_path)
    assert as_root.legacy_data == tmp_path / "postgres" / "data"
    monkeypatch.setattr(postgres.os, "geteuid", lambda: 1000)
    user = postgres.Paths.of(tmp_path)
    assert user.data == tmp_path / "postgres" / "data" and user.legacy_data is None


# --- secrets ----------------------------------------------------------------------------------


def test_secret_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "infra.env"
        write_private(path, "A=1\n")
        write_private(path, "A=2\n")  # replaced, still private
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "A=2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["infra.env"]


def test_secret_files_are_not_written_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    path = tmp_path / "passwords.json"
    path.symlink_to(victim)
    write_private(path, "{}")
    assert victim.read_text() == "keep" and not path.is_symlink()


def test_passwords_are_generated_quoted_in_urls_and_masked_when_printed(tmp_path: Path) -> None:
    pw = postgres.Passwords.create(tmp_path)
    assert postgres.Passwords.load(tmp_path) == pw
    assert len({pw.superuser, pw.owner, pw.app}) == 3 and min(map(len, vars(pw).values())) >= 32
    assert stat.S_IMODE(postgres.Paths.of(tmp_path).passwords.stat().st_mode) == 0o600
    e = Endpoints.local(9092, 5432, postgres.Passwords("s/p@ss", "o", "a"))
    assert e.database_superuser_url == "postgresql://postgres:s%2Fp%40ss@127.0.0.1:5432/switchboard"
    assert (
        e.masked()["DATABASE_SUPERUSER_URL"]
        == "postgresql://postgres:***@127.0.0.1:5432/switchboard"
    )
    assert (
        "s%2Fp" not in str(e.masked()) and e.masked()["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    )
    assert mask_password("postgresql://h:5432/db") == "postgresql://h:5432/db"


# --- missing programs ------------------------------------------------------------------------


def fake_java(tmp_path: Path, version_line: str) -> Path:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir(exist_ok=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return java


@pytest.mark.parametrize(
    ("line", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_292"', 8),
        ("no version here", None),
    ],
)
def test_java_major_version(tmp_path: Path, line: str, major: int | None) -> None:
    assert prereqs.java_major(str(fake_java(tmp_path, line))) == major


def test_an_old_java_counts_as_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_java(tmp_path, 'openjdk version "11.0.2"')
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert [n.name for n in prereqs.missing(("java",))] == ["java"]
    fake_java(tmp_path, 'openjdk version "17.0.1"')
    assert prereqs.missing(("java",)) == []


def run_prereqs(tmp_path: Path, *args: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "JAVA_HOME": str(tmp_path / "nojava"), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-P", str(REPO_ROOT / "shared/infra/prereqs.py"), *args],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_script_runs_without_the_virtualenv_and_plans_apt_get_as_root(tmp_path: Path) -> None:
    """Stdlib only (the Makefile runs it before .venv exists); with java and mvn off PATH it
    plans apt-get, as root, and installs nothing in --dry-run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "apt-cache", "sudo"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    done = run_prereqs(tmp_path, "--dry-run", "java", "maven", path=str(bin_dir))
    assert done.returncode == 0, done.stderr
    if os.geteuid() == 0:
        assert done.stdout.splitlines() == [
            "apt-get update -q",
            "apt-get install -y --no-install-recommends openjdk-17-jre-headless maven",
        ]
    else:  # through `sudo -n` (the fake one says yes)
        assert "sudo -n apt-get install" in done.stdout


def test_without_apt_get_the_error_names_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prereqs, "missing", lambda names: [prereqs.NEEDS[n] for n in names])
    monkeypatch.setattr(prereqs.shutil, "which", lambda name: None)
    monkeypatch.setattr(prereqs, "_os_ids", lambda: ["rocky", "rhel", "fedora"])
    with pytest.raises(prereqs.PrerequisiteError, match="sudo dnf install -y java-17-openjdk"):
        prereqs.ensure(("java", "postgresql"))
    monkeypatch.setattr(prereqs, "_os_ids", lambda: ["darwin"])
    with pytest.raises(prereqs.PrerequisiteError, match="brew install openjdk@17"):
        prereqs.ensure(("maven",))


def test_a_user_without_sudo_is_told_the_apt_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prereqs, "missing", lambda names: [prereqs.NEEDS[n] for n in names])
    monkeypatch.setattr(prereqs.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(
        prereqs.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None
    )
    with pytest.raises(prereqs.PrerequisiteError) as e:
        prereqs.ensure(("postgresql",))
    assert (
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends postgresql"
        in str(e.value)
    )


# --- the dependency lock ----------------------------------------------------------------------


def test_the_lock_matches_pyproject() -> None:
    assert lock.is_fresh(), "requirements.lock is stale: run `make lock` and commit it"


def test_the_lock_pins_every_package_with_hashes() -> None:
    text = lock.LOCK.read_text()
    entries = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert entries and all("==" in ln and ln.endswith("\\") for ln in entries)
    for name in ("faststream", "asyncpg", "pytest", "setuptools", "uv"):
        entry = lock.locked_entry(name)
        assert entry is not None and "--hash=sha256:" in entry, name


def test_only_dependency_edits_make_the_lock_stale(tmp_path: Path) -> None:
    original = (REPO_ROOT / "pyproject.toml").read_text()
    copy = tmp_path / "pyproject.toml"
    copy.write_text(original.replace("line-length = 100", "line-length = 99"))
    assert lock.inputs_digest(copy) == lock.inputs_digest()
    copy.write_text(original.replace("dependencies = [\n", 'dependencies = [\n  "six",\n', 1))
    assert lock.inputs_digest(copy) != lock.inputs_digest()
    assert lock.min_python(copy) == "3.11"


def test_lock_check_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "requirements.lock"
    stale.write_text("# inputs-sha256: 0000\n")
    monkeypatch.setattr(lock, "LOCK", stale)
    monkeypatch.setattr(
        lock, "is_fresh", lambda: lock.recorded_digest(stale) == lock.inputs_digest()
    )
    assert lock.main(["--check"]) == 1
    assert "Run `make lock`" in capsys.readouterr().err
