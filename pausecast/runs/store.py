"""The one results store: every table pausecast writes lies in a folder with a manifest.json.

    <folder>/manifest.json               what the folder holds and where the code came from (below)
    <folder>/<table>.parquet, .csv       a table written whole: one row per record
    <folder>/chunks/part-000000.parquet  a table written in chunks of runs (a sweep's "results")
    <folder>/<document>.json             a record or summary, NaN and infinity as null
    <folder>/<name>.md, .png             what people read: a report, a figure

The folders: a sweep (results/<name>/), an evacuation (results/<fleet>/), a real run
(results/runs/<time>-<scenario id>/) and a validation report (results/validation/<name>-<time>/).
Every manifest has the same keys, and each kind adds its own:

    format, kind, name, created     the layout's version; sweep | evacuation | run | validation
    versions, git                   the packages and the commit the code ran from
    scenario_ids                    the distinct scenarios of its tables and records (a sweep's
                                    "points" counts them instead: one per point, too many to list)
    tables                          name -> files, rows, columns
    files                           every file written, manifest aside

Every file is written to a temporary name beside its final one, flushed to disk and renamed over it
(os.replace is atomic), so a killed writer leaves whole files or none, never a torn one. A sweep's
chunks are renamed without waiting for the disk: the manifest, flushed after each, records every
chunk's SHA-256, so a chunk that a machine crash kept from the disk fails its check on --resume and
is computed again (waiting for the disk cost a fast sweep 5-10 % of its time, more on a busy disk).
A chunk file that exists and matches its checksum is done: that is all a sweep's --resume needs.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..models.errors import ScenarioError
from .json_text import json_text
from .provenance import git_state, versions

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
CHUNKS = "chunks"
# a sweep's table: its chunks, and the CSV export of them
SWEEP_TABLE = "results"
CSV_NAME = f"{SWEEP_TABLE}.csv"
TABLE_FORMATS = ("parquet", "csv")
_CHUNK = re.compile(r"part-(\d{6})\.parquet")
_TEMP_MARK = ".tmp-"
# each chunk's Parquet metadata names its sweep (runs/sweep.py sweep_key)
SWEEP_KEY = b"pausecast.sweep_key"

Rows = pd.DataFrame | Sequence[Mapping[str, Any]]
_NONE: Mapping[str, Any] = MappingProxyType({})


class Figure(Protocol):
    def savefig(self, fname: BinaryIO, **kwargs: Any) -> None: ...


def new_manifest(kind: str, name: str, tables: Mapping[str, dict[str, Any]], files: Sequence[str],
                 scenario_ids: Sequence[str] | None, **fields: Any) -> dict[str, Any]:
    """The keys every folder's manifest has, then what its kind adds."""
    return {"format": MANIFEST_FORMAT, "kind": kind, "name": name, "created": now_utc(), **fields,
            "versions": versions(), "git": git_state(),
            "scenario_ids": None if scenario_ids is None else list(scenario_ids),
            "tables": dict(tables), "files": list(files)}


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _chunk_options(table: pa.Table) -> dict[str, Any]:
    """The Parquet writer's options for a chunk. Where values repeat (an engine, a swept link speed, a
    constant cost) a dictionary pays; hashing a million distinct numbers costs more than writing
    them. The integers that do not repeat (run, point) are nearly sequential: delta encoding stores
    them in a few bits each. Pages of distinct floats do not compress: trying costs more than
    writing them (measured in benchmarks/bench_sweep.py)."""
    head = table.slice(0, _SAMPLE_ROWS)
    repeating = [name for name, column in zip(head.column_names, head.columns, strict=True)
                 if pc.count_distinct(column).as_py() <= _FEW_VALUES]
    deltas = {f.name: "DELTA_BINARY_PACKED" for f in table.schema
              if pa.types.is_integer(f.type) and f.name not in repeating}
    return {"use_dictionary": repeating, "column_encoding": deltas, "compression": "none"}


# a column whose first rows hold at most this many values is dictionary-encoded
_SAMPLE_ROWS = 4096
_FEW_VALUES = 256


class ResultsStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.chunks = self.root / CHUNKS

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    # ----------------------------------------------------------------------------- chunked tables

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

    def write_chunk(self, index: int, rows: pa.Table | pd.DataFrame, sweep_key: str) -> str:
        """Writes one chunk, marked with the sweep it belongs to; returns its SHA-256 (the manifest
        keeps it, so that a resume can tell a whole chunk from a damaged one)."""
        table = pa.Table.from_pandas(rows, preserve_index=False) if isinstance(rows, pd.DataFrame) else rows
        marked = {**(table.schema.metadata or {}), SWEEP_KEY: sweep_key.encode()}
        table = table.replace_schema_metadata(marked)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, **_chunk_options(table))
        data = buffer.getbuffer()
        self._atomic(self.chunk_path(index), lambda fh: fh.write(data), durable=False)
        return hashlib.sha256(data).hexdigest()

    def chunk_problem(self, index: int, sweep_key: str, rows: int, sha256: str | None) -> str:
        """Why chunk `index` cannot be kept ("" when it can): unreadable, not the `rows` expected, or
        not the bytes the manifest recorded (or none recorded: the writer died before saying). A chunk
        of another sweep raises: mixing two sweeps' rows would be silently wrong."""
        path = self.chunk_path(index)
        try:
            meta = pq.read_metadata(path)
        except (OSError, pa.ArrowException) as exc:
            return f"unreadable ({exc})"
        found = (meta.metadata or {}).get(SWEEP_KEY, b"").decode()
        if found != sweep_key:
            raise ScenarioError("--resume", str(path),
                                f"is a chunk of another sweep (sweep key {found or 'none'}, this sweep's "
                                f"{sweep_key}): remove it or choose another --results")
        if meta.num_rows != rows:
            return f"{meta.num_rows} rows where {rows} belong"
        if sha256 is None:
            return "not recorded in the manifest (written as the sweep stopped)"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return "" if digest == sha256 else "its bytes differ from those written"

    def chunked_table(self) -> dict[str, Any]:
        """The manifest's entry for the chunks written so far (rows from the files' footers)."""
        done = sorted(self.done_chunks())
        columns = pq.read_schema(self.chunk_path(done[0])).names if done else []
        return {"files": [f"{CHUNKS}/"], "rows": sum(pq.read_metadata(self.chunk_path(i)).num_rows
                                                     for i in done), "columns": columns}

    # ----------------------------------------------------------------------------- whole tables

    def write_table(self, name: str, rows: Rows, formats: Iterable[str] = TABLE_FORMATS) -> dict[str, Any]:
        """Writes the table in each format; returns its manifest entry."""
        frame = _frame(rows)
        writers: dict[str, Callable[[BinaryIO], None]] = {
            "parquet": lambda fh: frame.to_parquet(fh, index=False),
            "csv": lambda fh: fh.write(frame.to_csv(index=False).encode()),
        }
        files = []
        for fmt in formats:
            if fmt not in writers:
                raise ValueError(f"table format {fmt!r}: expected one of {sorted(writers)}")
            files.append(f"{name}.{fmt}")
            self._atomic(self.root / files[-1], writers[fmt])
        return {"files": files, "rows": len(frame), "columns": [str(c) for c in frame.columns]}

    def write_document(self, name: str, obj: Any, indent: int | None = 2) -> str:
        return self.write_text(f"{name}.json", json_text(obj, indent))

    def write_text(self, file_name: str, text: str) -> str:
        self._atomic(self.root / file_name, lambda fh: fh.write(text.encode()))
        return file_name

    def write_figure(self, file_name: str, fig: Figure, dpi: int) -> str:
        self._atomic(self.root / file_name, lambda fh: fig.savefig(fh, format="png", dpi=dpi))
        return file_name

    # ----------------------------------------------------------------------------- the manifest

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.exists():
            return None
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ScenarioError("manifest", str(self.manifest_path), f"cannot be read ({exc})") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.write_text(MANIFEST, json_text(manifest))

    def _atomic(self, final: Path, write: Callable[[BinaryIO], Any], durable: bool = True) -> None:
        temp = final.with_name(f"{final.name}{_TEMP_MARK}{os.getpid()}")
        try:
            with open(temp, "wb") as fh:
                write(fh)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            os.replace(temp, final)
        except BaseException:
            # a full disk, Ctrl-C or SIGTERM mid-write: the half-written file goes (a kill leaves it for
            # `prepare` to remove)
            temp.unlink(missing_ok=True)
            raise


def write_folder(root: Path, kind: str, name: str, *, tables: Mapping[str, Rows] = _NONE,
                 documents: Mapping[str, Any] = _NONE, compact: Collection[str] = (),
                 texts: Mapping[str, str] = _NONE, figures: Mapping[str, tuple[Figure, int]] = _NONE,
                 formats: Iterable[str] = TABLE_FORMATS, scenario_ids: Sequence[str] = (),
                 **fields: Any) -> dict[str, Any]:
    """Writes a folder whole: its tables in each format, its documents (`compact` ones on one line:
    they are large), texts and figures (name -> figure, dpi), then the manifest, which it returns.
    Its scenario ids are the given ones and those of the tables' scenario_id columns."""
    store = ResultsStore(root)
    store.root.mkdir(parents=True, exist_ok=True)
    formats = tuple(formats)
    frames = {table: _frame(rows) for table, rows in tables.items()}
    entries = {table: store.write_table(table, frame, formats) for table, frame in frames.items()}
    files = [f for entry in entries.values() for f in entry["files"]]
    files += [store.write_document(doc, obj, None if doc in compact else 2) for doc, obj in documents.items()]
    files += [store.write_text(file_name, text) for file_name, text in texts.items()]
    files += [store.write_figure(file_name, fig, dpi) for file_name, (fig, dpi) in figures.items()]
    ids = dict.fromkeys(scenario_ids)
    for frame in frames.values():
        if "scenario_id" in frame:
            ids.update(dict.fromkeys(frame["scenario_id"].astype(str)))
    written = new_manifest(kind, name, entries, files, list(ids), **fields)
    store.write_manifest(written)
    return written


def _frame(rows: Rows) -> pd.DataFrame:
    return rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))


def read_manifest(root: Path) -> dict[str, Any]:
    found = ResultsStore(root).read_manifest()
    if found is None:
        raise ScenarioError("results", str(root), f"has no {MANIFEST}")
    return found


def read_table(root: Path, name: str) -> pd.DataFrame:
    """A table of a folder by its name: from Parquet when there is one (it keeps the types), else
    from CSV (an empty cell reads as missing); a sweep's "results" from its chunks."""
    root = Path(root)
    if name == SWEEP_TABLE and (root / CHUNKS).is_dir():
        return load_results(root)
    if (root / f"{name}.parquet").is_file():
        return pd.read_parquet(root / f"{name}.parquet")
    if (root / f"{name}.csv").is_file():
        return pd.read_csv(root / f"{name}.csv", keep_default_na=False, na_values=[""])
    raise ScenarioError("results", str(root), f"holds no table {name!r}")


def read_document(root: Path, name: str) -> Any:
    return json.loads((Path(root) / f"{name}.json").read_text())


def load_results(root: Path) -> pd.DataFrame:
    """Every row of a sweep's results folder, in run order."""
    store = ResultsStore(root)
    done = sorted(store.done_chunks())
    if not done:
        raise ScenarioError("results", str(root), "holds no result chunks (not a sweep's results folder?)")
    frames = [pq.read_table(store.chunk_path(i)).to_pandas() for i in done]
    return pd.concat(frames, ignore_index=True)


def export_csv(root: Path) -> Path:
    """Writes a sweep's table as one CSV file too, and lists it in the manifest."""
    store = ResultsStore(root)
    store.write_text(CSV_NAME, load_results(root).to_csv(index=False))
    list_in_manifest(root, CSV_NAME, table=SWEEP_TABLE)
    return store.root / CSV_NAME


def list_in_manifest(root: Path, file_name: str, table: str | None = None) -> None:
    """Adds a file written into a folder after its manifest (a CSV export, the HTML report) to the
    manifest's files, and to `table`'s when it is one of that table's formats."""
    store = ResultsStore(root)
    found = store.read_manifest()
    # a folder an older version wrote may have no list of files: nothing to add to
    if found is None or "files" not in found or file_name in found["files"]:
        return
    found["files"].append(file_name)
    if table is not None:
        found["tables"][table]["files"].append(file_name)
    store.write_manifest(found)


def append_row(table: Path, row: Mapping[str, Any]) -> None:
    """Appends to a CSV table (an index such as results/runs.csv, one row per folder, which grows a row
    at a time and so has no manifest of its own), writing the header when the table is new; a table
    written by an older version keeps its own columns."""
    header = list(row)
    if table.exists() and table.stat().st_size > 0:
        with open(table, newline="") as fh:
            header = next(csv.reader(fh), header)
        mode = "a"
    else:
        mode = "w"
    with open(table, mode, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        if mode == "w":
            writer.writeheader()
        writer.writerow(row)
