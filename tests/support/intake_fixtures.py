"""Intake's sample data: fixtures copied into tests/fixtures/intake; the corpus beside the repo."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "intake"
# The whole public MIME corpus (6.5 MB) is not copied; CI has shared/ beside the checkout.
CORPUS = REPO.parent / "shared" / "data" / "emails"


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"email corpus not found at {CORPUS} (shared/data beside the checkout)")
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".eml", ".txt", "")
                  and not p.name.startswith(("LICENSE", ".")))


def fixture(*parts: str) -> Path:
    return FIXTURES.joinpath(*parts)


def load_jsonish(path: Path) -> Any:
    """Documentation samples with `//` comments and trailing commas, read as JSON."""
    text = re.sub(r'(?m)(^|[^:"])//[^\n]*', r"\1", path.read_text("utf-8"))
    return json.loads(re.sub(r",(\s*[}\]])", r"\1", text))
