"""File sinks: the Log Analytics workspace stand-in and the storage archive.

WorkspaceSink writes each record as a row of its Log Analytics table, one
JSON line each, to LAPIS_HOME/workspaces/{sub}/{group}/{workspace}/{Table}.jsonl.
A file that grows past `max_bytes` is rotated (Table.jsonl -> Table.1.jsonl ->
... -> Table.{keep}.jsonl, the oldest removed), so a workspace holds at most
(keep + 1) × max_bytes per table. Every setting that names the workspace
shares one `TableFiles` (one lock), so lines never interleave.

ArchiveSink writes Azure's storage layout, one JSON line per record:
LAPIS_HOME/storage/{account}/insights-logs-{category}/resourceId=/SUBSCRIPTIONS/…
/y=2024/m=05/d=24/h=12/m=00/PT1H.json (metrics under insights-metrics-pt1m).

Each batch is one write per file: the sink's task builds the rows and their
JSON lines (msgspec; a data-plane request's row comes made from its stencil,
lapis.diagnostics.pending.for_workspace), then the writes (and the
workspace's fsync) run in a worker thread, off the event loop. (Building the lines in that thread too
measured slightly dearer: the same Python work, with the two threads taking
turns on the GIL; bench/diagnostics_cost.py.)
Records carrying prompt and response text are sealed, under the account's
data key, before their lines are built (lapis.diagnostics.content); reading a
workspace opens them again (TableFiles' `opener`).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

import msgspec

from lapis.diagnostics import content
from lapis.diagnostics.pending import Pending
from lapis.diagnostics.shaping import workspace_row

_encoder = msgspec.json.Encoder()
_encode = _encoder.encode


class TableFiles:
    """The rotated JSON-lines files of one workspace folder."""

    def __init__(self, folder: Path, max_bytes: int, keep: int, opener: content.Opener | None = None):
        self.folder = folder
        self.max_bytes = max_bytes
        self.keep = keep
        self.opener = opener  # opens sealed text in the rows read
        self._lock = threading.Lock()

    def path(self, table: str, generation: int = 0) -> Path:
        return self.folder / (f"{table}.jsonl" if generation == 0 else f"{table}.{generation}.jsonl")

    def append(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.write({table: _encoder.encode_lines(items) for table, items in rows.items()})

    def write(self, lines: dict[str, bytes]) -> None:
        """Append each table's JSON lines, rotating first when they would not fit; synced to disk."""
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            for table, data in lines.items():
                current = self.path(table)
                if current.exists() and current.stat().st_size + len(data) > self.max_bytes:
                    self._rotate(table)
                with open(current, "ab") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())

    def _rotate(self, table: str) -> None:
        oldest = self.path(table, self.keep)
        if oldest.exists():
            oldest.unlink()
        for generation in range(self.keep - 1, -1, -1):
            source = self.path(table, generation)
            if source.exists():
                source.rename(self.path(table, generation + 1))

    def rows(self, table: str) -> Iterator[dict[str, Any]]:
        """Every row of `table`, oldest file first, its text opened; a torn last line is skipped."""
        with self._lock:
            paths = [self.path(table, g) for g in range(self.keep, -1, -1)]
            chunks = [p.read_bytes() for p in paths if p.exists()]
        opened = self.opener.reader() if self.opener is not None else None
        for chunk in chunks:
            for line in chunk.splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                yield opened(row) if opened is not None else row

    def tables(self) -> list[str]:
        if not self.folder.exists():
            return []
        return sorted({p.name.split(".", 1)[0] for p in self.folder.glob("*.jsonl")})


class WorkspaceSink:
    kind = "workspace"

    def __init__(self, name: str, files: TableFiles, keyring: Any = None):
        self.name = name
        self.files = files
        self.keyring = keyring

    async def deliver(self, records: list[Any]) -> None:
        keys = await content.data_keys(self.keyring, records)
        lines: dict[str, list[bytes]] = {}
        for record in content.sealed(records, keys):
            if type(record) is Pending:  # its row made already (lapis.diagnostics.pending.for_workspace)
                lines.setdefault("AzureDiagnostics", []).append(record.row())  # type: ignore[arg-type]
            else:
                table, row = workspace_row(record)
                lines.setdefault(table, []).append(_encode(row))
        await asyncio.to_thread(self.files.write, {table: b"\n".join(rows) + b"\n" for table, rows in lines.items()})

    async def close(self) -> None:
        return None


def archive_path(root: Path, record: dict[str, Any]) -> Path:
    container = "insights-metrics-pt1m" if "metricName" in record else f"insights-logs-{record['category'].lower()}"
    stamp = record["time"]  # 2024-05-24T12:23:02...: the hour's blob
    resource = record["resourceId"].strip("/")
    return (root / container / f"resourceId=/{resource}" / f"y={stamp[0:4]}" / f"m={stamp[5:7]}"
            / f"d={stamp[8:10]}" / f"h={stamp[11:13]}" / "m=00" / "PT1H.json")


class ArchiveSink:
    kind = "storage"

    def __init__(self, name: str, root: Path, keyring: Any = None):
        self.name = name
        self.root = root
        self.keyring = keyring
        self._lock = threading.Lock()

    def _write(self, lines: dict[Path, bytes]) -> None:
        with self._lock:
            for path, data in lines.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "ab") as handle:
                    handle.write(data)

    async def deliver(self, records: list[dict[str, Any]]) -> None:
        keys = await content.data_keys(self.keyring, records)
        grouped: dict[Path, list[dict[str, Any]]] = {}
        for record in content.sealed(records, keys):
            grouped.setdefault(archive_path(self.root, record), []).append(record)
        await asyncio.to_thread(self._write, {path: _encoder.encode_lines(items) for path, items in grouped.items()})

    async def close(self) -> None:
        return None
