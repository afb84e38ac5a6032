"""CSV drop: a watched folder where a training provider leaves completion files.

Each ``*.csv`` file (UTF-8, a header row) is processed once: the cursor keeps the SHA-256 of
every file fully recorded, so a file copied again, renamed or left in place is not read twice,
and a changed file (another checksum) is read as new (its rows keep their idempotency keys per
checksum and row). Columns: ``person`` (external id or email), ``requirement_id``,
``completed_at`` (ISO 8601), and optionally ``score``, ``passed`` (true/false), ``attempt_id``,
``certificate_id``. A row that cannot be read becomes a dead letter naming the file and row.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.connectors.base import Batch, Completion, ConnectorError, Reject
from services.intake import CompletionIn

REQUIRED = ("person", "requirement_id", "completed_at")
MAX_FILE_BYTES = 20 * 1024 * 1024
_TRUE = {"true", "yes", "1", "pass", "passed"}
_FALSE = {"false", "no", "0", "fail", "failed"}


def resolve_folder(root: Path, folder: str) -> Path:
    """The watched folder, which must lie under ``root`` (DULY_INTEGRATIONS_DROP_ROOT).

    Raises:
        ConnectorError: The folder escapes the root.
    """
    base = root.resolve()
    path = (base / folder).resolve()
    if path != base and base not in path.parents:
        raise ConnectorError(f"the folder must lie under the drop root {base}")
    return path


class CsvDropConnector:
    """Reads completion files from a folder, each once."""

    def __init__(self, folder: Path, *, integration_id: int) -> None:
        self.folder = folder
        self._integration = integration_id

    async def close(self) -> None:
        """Nothing to close."""

    async def test(self) -> str:
        """The folder exists and can be listed."""
        if not self.folder.is_dir():
            raise ConnectorError(f"the folder {self.folder.name!r} does not exist")
        count = sum(1 for _ in self.folder.glob("*.csv"))
        return f"folder {self.folder.name!r} with {count} CSV file(s)"

    async def pull(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        """One batch per new file, in name order."""
        if not self.folder.is_dir():
            raise ConnectorError(f"the folder {self.folder.name!r} does not exist")
        files: dict[str, str] = dict(cursor.get("files") or {})
        for path in sorted(self.folder.glob("*.csv")):
            if not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
                continue
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest in files:
                continue
            batch = self._read(path.name, digest, data)
            files = {**files, digest: path.name}
            batch.cursor = {**cursor, "files": dict(files)}
            yield batch

    def _read(self, name: str, digest: str, data: bytes) -> Batch:
        batch = Batch(cursor={}, label=f"file {name}")
        where = {"file": name, "sha256": digest}
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            batch.rejects.append(Reject("the file is not UTF-8", where, f"csv:{digest[:40]}"))
            return batch
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            batch.rejects.append(
                Reject(f"the header lacks {', '.join(missing)}", where, f"csv:{digest[:40]}")
            )
            return batch
        for number, row in enumerate(reader, start=2):
            key = f"csv:{self._integration}:{digest[:32]}:{number}"
            values = {k: v for k, v in row.items() if isinstance(k, str)}
            try:
                batch.completions.append(_completion(values, key))
            except (ValueError, ValidationError) as problem:
                reason = f"{name} row {number}: {_why(problem)}"
                batch.rejects.append(Reject(reason, {**where, "row": number, **values}, key))
        return batch


def _completion(row: dict[str, Any], key: str) -> Completion:
    when = datetime.fromisoformat(str(row.get("completed_at") or "").strip())
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    passed_text = str(row.get("passed") or "").strip().lower()
    if passed_text and passed_text not in _TRUE | _FALSE:
        raise ValueError(f"passed must be true or false, not {passed_text!r}")
    score_text = str(row.get("score") or "").strip()
    body = CompletionIn(
        person=str(row.get("person") or "").strip(),
        requirement_id=str(row.get("requirement_id") or "").strip(),
        score=float(score_text) if score_text else None,
        passed=(passed_text in _TRUE) if passed_text else None,
        source="csv-drop",
        attempt_id=(row.get("attempt_id") or "").strip() or None,
        certificate_id=(row.get("certificate_id") or "").strip() or None,
        idempotency_key=key,
    )
    return Completion(body, when)


def _why(problem: Exception) -> str:
    if isinstance(problem, ValidationError):
        error = problem.errors(include_url=False, include_input=False)[0]
        return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return str(problem)[:200]
