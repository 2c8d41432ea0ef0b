"""Each owner keeps its migrations; the one migrator still applies exactly the versions it did.

Deployed databases recorded file names as versions in `schema_migrations`: a released file
that changed its name would be applied a second time, so the names are pinned here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.caselog.migrate import (
    DuplicateVersion,
    grants_sql,
    migration_files,
    migration_folders,
)

REPO = Path(__file__).resolve().parents[2]
# Every version released before the migrations moved to their owners, in the order applied.
RELEASED = [
    "0001_case_log.sql", "0002_service_state.sql", "0003_intake.sql", "0004_router.sql",
    "0005_sla.sql", "0006_escalation.sql", "0007_drop_escalation_agent.sql",
    "0008_intake_suppressed.sql", "0008_outbox_shards.sql", "0009_dead_letter.sql",
    "0010_escalation_delivery.sql", "0012_escalation_lease_holder.sql", "0020_router_floor.sql",
    "0030_keys.sql", "0040_case_log_v2.sql", "0050_console_indexes.sql",
]
CREATE = re.compile(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.I)
DROP = re.compile(r"DROP TABLE (?:IF EXISTS )?(\w+)", re.I)


def test_released_versions_keep_their_names_and_order() -> None:
    versions = [name for name, _ in migration_files()]
    assert versions[: len(RELEASED)] == RELEASED
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_the_log_and_every_service_with_tables_has_a_folder() -> None:
    folders = {str(f) for f in migration_folders()}
    assert str(REPO / "shared/caselog/migrations") in folders
    for name in ("intake", "router", "sla", "escalation", "console"):
        assert str(REPO / "services" / name / "migrations") in folders


def test_a_service_creates_only_tables_of_its_own_name() -> None:
    for folder in (REPO / "services").glob("*/migrations"):
        service = folder.parent.name
        for sql in folder.glob("*.sql"):
            for table in CREATE.findall(sql.read_text("utf-8")):
                assert table == service or table.startswith(f"{service}_"), (sql, table)


def test_every_table_is_granted_to_the_services_role_by_its_owner() -> None:
    text = "\n".join(sql for _, sql in migration_files())
    tables = set(CREATE.findall(text)) - set(DROP.findall(text))
    grants = grants_sql("switchboard_app")
    assert "{app_role}" not in grants
    for table in tables:
        assert re.search(rf"\bON {table} TO \"switchboard_app\"", grants), table
    for folder in (REPO / "services").glob("*/migrations"):
        owned = folder / "grants.sql"
        for table in re.findall(r"\bON (\w+) TO", owned.read_text() if owned.exists() else ""):
            assert table.startswith(folder.parent.name), (owned, table)


def test_one_version_in_two_folders_is_refused(tmp_path: Path) -> None:
    for owner in ("a", "b"):
        (tmp_path / owner).mkdir()
        (tmp_path / owner / "0100_same.sql").write_text("SELECT 1;")
    with pytest.raises(DuplicateVersion, match=r"0100_same\.sql"):
        migration_files([tmp_path / "a", tmp_path / "b"])


def test_versions_from_several_folders_interleave_by_name(tmp_path: Path) -> None:
    for owner, names in {"log": ["0001_x.sql", "0009_y.sql"], "svc": ["0005_z.sql"]}.items():
        (tmp_path / owner).mkdir()
        for name in names:
            (tmp_path / owner / name).write_text(f"-- {name}")
        (tmp_path / owner / "grants.sql").write_text(f"GRANT {owner} TO {{app_role}};")
    folders = [tmp_path / "log", tmp_path / "svc"]
    assert [n for n, _ in migration_files(folders)] == ["0001_x.sql", "0005_z.sql", "0009_y.sql"]
    assert grants_sql('a"b', folders) == 'GRANT log TO "a""b";\nGRANT svc TO "a""b";'
