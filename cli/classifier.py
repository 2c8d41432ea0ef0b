"""`switchboard classifier …`: the router's intent classifier.

- `train CSV --out M [--holdout 0.2] [--skills MAP | --skill-column COL]`: fit word + character
  n-gram TF-IDF and logistic regression; report on the held-out part; write the model file
  (`ROUTER_MODEL_PATH=M`). Labels route to the skills the mapping names (else the taxonomy's
  skill for a taxonomy intent, else the fallback skill).
- `evaluate MODEL CSV`: accuracy, macro-F1, triage share and the worst intents of a model
  (`default` = the shipped model, `rules` = the taxonomy's keyword rules) on labelled data.
- `build-default`: rebuild the shipped model from the openly licensed data in `data/intents/`.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click


@click.group()
def classifier() -> None:
    """The router's intent classifier."""


@classifier.command("train")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("intent-model.npz"), show_default=True, help="model file to write")
@click.option("--holdout", "--test-size", "holdout", default=0.2, show_default=True,
              type=click.FloatRange(0, 0.9),
              help="held-out share for the report; 0 fits on everything")
@click.option("--skills", "skills_file", type=click.Path(exists=True, dir_okay=False,
                                                          path_type=Path),
              default=None, help="label → skill mapping: JSON object or CSV (label,skill)")
@click.option("--skill-column", default=None, help="a CSV column with each row's skill")
@click.option("--text-column", default=None, help="default: text or utterance")
@click.option("--label-column", default=None, help="default: intent, label or category")
@click.option("--taxonomy", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="maps taxonomy intents to skills (default: the packaged one)")
@click.option("--seed", default=0, show_default=True)
@click.option("-C", "c", default=10.0, show_default=True, help="inverse regularisation")
def train(data: Path, out: Path, holdout: float, skills_file: Path | None,
          skill_column: str | None, text_column: str | None, label_column: str | None,
          taxonomy: Path | None, seed: int, c: float) -> None:
    """Train on DATA (CSV with a header: a text column and a label column)."""
    from services.router import model
    from services.router.policy import load_taxonomy

    tax = load_taxonomy(taxonomy)
    try:
        examples = model.read_examples(data, text_column, label_column, skill_column)
        skills = model.read_skill_map(skills_file) if skills_file else None
    except ValueError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    arrays, report = model.train(examples, tax, seed, holdout, skills, c)
    model.save(arrays, out)
    meta = json.loads(arrays["meta"].tobytes())
    click.echo(f"trained on {report.train_rows} rows, held out {report.test_rows}, "
               f"{report.labels} intents (temperature {meta['temperature']})")
    if report.test_rows:
        click.echo(f"held-out accuracy {report.accuracy:.4f}, macro-F1 {report.macro_f1:.4f}")
    by_skill = Counter(meta["skills"].values())
    click.echo("skills: " + ", ".join(f"{s} {n}" for s, n in by_skill.most_common()))
    unmapped = sorted(k for k, v in meta["skills"].items()
                      if v == tax.fallback_skill and k not in tax.by_name
                      and k != model.OUT_OF_SCOPE)
    if unmapped:
        click.echo(f"{len(unmapped)} label(s) with no skill go to the fallback skill "
                   f"{tax.fallback_skill!r} (give --skills or --skill-column): "
                   f"{', '.join(unmapped[:10])}{' …' if len(unmapped) > 10 else ''}")
    click.echo(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


def load_classifier(name: str, taxonomy: Any) -> Any:
    from services.router.classify import RulesClassifier
    from services.router.model import StatisticalClassifier

    if name == "rules":
        return RulesClassifier(taxonomy)
    if name != "default" and not Path(name).is_file():
        raise click.BadParameter(f"{name}: no such model file (or `default`, `rules`)")
    return StatisticalClassifier.load(name, taxonomy)


def read_label_map(spec: str) -> dict[str, str | None]:
    """`FILE` (JSON object label → intent or null) or `FILE:KEY` (an object inside it)."""
    path, _, key = spec.partition(":") if not Path(spec).is_file() else (spec, "", "")
    data = json.loads(Path(path).read_text("utf-8"))
    if key:
        data = data[key]
    return {str(k): (v if isinstance(v, str) else None) for k, v in data.items()
            if not str(k).startswith("_")}


@classifier.command("evaluate")
@click.argument("model_name", metavar="MODEL")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--label-map", default=None,
              help="map the CSV's labels to the model's intents: FILE or FILE:KEY, e.g. "
                   "data/intents/label-maps.json:banking77")
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@click.option("--policy", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="routing policy for the triage threshold")
@click.option("--taxonomy", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None)
@click.option("--worst", default=8, show_default=True, help="how many worst intents to list")
def evaluate_command(model_name: str, data: Path, label_map: str | None,
                     text_column: str | None, label_column: str | None, policy: Path | None,
                     taxonomy: Path | None, worst: int) -> None:
    """Accuracy, macro-F1, triage share and worst intents of MODEL on labelled DATA.

    MODEL is a model file, `default` (the shipped model) or `rules` (the taxonomy's keywords).
    Rows labelled `out_of_scope` (or `oos`) are right when the model sends them to triage."""
    from services.router import model
    from services.router.policy import load_policy, load_taxonomy

    tax, pol = load_taxonomy(taxonomy), load_policy(policy)
    clf = load_classifier(model_name, tax)
    examples = model.read_examples(data, text_column, label_column)
    if label_map:
        mapping = read_label_map(label_map)
        examples = [model.Example(e.text, m) for e in examples
                    if (m := mapping.get(e.label, e.label)) is not None]
    result = score(clf, examples, pol.confidence_threshold)
    click.echo(f"{model_name}: {result['rows']} rows, {result['labels']} labels; triage below "
               f"confidence {pol.confidence_threshold}")
    click.echo(f"  intent accuracy      {result['accuracy']:.4f}")
    click.echo(f"  macro-F1             {result['macro_f1']:.4f}")
    click.echo(f"  routed right         {result['routed_right']:.4f}  (right intent, not triaged)")
    click.echo(f"  to triage (in scope) {result['triage']:.4f}")
    if result["oos_rows"]:
        click.echo(f"  out of scope         {result['oos_rows']} rows, "
                   f"{result['oos_rejected']:.4f} sent to triage")
    click.echo("  worst intents (F1, rows, most often taken for):")
    for label, f1, support, confused in result["worst"][:worst]:
        click.echo(f"    {label:<32} {f1:.3f} {support:>5}  {confused}")
    click.echo(f"accuracy {result['accuracy']:.4f} macro_f1 {result['macro_f1']:.4f} "
               f"triage {result['triage']:.4f}")


def score(clf: Any, examples: list[Any], threshold: float) -> dict[str, Any]:
    """The figures `evaluate` prints (also used by the benchmark)."""
    from sklearn.metrics import f1_score

    from services.router.model import OUT_OF_SCOPE

    oos_labels = {OUT_OF_SCOPE, "oos"}
    truth, predicted, triaged = [], [], []
    for e in examples:
        guess = clf.predict(e.text)
        truth.append(OUT_OF_SCOPE if e.label in oos_labels else e.label)
        predicted.append(OUT_OF_SCOPE if guess.intent == "unknown" else guess.intent)
        triaged.append(guess.confidence < threshold or guess.intent == "unknown")
    in_scope = [i for i, t in enumerate(truth) if t != OUT_OF_SCOPE]
    oos = [i for i, t in enumerate(truth) if t == OUT_OF_SCOPE]
    right = [truth[i] == predicted[i] for i in in_scope]
    labels = sorted({truth[i] for i in in_scope})
    f1s = f1_score([truth[i] for i in in_scope], [predicted[i] for i in in_scope],
                   labels=labels, average=None, zero_division=0)
    confusion: dict[str, Counter[str]] = {}
    for i in in_scope:
        if truth[i] != predicted[i]:
            confusion.setdefault(truth[i], Counter())[predicted[i]] += 1
    support = Counter(truth[i] for i in in_scope)
    worst = sorted(((lab, float(f), support[lab],
                     ", ".join(f"{k} {v}" for k, v in confusion.get(lab, Counter())
                               .most_common(2)) or "-")
                    for lab, f in zip(labels, f1s, strict=True)), key=lambda r: r[1])
    n = max(1, len(in_scope))
    return {
        "rows": len(examples), "labels": len(labels),
        "accuracy": sum(right) / n, "macro_f1": float(f1s.mean()) if len(labels) else 0.0,
        "routed_right": sum(1 for i in in_scope if truth[i] == predicted[i] and not triaged[i])
        / n,
        "triage": sum(triaged[i] for i in in_scope) / n,
        "oos_rows": len(oos), "oos_rejected": sum(triaged[i] for i in oos) / max(1, len(oos)),
        "worst": worst,
    }


@classifier.command("build-default")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="default: services/router/models/default-intent-model.npz")
@click.option("--seed", default=0, show_default=True)
def build_default_command(out: Path | None, seed: int) -> None:
    """Rebuild the shipped model from data/intents/ (Bitext CDLA-Sharing-1.0, BANKING77
    CC-BY-4.0, CLINC150 CC-BY-3.0, Switchboard's own German/Spanish examples)."""
    from services.router import training

    meta = training.build_default(out or training.PACKAGED_MODEL, training.DATA_DIR, seed)
    click.echo(f"wrote {out or training.PACKAGED_MODEL}: {len(meta['labels'])} labels "  # type: ignore[arg-type]
               f"from {meta['trained_on']['rows']} rows, temperature {meta['temperature']}")  # type: ignore[index]
