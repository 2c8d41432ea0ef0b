"""`switchboard classifier train data.csv`: the router's statistical intent classifier.

Trains on a seeded, stratified split, prints accuracy and macro-F1 on the held-out part and writes
a small JSON model file the router loads with `ROUTER_MODEL_PATH`.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def classifier() -> None:
    """The router's intent classifier."""


@classifier.command("train")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("intent-model.json"), show_default=True, help="model file to write")
@click.option("--text-column", default=None, help="default: text or utterance")
@click.option("--label-column", default=None, help="default: intent, label or category")
@click.option("--taxonomy", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="maps intents to skills (default: the packaged taxonomy)")
@click.option("--seed", default=0, show_default=True)
@click.option("--test-size", default=0.2, show_default=True, help="held-out share")
@click.option("--max-features", default=4000, show_default=True)
def train(data: Path, out: Path, text_column: str | None, label_column: str | None,
          taxonomy: Path | None, seed: int, test_size: float, max_features: int) -> None:
    """Train on DATA (CSV with a header: a text column and a label column)."""
    from services.router import model
    from services.router.policy import load_taxonomy

    examples = model.read_examples(data, text_column, label_column)
    document, report = model.train(examples, load_taxonomy(taxonomy), seed, test_size,
                                   max_features)
    model.save(document, out)
    unmapped = sorted(k for k, v in document["skills"].items()
                      if k not in load_taxonomy(taxonomy).by_name)
    click.echo(f"trained on {report.train_rows} rows, held out {report.test_rows}, "
               f"{report.labels} intents")
    click.echo(f"held-out accuracy {report.accuracy:.4f}, macro-F1 {report.macro_f1:.4f}")
    if unmapped:
        click.echo(f"{len(unmapped)} intent(s) not in the taxonomy go to the fallback skill: "
                   f"{', '.join(unmapped[:10])}{' …' if len(unmapped) > 10 else ''}")
    click.echo(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
