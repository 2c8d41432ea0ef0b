"""Benchmark: how exactly intake finds the customer's new text in a reply, and how fast.

Corpora (tests/fixtures/intake/, licences in CREDITS.md): Crisp's and Zapier's reply fixtures with
the expected texts of their tests, talon's standard replies (.eml), talon's plain-text quotation
cases (an evaluation set the rules were not written against: see CREDITS.md) and our own
multilingual cases. "Exact" compares after trimming line-end white space and runs of blank lines.
`--before FILE` also scores another version of reply_text.py (e.g. `git show
main:services/intake/reply_text.py > /tmp/old.py`). Records in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from benchmarks.router_decisions import record
from services.intake import reply_text
from services.intake.email_parsing import parse_email
from shared.settings import REPO_ROOT

ROOT = REPO_ROOT / "tests" / "fixtures" / "intake"


def norm(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in
                                               text.strip().splitlines()))


def corpora() -> dict[str, list[tuple[str, str]]]:
    """corpus → [(input text, expected visible text)]."""
    out: dict[str, list[tuple[str, str]]] = {}
    for case in json.loads((ROOT / "replies" / "cases.json").read_text("utf-8")):
        text = case.get("text") or (ROOT / case["file"]).read_text("utf-8")
        name = {"switchboard": "Switchboard's own (20 languages, sign-offs, forwards)"}.get(
            case["source"], f"{case['source']} fixtures")
        out.setdefault(name, []).append((text, case["visible"]))
    talon = json.loads((ROOT / "replies" / "talon-quotations.json").read_text("utf-8"))
    out["talon quotation cases (evaluation set)"] = [(c["text"], c["visible"]) for c in talon]
    return out


def score(split: Callable[[str], object]) -> dict[str, tuple[int, int]]:
    result = {}
    for name, cases in corpora().items():
        right = sum(norm(split(t).visible) == norm(v) for t, v in cases)  # type: ignore[attr-defined]
        result[name] = (right, len(cases))
    return result


def talon_eml(split_module: ModuleType) -> tuple[int, int]:
    """talon's standard replies as whole emails (this version's parser around the rules)."""
    talon = ROOT / "corpus" / "talon" / "tests" / "fixtures"
    files = sorted((talon / "standard_replies").glob("*.eml"))
    original = reply_text.split_reply
    import services.intake.email_parsing as parsing
    parsing.split_reply = split_module.split_reply  # type: ignore[attr-defined]
    try:
        right = sum(parse_email(p.read_bytes()).visible_text == "Hello" for p in files)
    finally:
        parsing.split_reply = original
    return right, len(files)


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("reply_text_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["reply_text_before"] = module
    spec.loader.exec_module(module)
    return module


def timing(split: Callable[[str], object], small_only: bool = False
           ) -> list[tuple[str, float]]:
    bodies = [("20 kB of `Date` + spaces", "Date" + " " * 20_000),
              ("0.7 MB on one line (`From` + spaces)", "From" + " " * 700_000),
              ("0.7 MB, 350,000 short lines", "a\n" * 350_000)]
    if small_only:  # the rules before were quadratic: 0.7 MB would take hours
        bodies = bodies[:1]
    out = []
    for label, body in bodies:
        began = time.perf_counter()
        split(body)
        out.append((label, time.perf_counter() - began))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, help="another reply_text.py to compare")
    parser.add_argument("--before-label", default="before")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    now = score(reply_text.split_reply)
    now["talon standard replies (.eml)"] = talon_eml(reply_text)
    before = None
    if args.before:
        old = load(args.before)
        before = score(old.split_reply)
        before["talon standard replies (.eml)"] = talon_eml(old)
    rows = []
    public = [0, 0, 0]
    for name, (right, n) in now.items():
        row = [name, str(n), f"{right / n:.1%}"]
        if before is not None:
            row.append(f"{before[name][0] / n:.1%}")
        rows.append(tuple(row))
        if not name.startswith("Switchboard"):
            public[0] += right
            public[1] += n
            public[2] += before[name][0] if before else 0
    total = ["all public cases", str(public[1]), f"{public[0] / public[1]:.1%}"]
    if before is not None:
        total.append(f"{public[2] / public[1]:.1%}")
    rows.append(tuple(total))
    for row in rows:
        print("  " + " | ".join(row))
    times = timing(reply_text.split_reply)
    old_times = timing(load(args.before).split_reply, True) if args.before else None
    for i, (label, seconds) in enumerate(times):
        extra = (f" (before {old_times[i][1] * 1000:.0f} ms)"
                 if old_times and i < len(old_times) else "")
        print(f"  {label}: {seconds * 1000:.0f} ms{extra}")
    if not args.no_record:
        header = "| corpus | cases | exact, this version |"
        if before is not None:
            header += f" exact, {args.before_label} |"
        timing_text = "; ".join(
            f"{label}: {seconds * 1000:.0f} ms"
            + (f" (before {old_times[i][1] * 1000:,.0f} ms)"
               if old_times and i < len(old_times) else "")
            for i, (label, seconds) in enumerate(times))
        record("reply-text", "Reply text (`benchmarks/reply_text.py`)",
               "Exact visible text (after trimming line-end white space and blank-line runs). "
               "The talon quotation cases were added after the rules were written for the other "
               "sets: 31 of 40 were right then, before any rule was added for them. Time: "
               + timing_text + ".", header, rows)


if __name__ == "__main__":
    main()
