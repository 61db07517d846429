"""The study database (standard-library sqlite3): cases, models, items, raters and every rating ever given.

Tables
- ``meta``: key/value (format version, seed, models, the criteria, when and from which runs it was made);
- ``models``: one row per model, in the order given to ``study create`` (``--models``);
- ``cases``: one image-text pair (sample id, class, phrase, location group, the image file shown);
- ``items``: one (case, model) heatmap a rater scores; ids are in a seeded random order and the heatmap
  file has a random name, so nothing the page sees tells the model apart; CNR/mIoU stay in the database;
- ``raters``: a name, the rater's own seeded order of the items, and where they are in it;
- ``ratings``: append-only: one row per score given (1-5); a changed score is a new row, so the history is
  kept; the current score of (rater, item) is its latest row (view ``current_ratings``).

Every write is its own transaction, committed before the server answers (WAL journal, synchronous=FULL):
a closed browser or a killed server loses no rating that the page saw acknowledged.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from cxrg.errors import InputError, UsageError

DB_NAME = "study.sqlite"
FORMAT_VERSION = 1
MAX_NAME = 80

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, run TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY, sample_id TEXT NOT NULL UNIQUE, category TEXT NOT NULL, phrase TEXT NOT NULL,
    location TEXT NOT NULL, image_file TEXT NOT NULL, height INTEGER NOT NULL, width INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL REFERENCES cases(id),
    model_id INTEGER NOT NULL REFERENCES models(id), heatmap_file TEXT NOT NULL,
    cnr REAL, miou REAL, UNIQUE (case_id, model_id));
CREATE TABLE IF NOT EXISTS raters (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, item_order TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 0, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rater_id INTEGER NOT NULL REFERENCES raters(id),
    item_id INTEGER NOT NULL REFERENCES items(id), score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ratings_by_pair ON ratings (rater_id, item_id, id);
CREATE VIEW IF NOT EXISTS current_ratings AS
    SELECT r.rater_id, r.item_id, r.score, r.at,
           (SELECT COUNT(*) FROM ratings h WHERE h.rater_id = r.rater_id AND h.item_id = r.item_id) AS times
    FROM ratings r
    WHERE r.id = (SELECT MAX(id) FROM ratings m WHERE m.rater_id = r.rater_id AND m.item_id = r.item_id);
"""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def db_path(study: Path) -> Path:
    return Path(study) / DB_NAME


def connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), timeout=10.0, isolation_level=None)  # autocommit; explicit BEGINs
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("PRAGMA busy_timeout = 10000")
    con.execute("PRAGMA synchronous = FULL")
    return con


def create_database(path: Path) -> sqlite3.Connection:
    con = connect(path)
    con.execute("PRAGMA journal_mode = WAL")
    con.executescript(SCHEMA)
    return con


def open_study(study: Path) -> sqlite3.Connection:
    """The database of an existing study folder; a clear error when the folder is not a study."""
    path = db_path(study)
    if not Path(study).is_dir():
        raise UsageError(f"study folder not found: {study}", hint="make one with `cxrg study create`")
    if not path.is_file():
        raise InputError(f"{study} is not a study folder (no {DB_NAME})",
                         hint="make one with `cxrg study create`")
    try:
        con = connect(path)
        version = con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"cannot read the study database: {exc}", where=str(path)) from exc
    if version is None or int(version[0]) != FORMAT_VERSION:
        raise InputError(f"study database format {version[0] if version else '?'} is not {FORMAT_VERSION}",
                         where=str(path), hint="make the study again with this cxrg version")
    return con


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def meta(con: sqlite3.Connection) -> dict[str, object]:
    return {row["key"]: json.loads(row["value"]) for row in con.execute("SELECT key, value FROM meta")}


def clean_name(name: str) -> str:
    """A rater name as stored: whitespace runs collapsed; empty, over-long or control characters refused."""
    text = " ".join(str(name).split())
    if not text:
        raise UsageError("the rater name is empty")
    if len(text) > MAX_NAME:
        raise UsageError(f"the rater name is longer than {MAX_NAME} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise UsageError("the rater name contains control characters")
    return text


def rater_order(seed: int, name: str, item_ids: list[int]) -> list[int]:
    """The rater's own order of the items: a permutation seeded by (study seed, name), reproducible."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int.from_bytes(digest[:8], "little")]))
    return [int(item_ids[k]) for k in rng.permutation(len(item_ids))]


def get_or_add_rater(con: sqlite3.Connection, name: str) -> sqlite3.Row:
    """The rater called `name`, added (with their seeded order of all items) on first sign-in."""
    name = clean_name(name)
    with transaction(con):
        row = con.execute("SELECT * FROM raters WHERE name = ?", (name,)).fetchone()
        if row is None:
            seed = int(json.loads(con.execute("SELECT value FROM meta WHERE key='seed'").fetchone()[0]))
            ids = [r[0] for r in con.execute("SELECT id FROM items ORDER BY id")]
            con.execute("INSERT INTO raters (name, item_order, position, created) VALUES (?, ?, 0, ?)",
                        (name, json.dumps(rater_order(seed, name, ids)), now()))
            row = con.execute("SELECT * FROM raters WHERE name = ?", (name,)).fetchone()
    return row


def rater_items(row: sqlite3.Row) -> list[int]:
    return [int(v) for v in json.loads(row["item_order"])]


def set_position(con: sqlite3.Connection, rater_id: int, position: int) -> None:
    with transaction(con):
        con.execute("UPDATE raters SET position = ? WHERE id = ?", (int(position), rater_id))


def add_rating(con: sqlite3.Connection, rater_id: int, item_id: int, score: int,
               next_position: int | None = None) -> None:
    """Record a score (a new history row) and, in the same transaction, where the rater goes next."""
    if int(score) not in range(1, 6):
        raise UsageError(f"score {score!r} is not 1-5")
    with transaction(con):
        con.execute("INSERT INTO ratings (rater_id, item_id, score, at) VALUES (?, ?, ?, ?)",
                    (rater_id, item_id, int(score), now()))
        if next_position is not None:
            con.execute("UPDATE raters SET position = ? WHERE id = ?", (int(next_position), rater_id))


def current_scores(con: sqlite3.Connection, rater_id: int) -> dict[int, int]:
    return {int(r["item_id"]): int(r["score"])
            for r in con.execute("SELECT item_id, score FROM current_ratings WHERE rater_id = ?",
                                 (rater_id,))}
