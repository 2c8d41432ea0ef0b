"""`switchboard contracts export DIR` and `switchboard contracts check DIR`.

The JSON Schemas and the AsyncAPI document in DIR are generated from `shared/contracts`; `check`
fails when the committed files differ from what the code generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from shared.contracts.export import Plan, plan, render


@click.group()
def contracts() -> None:
    """Event contracts as JSON Schema and AsyncAPI documents."""


def _report(result: Plan) -> None:
    for label, paths in (("added", result.added), ("changed", result.changed),
                         ("removed", result.removed)):
        for path in paths:
            click.echo(f"{label:>8}  {path}")


@contracts.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export(directory: Path) -> None:
    """Write the documents into DIRECTORY (e.g. docs) and print what changed."""
    files = render()
    result = plan(directory, files)
    for path in [*result.added, *result.changed]:
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(files[path], encoding="utf-8")
    for path in result.removed:
        (directory / path).unlink()
        parent = (directory / path).parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    _report(result)
    changed = len(result.added) + len(result.changed) + len(result.removed)
    click.echo(f"{changed} file(s) changed, {len(result.unchanged)} up to date in {directory}")


@contracts.command("check")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def check(directory: Path) -> None:
    """Exit 1 if the documents in DIRECTORY differ from what the code generates."""
    result = plan(directory)
    if result.stale:
        _report(result)
        click.echo(f"stale contract documents in {directory}: run `make schemas` "
                   f"(switchboard contracts export {directory})", err=True)
        sys.exit(1)
    click.echo(f"ok: {len(result.unchanged)} contract document(s) in {directory} are up to date")
