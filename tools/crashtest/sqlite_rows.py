#!/usr/bin/env python3
"""An SQLite workload for ramdiskfs-crashtest: one row per transaction in
$CRASHTEST_DIR/rows.db; after each COMMIT returns, the row's id is recorded in
$CRASHTEST_STATE/committed (outside the disk, so it survives the cut).

    sqlite_rows.py run SYNC JOURNAL [ROWS]   the workload: PRAGMA synchronous=SYNC
                                             (EXTRA, FULL, NORMAL, OFF) and
                                             journal_mode=JOURNAL (WAL, DELETE)
    sqlite_rows.py check                        after recovery: every committed
                                                row is there, and the database
                                                passes PRAGMA integrity_check
"""

import os
import sqlite3
import sys

ROOT = os.environ.get("CRASHTEST_DIR", ".")
STATE = os.environ.get("CRASHTEST_STATE", ".")
DB = os.path.join(ROOT, "rows.db")
LEDGER = os.path.join(STATE, "committed")


def run(synchronous, journal, rows):
    db = sqlite3.connect(DB, isolation_level=None)
    db.execute(f"PRAGMA journal_mode={journal}")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload BLOB)")
    ledger = open(LEDGER, "a")
    for i in range(rows):
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (?, ?)", (i, os.urandom(1500)))
        db.execute("COMMIT")
        ledger.write(f"{i}\n")
        ledger.flush()
        os.fsync(ledger.fileno())


def check():
    committed = set()
    if os.path.exists(LEDGER):
        committed = {int(line) for line in open(LEDGER) if line.strip()}
    if not committed:
        print("no committed rows to look for")
        return 0
    if not os.path.exists(DB):
        print(f"the database is gone: all {len(committed)} committed rows lost")
        return 1
    try:
        # Read-write, as the application would reopen it: a hot journal left
        # by the interrupted transaction is rolled back on open.
        db = sqlite3.connect(DB)
        ok = db.execute("PRAGMA integrity_check").fetchone()[0]
        present = {row[0] for row in db.execute("SELECT id FROM t")}
    except sqlite3.Error as e:
        print(f"{len(committed)} rows were committed, but the database is unusable: {e}")
        return 1
    lost = sorted(committed - present)
    if ok != "ok":
        print(f"integrity_check: {ok}")
    if lost:
        print(f"{len(lost)} of {len(committed)} committed rows lost (first: {lost[:10]})")
    else:
        print(f"all {len(committed)} committed rows present")
    return 1 if lost or ok != "ok" else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["check"]:
        sys.exit(check())
    if sys.argv[1:2] == ["run"] and len(sys.argv) >= 4:
        run(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 200)
        sys.exit(0)
    sys.exit(__doc__)
