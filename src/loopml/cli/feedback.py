"""``loopml feedback FILE``: store outcomes of served predictions in bulk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loopml.cli.common import JsonOpt, WorkspaceOpt, open_ws, out, print_json
from loopml.errors import InvalidInputError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def read_items(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV, JSON Lines or Parquet file as feedback items (row 1 is the first
    data row); InvalidInputError naming the file, row or column that is wrong."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInputError(
            f"{path} is not a CSV, JSON Lines or Parquet file",
            where={"file": str(path)},
            hint="Name it *.csv, *.jsonl or *.parquet, with columns prediction_id and label "
            "and/or reward",
        )
    if not path.is_file():
        raise InvalidInputError(
            f"{path} does not exist",
            where={"file": str(path)},
            hint="Check the path",
        )
    if kind == "jsonl":
        import orjson

        items: list[dict[str, Any]] = []
        for line_no, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"{path} line {line_no} is not JSON: {exc}",
                    where={"file": str(path), "row": line_no},
                    hint="Write one JSON object per line",
                ) from None
        return items
    import pandas as pd

    if kind == "csv":
        try:
            frame = pd.read_csv(path, dtype={"prediction_id": str}, keep_default_na=True)
        except (ValueError, pd.errors.ParserError) as exc:
            raise InvalidInputError(
                f"{path} is not a readable CSV file: {exc}",
                where={"file": str(path)},
                hint="Write a header row: prediction_id,label (or reward)",
            ) from None
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidInputError(
                f"{path} is not a readable Parquet file: {exc}",
                where={"file": str(path)},
                hint="Write it with pandas.DataFrame.to_parquet",
            ) from None
    if "prediction_id" not in frame.columns:
        raise InvalidInputError(
            f"{path} has no prediction_id column (columns: {', '.join(map(str, frame.columns))})",
            where={"file": str(path), "field": "prediction_id"},
            hint="Add a prediction_id column with the ids the server returned",
        )
    if "label" not in frame.columns and "reward" not in frame.columns:
        raise InvalidInputError(
            f"{path} has neither a label nor a reward column",
            where={"file": str(path), "field": "label"},
            hint="Add a label column (the true outcome) or a reward column (a number)",
        )
    rows = [
        {str(k): v for k, v in row.items()}
        for row in frame.astype(object).to_dict(orient="records")
    ]
    if kind == "csv":  # a text column (one cell is not a number): numbers where they parse
        for row in rows:
            row["reward"] = _number(row.get("reward"))
            if "reward" not in frame.columns:
                del row["reward"]
    return rows


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def feedback(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV, JSON Lines or Parquet: prediction_id, label|reward.")
    ],
    allow_unknown: Annotated[
        bool,
        typer.Option(
            "--allow-unknown",
            help="Store feedback for ids not found in the prediction log too.",
        ),
    ] = False,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store outcomes (labels, rewards) of served predictions; repeats are skipped."""
    from loopml.feedback import record_feedback

    items = read_items(file)
    with open_ws(ctx, workspace) as ws:
        result = record_feedback(
            ws,
            items,
            source=f"file:{file.name}",
            check_known=not allow_unknown,
            row_name="row",
            first_row=1,
        )
    if as_json:
        print_json({**result.to_dict(), "file": str(file)})
        return
    out.print(
        f"{result.received} feedback rows: {result.inserted} stored, "
        f"{result.duplicates} already there"
    )


def register(app: typer.Typer) -> None:
    app.command("feedback")(feedback)
