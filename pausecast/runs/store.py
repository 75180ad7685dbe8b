"""A sweep's results folder: one Parquet file per chunk of runs, and a manifest.

    results/<name>/manifest.json
    results/<name>/chunks/part-000000.parquet ...

Every file is written to a temporary name beside its final one, flushed to disk and renamed over it
(os.replace is atomic), so a killed sweep leaves whole chunk files or none, never a torn one. A chunk
file that exists is done: that is all --resume needs to know.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..models.errors import ScenarioError

MANIFEST = "manifest.json"
CHUNKS = "chunks"
CSV_NAME = "results.csv"
_CHUNK = re.compile(r"part-(\d{6})\.parquet")
_TEMP_MARK = ".tmp-"


class ResultsStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.chunks = self.root / CHUNKS

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def chunk_path(self, index: int) -> Path:
        return self.chunks / f"part-{index:06d}.parquet"

    def prepare(self) -> None:
        """Creates the folders and removes what a killed writer left half-written."""
        self.chunks.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self.chunks):
            for leftover in folder.glob(f"*{_TEMP_MARK}*"):
                leftover.unlink()

    def done_chunks(self) -> set[int]:
        if not self.chunks.is_dir():
            return set()
        return {int(m.group(1)) for p in self.chunks.iterdir() if (m := _CHUNK.fullmatch(p.name))}

    def write_chunk(self, index: int, rows: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(rows, preserve_index=False)
        # dictionary-encoding the numbers (nearly all distinct) is slow and gains nothing; strings
        # (engine, failure, axis values) repeat and gain from it
        strings = [f.name for f in table.schema
                   if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        self._atomic(self.chunk_path(index), lambda fh: pq.write_table(table, fh, use_dictionary=strings))

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ScenarioError("manifest", str(self.manifest_path), f"cannot be read ({exc})") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
        self._atomic(self.manifest_path, lambda fh: fh.write(text.encode()))

    def _atomic(self, final: Path, write) -> None:
        temp = final.with_name(f"{final.name}{_TEMP_MARK}{os.getpid()}")
        with open(temp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, final)


def load_results(root: Path) -> pd.DataFrame:
    """Every row of a results folder, in run order."""
    store = ResultsStore(root)
    done = sorted(store.done_chunks())
    if not done:
        raise ScenarioError("results", str(root), "holds no result chunks (not a sweep's results folder?)")
    frames = [pq.read_table(store.chunk_path(i)).to_pandas() for i in done]
    return pd.concat(frames, ignore_index=True)


def export_csv(root: Path) -> Path:
    path = Path(root) / CSV_NAME
    rows = load_results(root)
    temp = path.with_name(f"{path.name}{_TEMP_MARK}{os.getpid()}")
    rows.to_csv(temp, index=False)
    os.replace(temp, path)
    return path
