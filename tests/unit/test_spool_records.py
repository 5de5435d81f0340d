"""The request path's spool records (a JSON header and float blocks) compact to exactly the
table the Arrow path builds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from loopml.predictions import _encode, _Entry, _record_ids, _segment_tables, build_table


def _entry(i: int, rows: int, rng: np.random.Generator) -> _Entry:
    size = rng.normal(size=rows)
    size[rng.random(rows) < 0.3] = np.nan
    color = np.array(rng.choice(["red", "blue"], rows), dtype=object)
    color[rng.random(rows) < 0.3] = np.nan  # a missing category, as validation holds it
    return _Entry(
        "pets",
        2,
        1_700_000_000_000_000 + i * 86_400_000_000 // 3,  # some entries on another day
        {"size": size, "color": color, "n": rng.integers(0, 5, rows)},
        np.array(rng.choice(["yes", "no"], rows), dtype=object),
        rng.random(rows),
        [f"{i:04d}{j:028d}" for j in range(rows)],
        float(i) / 3,
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=4), min_size=1, max_size=6))
def test_raw_records_compact_to_the_arrow_table(shape: list[list[int]]) -> None:
    rng = np.random.default_rng(len(shape))
    records, entries = [], []
    k = 0
    for group in shape:  # one record per tick, each of several requests
        batch = []
        for rows in group:
            batch.append(_entry(k, rows, rng))
            k += 1
        records.append(_encode(batch))
        entries.extend(batch)
    (table,) = _segment_tables(records)
    expected = build_table(entries)
    assert table.schema.equals(expected.schema, check_metadata=True)
    assert table.equals(expected)
    assert [i for r in records for i in _record_ids(r)] == table["prediction_id"].to_pylist()


def test_a_frame_entry_is_still_written_as_arrow() -> None:
    import pandas as pd

    e = _Entry("m", 1, 0, pd.DataFrame({"a": [1.0]}), np.array([1]), np.array([0.5]), ["x" * 32], 1)
    payload = _encode([e])
    assert payload.startswith(b"\xff\xff\xff\xff")  # an Arrow IPC stream
    (table,) = _segment_tables([payload])
    assert table.equals(build_table([e]))
    assert isinstance(table, pa.Table)
