"""Durable storage of localbatch's entities: one SQLite row per pool, node, job and task (JSON body)."""

import json
import os
import sqlite3


class Store:
    """Buffers changed documents and writes them in one transaction per `flush()`.

    Documents are the live dicts the service mutates, so a buffered document is serialised as it is
    at flush time. WAL with synchronous=NORMAL survives a kill -9 of this process (not a power cut)."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS docs (kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,"
            " PRIMARY KEY (kind, key)) WITHOUT ROWID")
        self._pending: dict[tuple[str, str], dict | None] = {}
        self._closed = False

    def load(self, kind: str) -> list[dict]:
        rows = self._db.execute("SELECT body FROM docs WHERE kind = ?", (kind,))
        return [json.loads(body) for (body,) in rows]

    def put(self, kind: str, key: str, doc: dict) -> None:
        self._pending[(kind, key)] = doc

    def delete(self, kind: str, key: str) -> None:
        self._pending[(kind, key)] = None

    def flush(self) -> bool:
        """Write what changed; True when anything was written."""
        if not self._pending:
            return False
        if self._closed:
            # A worker thread finishing after shutdown (its process was just killed): nothing to keep.
            self._pending = {}
            return False
        pending, self._pending = self._pending, {}
        upserts = [(kind, key, json.dumps(doc, separators=(",", ":")))
                   for (kind, key), doc in pending.items() if doc is not None]
        deletes = [(kind, key) for (kind, key), doc in pending.items() if doc is None]
        self._db.execute("BEGIN")
        try:
            if deletes:
                self._db.executemany("DELETE FROM docs WHERE kind = ? AND key = ?", deletes)
            if upserts:
                self._db.executemany(
                    "INSERT INTO docs (kind, key, body) VALUES (?, ?, ?)"
                    " ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body", upserts)
            self._db.execute("COMMIT")
            return True
        except BaseException:
            self._db.execute("ROLLBACK")
            self._pending = {**pending, **self._pending}
            raise

    def close(self) -> None:
        self._closed = True
        self._db.close()
