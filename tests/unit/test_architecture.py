"""The house's import rules hold for the source tree, and the checker catches a break of each.

Rules and the list of pure modules: tests/support/architecture.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.architecture import PURE, check, check_source, missing_pure_modules

REPO = Path(__file__).resolve().parents[2]


def test_every_import_runs_downward_and_the_cores_stay_pure() -> None:
    assert check(REPO, ("cli", "shared", "services")) == []


def test_the_pure_modules_listed_exist() -> None:
    assert missing_pure_modules(REPO) == []
    assert set(PURE) == {"intake", "router", "sla", "escalation"}


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("services.sla.app", "from services.router import routing\n",
     "service 'sla' imports another service: services.router"),
    ("services.sla.app", "from services import router\n",
     "service 'sla' imports another service: services.router"),
    ("services.intake.app", "def f():\n    import services.escalation.sinks\n",
     "service 'intake' imports another service: services.escalation.sinks"),
    ("shared.caselog.store", "from services.sla.core import x\n",
     "shared imports a service: services.sla.core"),
    ("shared.redaction", "import services\n", "shared imports a service: services"),
    ("services.router.routing", "import asyncpg\n", "pure core imports I/O: asyncpg"),
    ("services.sla.core", "from aiokafka import AIOKafkaProducer\n",
     "pure core imports I/O: aiokafka"),
    ("services.escalation.core", "import smtplib\n", "pure core imports I/O: smtplib"),
    ("services.intake.core", "from faststream.kafka import KafkaBroker\n",
     "pure core imports I/O: faststream.kafka"),
    ("services.router.decide", "from services.router import store\n",
     "pure core imports its service's I/O module: services.router.store"),
    ("services.router.floor", "from shared.caselog.store import read_case\n",
     "pure core imports shared I/O: shared.caselog.store"),
    ("services.sla.core", "from datetime import datetime\nnow = datetime.now()\n",
     "pure core reads the clock or environment: datetime.now()"),
    ("services.escalation.core", "import datetime\nt = datetime.datetime.now(tz=None)\n",
     "pure core reads the clock or environment: datetime.datetime.now()"),
    ("services.router.routing", "import time\nstarted = time.monotonic()\n",
     "pure core reads the clock or environment: time.monotonic"),
    ("services.router.routing", "from time import time\n",
     "pure core reads the clock or environment: from time import time"),
    ("services.intake.core", "import os\nregion = os.environ['REGION']\n",
     "pure core reads the clock or environment: os.environ"),
    ("services.intake.identity", "import os\nregion = os.getenv('REGION')\n",
     "pure core reads the clock or environment: os.getenv"),
    ("services.intake.app", "Q = 'SELECT type FROM case_log WHERE case_id = $1'\n",
     "SQL on case_log outside shared/caselog"),
    ("cli.caselog", "Q = ('SELECT count(*)'\n     ' FROM  case_log')\n",
     "SQL on case_log outside shared/caselog"),
])
def test_a_deliberate_violation_is_caught(module: str, source: str, expected: str) -> None:
    found = check_source(module, source)
    assert any(v.endswith(expected) for v in found), found


@pytest.mark.parametrize(("module", "source"), [
    # A core is handed `now`; it may do arithmetic on datetimes and parse them.
    ("services.sla.core", ("from datetime import datetime, timedelta\n"
                           "def due(now: datetime) -> datetime:\n    return now + timedelta(1)\n")),
    ("services.sla.core", "from services.sla.policy import Policy\n"),  # configuration
    ("services.router.core", "from services.router.model import StatisticalClassifier\n"),
    ("services.sla.app", "import asyncpg\nimport time\nt = time.monotonic()\n"),  # the I/O shell
    ("shared.caselog.store", "import asyncpg\nQ = 'SELECT 1 FROM case_log'\n"),
    ("services.intake.app", "'''Reads the case_log table through shared/caselog.'''\n"),  # prose
])
def test_what_the_rules_allow_is_not_reported(module: str, source: str) -> None:
    assert check_source(module, source) == []


def test_a_violation_written_into_a_tree_is_found(tmp_path: Path) -> None:
    """The tree walk (not only one module's text) finds a core that reads the clock and a
    service that reaches into another, with file and line."""
    for package in ("services", "services/sla", "services/router", "shared"):
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "services/sla/core.py").write_text(
        "from datetime import datetime\n\ndef now():\n    return datetime.now()\n")
    (tmp_path / "services/router/app.py").write_text("from services.sla import core\n")
    (tmp_path / "shared/clock.py").write_text("from . import clock\n")  # relative, in shared
    found = check(tmp_path)
    assert found == [
        "services.router.app:1: service 'router' imports another service: services.sla",
        "services.sla.core:4: pure core reads the clock or environment: datetime.now()",
    ]
