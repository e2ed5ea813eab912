"""`ste report`: report.md, report.html and accuracy.png for one or several run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories (runs/NAME).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help=r"Output directory \[default: the run dir; ./ste-report for several]."
        ),
    ] = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Open report.html in the web browser afterwards.")
    ] = False,
) -> None:
    """Write a report (report.md, a self-contained report.html, and accuracy.png, funnel.png,
    cost.png) for run directories.

    How the numbers are computed: eval accuracy is the share of eval pairs judged correctly,
    with a 95% Wilson interval over items (with both orders, an item scores the mean of its
    orders). Items whose requests failed are errors, left out of the accuracy and counted
    beside it; above evaluation.max_error_rate (10%) of the items there is no accuracy.
    Position consistency is the share of items whose verdicts picked the same response
    in both orders; A share is the percentage of A among A/B verdicts (50 = no position bias).
    Paired tests compare two judges on the same items, two-sided: exact McNemar when every item
    score is 0/1, else a sign-flip permutation test (exact, or Monte Carlo with the draws
    named); the interval of the difference is a paired bootstrap. Each was computed once, with
    the run's seed, when the judge was evaluated.
    RewardBench's final score is the mean of its sections with their 95% bootstrap intervals.
    Costs: inference per stage, fine-tune jobs, and dedicated endpoints by uptime; they add up
    to the manifest's total. Runs whose eval pairs differ get a warning: their accuracies are
    measured on different items.
    """
    from ste_core.evaluation.report import write_report

    missing = [str(d) for d in run_dirs if not d.is_dir()]
    if missing:
        typer.echo(f"error: not a directory: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    files = write_report(run_dirs, out)
    for note in files.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {files.markdown}")
    typer.echo(f"wrote {files.html}")
    for chart in files.charts:
        typer.echo(f"wrote {chart}")
    if open_:
        import webbrowser

        if not webbrowser.open(Path(files.html).resolve().as_uri()):
            typer.echo("note: no web browser found here; open the HTML file above", err=True)
