"""A multi-class audit in the terminal: each class one-vs-rest (tpr, fpr, auroc with their
intervals) and the confusion matrix of all records (docs/multiclass.md). Every class name is a
user string: markup-escaped here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fairaudit._util.formatting import DASH

_CLASS_METRICS = ("tpr", "fpr", "auroc")
#: Classes past this many: the matrix is left to report.html.
_MAX_MATRIX = 8


def _metric_text(analysis: Mapping[str, Any], metric: str) -> str:
    overall = analysis["overall"]
    if metric not in overall["metrics"]:
        return DASH
    return escape(overall["cells"][overall["metrics"].index(metric)].text)


def print_multiclass(console: Console, multiclass: Mapping[str, Any]) -> None:
    """Per class its one-vs-rest tpr, fpr and auroc; then the confusion matrix of all records."""
    console.print()
    table = Table(
        title="[bold]Classes[/] (one-vs-rest; predicted class: the argmax)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("class", overflow="fold")
    table.add_column("n", justify="right")
    for m in _CLASS_METRICS:
        table.add_column(f"{m} [CI]", overflow="fold")
    for c in multiclass["per_class"]:
        table.add_row(
            escape(c["name"]), escape(c["n_positive"]), *(_metric_text(c, m) for m in _CLASS_METRICS)
        )
    console.print(table)
    overall = multiclass.get("overall")
    if not overall or multiclass["n_classes"] > _MAX_MATRIX:
        console.print("[dim]Confusion matrices: see report.html.[/]")
        return
    matrix = Table(
        title="[bold]Confusion matrix[/] (rows: true class; columns: predicted; per group in report.html)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    matrix.add_column("true \\ predicted", overflow="fold")
    for name in multiclass["classes"]:
        matrix.add_column(escape(name), justify="right", overflow="fold")
    for row in overall["rows"]:
        matrix.add_row(
            escape(row["name"]),
            *(
                f"[bold]{escape(x['count'])}[/]" if x["diagonal"] else escape(x["count"])
                for x in row["cells"]
            ),
        )
    console.print(matrix)
