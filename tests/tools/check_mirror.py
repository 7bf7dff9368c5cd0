#!/usr/bin/env python3
"""Reads a ghl-mirror database with tools older than (or other than) ghl-mirror's own SQLite.

Usage: check_mirror.py DB (sqlite|datasette|duckdb)...

Prints one JSON object on stdout, one key per check asked for:
  sqlite:    Python's stdlib sqlite3 (the system's SQLite): its version, `PRAGMA
             integrity_check`, the row count and columns of every table and view (the
             full-text index's internals aside), and every task's and appointment's raw JSON
             with its stored `*_ms` values, for the caller to compare with its own.
  datasette: starts `datasette serve` on 127.0.0.1 port 0 and fetches every view's and
             table's `.json`: the HTTP status and row count of each.
  duckdb:    `ATTACH ... (TYPE sqlite)` and every row of every documented view and every
             table: their row counts, and the error of any that fails.
A missing module or command exits 2 with what to install.
"""

import json
import os
import re
import sqlite3
import subprocess
import sys
import urllib.request

REQUIREMENTS = "python3 -m pip install -r tests/tools/requirements.txt"
# The reporting views the README documents.
VIEWS = ["live_contacts", "live_custom_values", "open_tasks", "upcoming_appointments",
         "contact_freshness"]
FTS = "contacts_fts"
FTS_SHADOW = {FTS + s for s in ("", "_data", "_idx", "_content", "_docsize", "_config")}


def missing(what):
    sys.stderr.write(f"check_mirror.py: {what} is missing; install it with: {REQUIREMENTS}\n")
    sys.exit(2)


def objects(con):
    rows = con.execute(
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
    return [(n, t) for n, t in rows if n not in FTS_SHADOW]


def check_sqlite(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = {"version": sqlite3.sqlite_version,
           "integrity_check": [r[0] for r in con.execute("PRAGMA integrity_check")],
           "objects": {}}
    for name, kind in objects(con):
        cur = con.execute(f'SELECT * FROM "{name}"')
        rows = cur.fetchall()
        out["objects"][name] = {"type": kind, "rows": len(rows),
                                "columns": [d[0] for d in cur.description]}
    out["tasks_ms"] = con.execute(
        "SELECT id, raw, due_date_ms FROM tasks ORDER BY pk").fetchall()
    out["appointments_ms"] = con.execute(
        "SELECT id, raw, start_ms, end_ms FROM appointments ORDER BY pk").fetchall()
    # What the views compute from them (the same rows, through the view's own SQL).
    out["open_tasks_ms"] = con.execute("SELECT id, due_date_ms FROM open_tasks").fetchall()
    # The full-text index opens too (schema v8's did not: `contentless_delete` is 3.43).
    try:
        out["fts_matches"] = con.execute(
            f"SELECT COUNT(*) FROM {FTS} WHERE {FTS} MATCH 'a* OR e* OR i* OR o*'").fetchone()[0]
    except sqlite3.Error as e:
        out["fts_error"] = str(e)
    con.close()
    return out


def check_datasette(db):
    try:
        import datasette  # noqa: F401
    except ImportError:
        missing("the Python module datasette")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    names = [n for n, _ in objects(con)]
    con.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "datasette", "serve", db, "-h", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = {"pages": {}}
    try:
        port = None
        log = []
        for line in proc.stdout:
            log.append(line)
            m = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            out["error"] = "datasette did not start: " + "".join(log)
            return out
        base = f"http://127.0.0.1:{port}"
        stem = os.path.splitext(os.path.basename(db))[0]
        with urllib.request.urlopen(f"{base}/-/versions.json", timeout=30) as r:
            versions = json.load(r)
        out["version"] = versions["datasette"]["version"]
        out["sqlite_version"] = versions["sqlite"]["version"]
        for name in names:
            url = f"{base}/{stem}/{name}.json"
            try:
                with urllib.request.urlopen(url, timeout=60) as r:
                    body = json.load(r)
                    out["pages"][name] = {"status": r.status, "rows": len(body.get("rows", [])),
                                          "error": body.get("error")}
            except urllib.error.HTTPError as e:
                out["pages"][name] = {"status": e.code, "rows": 0,
                                      "error": e.read().decode(errors="replace")[:500]}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def check_duckdb(db):
    try:
        import duckdb
        import duckdb_extension_sqlite_scanner as scanner
    except ImportError as e:
        missing(f"the Python module {e.name}")
    ext = os.path.join(os.path.dirname(scanner.__file__), "extensions", f"v{duckdb.__version__}",
                       "sqlite_scanner.duckdb_extension")
    if not os.path.exists(ext):
        missing(f"DuckDB's SQLite extension for DuckDB {duckdb.__version__} ({ext})")
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ext}'")
    con.execute(f"ATTACH '{db}' AS m (TYPE sqlite, READ_ONLY)")
    lite = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    tables = [n for n, t in objects(lite) if t == "table"]
    lite.close()
    out = {"version": duckdb.__version__, "counts": {}, "errors": {}}
    for name in VIEWS + tables:
        try:
            # SELECT * rather than COUNT(*): DuckDB counts a table by its rowid, which WITHOUT
            # ROWID tables (contact_tags, ...) lack, while it reads their columns well.
            out["counts"][name] = len(con.execute(f'SELECT * FROM m."{name}"').fetchall())
        except Exception as e:  # noqa: BLE001 - reported to the test, which names the view
            out["errors"][name] = str(e)[:500]
    return out


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    db, checks = os.path.abspath(sys.argv[1]), sys.argv[2:]
    run = {"sqlite": check_sqlite, "datasette": check_datasette, "duckdb": check_duckdb}
    result = {}
    for c in checks:
        if c not in run:
            sys.stderr.write(f"unknown check {c!r}: one of {', '.join(run)}\n")
            sys.exit(2)
        result[c] = run[c](db)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
