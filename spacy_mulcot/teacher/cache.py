"""On-disk cache of teacher replies: SQLite, one row per request key.

Every reply is committed as soon as it arrives, so a run that is killed keeps all
it paid for; the next run asks only what is missing. The key covers everything
that changes the reply: backend, model, generation settings, template content,
text, aspect, image content hash, stage, gold label and attempt.
"""

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Union


def cache_key(**parts: Any) -> str:
    """A stable hash of the named parts (order-independent)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf8")).hexdigest()


class ReplyCache:
    """``get(key)`` / ``put(key, value)`` of JSON values; thread-safe."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            row = self._db.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: Dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
