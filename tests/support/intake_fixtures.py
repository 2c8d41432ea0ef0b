"""Intake's sample data, all copied into tests/fixtures/intake (CREDITS.md there)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "intake"
# The public MIME corpus (579 messages, 6.5 MB, each source with its licence), so the corpus
# test and the fuzzer's seeds are the same in every clone.
CORPUS = FIXTURES / "corpus"
# The reply parsers' own fixtures, where the corpus keeps them (their projects' folders).
REPLY_FIXTURES = {
    "talon": CORPUS / "talon" / "tests" / "fixtures",
    "github-reply-parser": CORPUS / "github-reply-parser" / "test" / "emails",
    "zapier-reply-parser": CORPUS / "zapier-reply-parser" / "test" / "emails",
}


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".eml", ".txt", "")
                  and not p.name.startswith(("LICENSE", ".")))


def fixture(*parts: str) -> Path:
    return FIXTURES.joinpath(*parts)


def reply_fixture(parser: str, *parts: str) -> Path:
    """A fixture of one of the reply parsers (`talon`, `github-reply-parser`, …)."""
    return REPLY_FIXTURES[parser].joinpath(*parts)


def load_jsonish(path: Path) -> Any:
    """Documentation samples with `//` comments and trailing commas, read as JSON."""
    text = re.sub(r'(?m)(^|[^:"])//[^\n]*', r"\1", path.read_text("utf-8"))
    return json.loads(re.sub(r",(\s*[}\]])", r"\1", text))
