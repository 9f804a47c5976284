"""The ``sqlrooms-nb`` command line: look into a lake, export a notebook, check and maintain a lake.

::

    sqlrooms-nb rooms [--json]                      rooms of the lake, their size and last edit
    sqlrooms-nb history ROOM [--branch B] [--limit N] [--json]
                                                    edit sessions, newest first
    sqlrooms-nb export ROOM --format sql|marimo|ipynb|json [--at VERSION] [--branch B] [-o FILE]
    sqlrooms-nb doctor                              what works and what does not, and how to fix it
    sqlrooms-nb maintain [--dry-run]                compaction and cleanup of the lake

Every command takes ``--lake`` (before or after the command name); the default is
``$SQLROOMS_NB_LAKE`` or ``.sqlrooms``, as for ``SqlRoom(lake=None)``. ``rooms``, ``history`` and
``export`` only read: a room is recovered into a document of the command's own (latest snapshot +
later updates) and no writer is started, so they are safe next to running kernels.

Exit codes: 0 done; 1 a ``doctor`` check failed; 2 a usage error or an error of sqlrooms_nb (one
line on stderr, ``sqlrooms-nb: error: <message>``, never a traceback); 130 interrupted.

Names (room, ``--branch``) follow :mod:`sqlrooms_nb.names` and are checked before the lake is
read. Damaged rows (see :mod:`sqlrooms_nb.store.checksums`): when the room could be rebuilt from
the other rows with nothing missing, ``history`` and ``export`` work and the damage is logged
(``[sqlrooms_nb] ...`` on stderr); when changes are missing they fail (exit 2) with a message
naming the damaged rows and the missing changes, rather than print an incomplete notebook.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import duckdb
from loro import LoroDoc
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from . import export as ex
from . import history as hist
from . import notebook as nb
from .errors import BranchNotFoundError, SqlRoomsError, StorageError, ValidationError
from .room import validate_room_id
from .store import MAIN, Lake, LakeConfig, has_rows, list_branches, parse_lake, recover
from .store.config import sql_string
from .store.extensions import connect
from .store.lake import LAKE_SCHEMA_VERSION

PROG = "sqlrooms-nb"


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (``None``: ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse printed it already
        return exc.code if isinstance(exc.code, int) else 2
    args.lake = args.lake or args.lake_before
    try:
        code: int = args.command(args)
        return code
    except (SqlRoomsError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):  # e.g. `| head`: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    lake_help = "the lake: a folder or a lake string (default: $SQLROOMS_NB_LAKE or .sqlrooms)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lake", help=lake_help)
    parser = argparse.ArgumentParser(
        prog=PROG, description="Look into a sqlrooms_nb lake, export notebooks, check the lake."
    )
    parser.add_argument("--lake", dest="lake_before", metavar="LAKE", help=lake_help)
    sub = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    rooms = sub.add_parser("rooms", parents=[common], help="list the rooms of the lake")
    rooms.add_argument("--json", action="store_true", help="print JSON")
    rooms.set_defaults(command=_cmd_rooms)

    history = sub.add_parser("history", parents=[common], help="edit sessions of a room")
    history.add_argument("room")
    history.add_argument("--branch", default=MAIN)
    history.add_argument("--limit", type=_positive, default=None, help="at most N sessions")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.set_defaults(command=_cmd_history)

    export = sub.add_parser("export", parents=[common], help="write a room as a file")
    export.add_argument("room")
    export.add_argument("--format", choices=ex.FORMATS, help="default: from the -o file's suffix")
    export.add_argument("--at", metavar="VERSION", help="a version id listed by `history`")
    export.add_argument("--branch", default=MAIN)
    export.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    export.set_defaults(command=_cmd_export)

    doctor = sub.add_parser("doctor", parents=[common], help="check the set-up and the lake")
    doctor.set_defaults(command=_cmd_doctor)

    maintain = sub.add_parser("maintain", parents=[common], help="compact and clean the lake")
    maintain.add_argument("--dry-run", action="store_true", help="say what would be done")
    maintain.set_defaults(command=_cmd_maintain)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


# --- reading the lake -------------------------------------------------------------------------


def _open(location: str | None, *, write: bool = False) -> Lake:
    """The lake, opened (see :func:`_config`)."""
    return Lake.open(_config(location, write=write))


def _config(location: str | None, *, write: bool = False) -> LakeConfig:
    """The lake's config. A read must not create a lake, so an embedded lake must exist; and
    it must not take a serverless lake's single-writer lease, so it opens as a viewer."""
    config = parse_lake(location)
    serverless = getattr(config, "serverless", None)
    if serverless is not None:
        if not write and not serverless.read_only:
            viewer = dataclasses.replace(serverless, read_only=True)
            config = dataclasses.replace(config, serverless=viewer)
    elif config.catalog_path is not None and not config.catalog_path.exists():
        raise StorageError(
            f"there is no lake at {config.catalog_path.parent} (no {config.catalog_path.name}): "
            "give the lake with --lake or $SQLROOMS_NB_LAKE"
        )
    return config


@dataclass
class RoomInfo:
    """One room of a lake: its branches (``main`` first), Loro changes stored, bytes stored
    (updates + snapshots) and the time of its last edit (UTC; ``None`` when unrecorded)."""

    room: str
    branches: list[str] = field(default_factory=lambda: [MAIN])
    changes: int = 0
    stored_bytes: int = 0
    last_edit: datetime | None = None


def list_rooms(lake: Lake) -> list[RoomInfo]:
    """Every room of ``lake``, by name: one grouped query per table, in one transaction.

    Raises :class:`StorageError` if the lake cannot be read.
    """
    updates, snapshots, lineage = (lake.table(t) for t in ("updates", "snapshots", "branches"))
    queries = (
        # (epoch_us: a TIMESTAMPTZ fetched as a datetime would need pytz)
        "SELECT room, list(DISTINCT branch), sum(byte_length), sum(change_count), "
        f"epoch_us(max(greatest(last_change_at, written_at))) FROM {updates} GROUP BY room",
        f"SELECT room, list(DISTINCT branch), sum(byte_length) FROM {snapshots} GROUP BY room",
        f"SELECT room, list(DISTINCT name) FROM {lineage} GROUP BY room",
    )

    def read() -> list[list[Any]]:
        cur = lake.cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            results = [cur.execute(query).fetchall() for query in queries]
            cur.execute("COMMIT")
            return results
        finally:
            cur.close()

    found: dict[str, RoomInfo] = {}
    for rows in lake.retrying(read, what=f"list the rooms of {lake.location}"):
        for room, branches, *counts in rows:
            info = found.setdefault(room, RoomInfo(room))
            info.branches += branches
            if counts:
                info.stored_bytes += int(counts[0] or 0)
            if len(counts) == 3:  # updates: changes, last edit
                info.changes += int(counts[1] or 0)
                info.last_edit = _from_us(counts[2])
    for info in found.values():
        info.branches = sorted(set(info.branches), key=lambda name: (name != MAIN, name))
    return [found[room] for room in sorted(found)]


def _load(lake: Lake, room: str, branch: str) -> LoroDoc:
    """``room``/``branch`` recovered into a new document (read-only: no writer is started).

    Raises :class:`ValidationError` for an unknown room, :class:`BranchNotFoundError` for an
    unknown branch, ``StorageError`` / ``RecoveryError``.
    """
    validate_room_id(room)
    validate_room_id(branch, "branch name")
    known = [b.name for b in list_branches(lake, room)]  # main first, then lineage rows
    if branch not in known[1:] and not has_rows(lake, room, branch):
        if len(known) == 1 and (branch == MAIN or not has_rows(lake, room, MAIN)):
            names = ", ".join(r.room for r in list_rooms(lake)) or "none"
            raise ValidationError(f"the lake {lake.location} has no room {room!r} (rooms: {names})")
        raise BranchNotFoundError(
            f"room {room!r} has no branch {branch!r} (it has: {', '.join(known)})"
        )
    doc = nb.new_doc()
    recover(lake, room, branch, doc, warm=False)
    return doc


def _sessions(doc: LoroDoc, limit: int | None) -> list[hist.Version]:
    """Edit sessions, newest first: what ``SqlRoom.history()`` computes, from the same parts.
    Each change's statistics are read from its ops: a bar shows when that takes a while."""
    cell_of = hist.container_cells(doc)
    listed = hist.changes(doc)
    bar = _bar(total=len(listed), desc="history", unit="change", leave=False)

    def stats(change: hist.Change) -> hist.ChangeStats:
        bar.update(1)
        return hist.change_stats(doc, change, cell_of)

    with bar:
        return hist.sessions(doc, stats, limit=limit, listed=listed)


# --- commands ---------------------------------------------------------------------------------


def _cmd_rooms(args: argparse.Namespace) -> int:
    lake = _open(args.lake)
    try:
        rooms = list_rooms(lake)
    finally:
        lake.release()
    if args.json:
        _print_json([asdict(r) for r in rooms])
    elif not rooms:
        print(f"no rooms in {lake.location}")
    else:
        rows = [
            [
                r.room,
                str(len(r.branches)),
                str(r.changes),
                _size(r.stored_bytes),
                _time(r.last_edit),
            ]
            for r in rooms
        ]
        _print_table(["ROOM", "BRANCHES", "CHANGES", "STORED", "LAST EDIT"], rows, right={1, 2, 3})
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    _check_names(args)
    lake = _open(args.lake)
    try:
        doc = _load(lake, args.room, args.branch)
    finally:
        lake.release()
    versions = _sessions(doc, args.limit)
    names: dict[str, str] = {c.id: c.name or c.kind for c in nb.read_cells(doc)}

    def cell_names(v: hist.Version) -> list[str]:  # (ids of deleted cells stay ids)
        return [names.get(c, c) for c in v.cells]

    if args.json:
        _print_json([{**asdict(v), "cell_names": cell_names(v)} for v in versions])
    else:
        rows = [
            [v.id, _time(v.time), v.author or "-", _short(", ".join(cell_names(v))), v.summary]
            for v in versions
        ]
        _print_table(["VERSION", "TIME", "AUTHOR", "CELLS", "SUMMARY"], rows)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if args.output is not None and any(ch < " " or ch == "\x7f" for ch in args.output):
        raise ValidationError(f"the output file name {args.output!r:.80} holds a control character")
    fmt = args.format or _format_of(args.output)
    _check_names(args)
    lake = _open(args.lake)
    try:
        doc = _load(lake, args.room, args.branch)
    finally:
        lake.release()
    version = hist.current_version(doc)
    if args.at is not None:
        version = args.at
        try:
            frontiers = hist.parse_version(doc, args.at)
        except ValidationError as exc:
            hint = f"sqlrooms-nb history {args.room} --branch {args.branch}"
            raise ValidationError(f"{exc}; list the versions with `{hint}`") from None
        doc = doc.fork_at(frontiers)
    text = ex.export(ex.from_doc(doc, room=args.room, branch=args.branch, version=version), fmt)
    if args.output is None:
        sys.stdout.write(text)
    else:
        pathlib.Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({fmt}, version {version})", file=sys.stderr)
    return 0


def _check_names(args: argparse.Namespace) -> None:
    """The room and branch arguments, checked before the lake is opened. Raises
    :class:`ValidationError`."""
    validate_room_id(args.room)
    validate_room_id(args.branch, "branch name")


def _format_of(output: str | None) -> str:
    suffix = pathlib.Path(output).suffix if output else ""
    for fmt, known in ex.SUFFIXES.items():
        if suffix == known:
            return fmt
    raise ValidationError(f"say which format to write: --format {'|'.join(ex.FORMATS)}")


# --- doctor -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One doctor check: ``status`` is ``"ok"``, ``"FAIL"`` or ``"skip"`` (it needs an earlier
    check that failed); ``fix`` says what to do about a failure."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _cmd_doctor(args: argparse.Namespace) -> int:
    checks = doctor(args.lake)
    for check in checks:
        print(f"{check.status:<5} {check.name}: {check.detail}")
        if check.fix:
            print(f"{'':<5}   fix: {check.fix}")
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def doctor(location: str | None) -> list[Check]:
    """Check DuckDB and its extension wheels, the catalog, the data path and the serverless
    lease of the lake at ``location`` (as ``--lake``). Never raises for what it checks."""
    try:
        config = parse_lake(location)
    except ValidationError as exc:
        return [Check("lake", "FAIL", str(exc), "fix --lake or $SQLROOMS_NB_LAKE")]
    checks = [_check_extensions(config)]
    lake: Lake | None = None
    try:
        lake = Lake.open(_config(location))
        checks.append(Check("catalog", "ok", f"{config.describe()} opens; " + _layout(lake)))
    except SqlRoomsError as exc:
        fix = ""
        if "there is no lake" in str(exc):
            fix = "a SqlRoom creates a new lake on first use"
        checks.append(Check("catalog", "FAIL", str(exc), fix))
    try:
        checks.append(_check_data_path(config, lake))
        checks.append(_check_lease(config))
    finally:
        if lake is not None:
            lake.release()
    return checks


def _check_extensions(config: LakeConfig) -> Check:
    try:
        connect(extensions=config.extensions).close()
    except StorageError as exc:
        return Check("duckdb", "FAIL", str(exc))
    names = ", ".join(config.extensions)
    return Check("duckdb", "ok", f"DuckDB {duckdb.__version__}; {names} load from their wheels")


def _layout(lake: Lake) -> str:
    def read() -> str | None:
        cur = lake.cursor()
        try:
            row = cur.execute(
                f"SELECT value FROM {lake.table('lake_meta')} WHERE key = 'schema_version'"
            ).fetchone()
        finally:
            cur.close()
        return None if row is None else str(row[0])

    version = lake.retrying(read, what="read the lake's layout version")
    return f"table layout version {version} (this sqlrooms_nb: {LAKE_SCHEMA_VERSION})"


def _check_data_path(config: LakeConfig, lake: Lake | None) -> Check:
    name = f"data path {config.data_path}"
    probe = f".sqlrooms-doctor-{uuid.uuid4().hex}"
    if lake is None:
        return Check(name, "skip", "needs a catalog that opens")
    if not config.on_s3:
        path = pathlib.Path(config.data_path) / (probe + ".probe")
        try:
            path.write_bytes(b"sqlrooms-nb doctor")
            same = path.read_bytes() == b"sqlrooms-nb doctor"
            path.unlink()
        except OSError as exc:
            return Check(name, "FAIL", str(exc), "let this user read and write that folder")
        if not same:
            return Check(name, "FAIL", "a file written there read back different")
        return Check(name, "ok", "writable and readable")
    # S3: through the lake's own DuckDB, which holds the lake's S3 secret.
    url = config.data_path + probe + ".parquet"
    cur = lake.cursor()
    try:
        cur.execute(f"COPY (SELECT 42 AS probe) TO {sql_string(url)} (FORMAT parquet)")
        row = cur.execute(f"SELECT probe FROM read_parquet({sql_string(url)})").fetchone()
    except duckdb.Error as exc:
        fix = "check the bucket, the S3 keys in the environment and the endpoint settings"
        return Check(name, "FAIL", str(exc).splitlines()[0], fix)
    finally:
        cur.close()
    if row is None or row[0] != 42:
        return Check(name, "FAIL", "a file written there read back different")
    left = _remove_s3(config, url)
    return Check(name, "ok", "writable and readable" + (f" (left {url}: {left})" if left else ""))


def _remove_s3(config: LakeConfig, url: str) -> str:
    """Delete the probe object with s3fs when installed (DuckDB cannot delete files); returns
    why it could not ("" when deleted)."""
    try:
        import s3fs  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        return "install sqlrooms_nb[shared] to let doctor clean up"
    endpoint = config.s3.endpoint if config.s3 else None
    use_ssl = config.s3.use_ssl if config.s3 else None
    client: dict[str, Any] = {}
    if endpoint:
        client["endpoint_url"] = ("http://" if use_ssl is False else "https://") + endpoint
    try:
        s3fs.S3FileSystem(client_kwargs=client).rm(url)
    except Exception as exc:  # any s3fs/botocore error: the check itself passed
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ""


def _check_lease(config: LakeConfig) -> Check:
    if not getattr(config, "serverless", False):
        return Check("serverless lease", "ok", "not applicable (not a serverless lake)")
    try:
        from .store.serverless import read_lease  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        return Check("serverless lease", "ok", "not applicable (no serverless support here)")
    try:
        lease = read_lease(config)
    except Exception as exc:  # whatever the bucket answered: that is the finding
        return Check("serverless lease", "FAIL", str(exc) or type(exc).__name__)
    if lease is None:
        return Check("serverless lease", "ok", "free (no writer holds it)")
    held = f"held by {lease.holder} since {_time(lease.since)}"
    if lease.expires <= datetime.now(timezone.utc):
        return Check(
            "serverless lease",
            "ok",
            f"{held}, expired {_time(lease.expires)}: the next writer takes it over",
        )
    return Check("serverless lease", "ok", f"{held}, until {_time(lease.expires)}")


# --- maintain ---------------------------------------------------------------------------------


def _cmd_maintain(args: argparse.Namespace) -> int:
    try:
        from .store.maintenance import maintain  # type: ignore[import-not-found, unused-ignore]
    except ModuleNotFoundError as exc:
        if exc.name != "sqlrooms_nb.store.maintenance":
            raise
        raise StorageError("this sqlrooms_nb has no lake maintenance yet") from None
    lake = _open(args.lake, write=True)
    try:
        # The number of steps is known only at the end: the bar counts them as they finish.
        # maintain() reports "<step>..." before a step and "<step>: <detail>" after it.
        with _bar(desc="maintain", unit="step") as bar:

            def progress(message: str) -> None:
                if message.endswith("..."):
                    bar.set_postfix_str(message.removesuffix("..."))
                else:
                    bar.update(1)

            steps = maintain(lake, dry_run=args.dry_run, progress=progress)
    finally:
        lake.release()
    for step in steps:
        status = "done" if step.done else ("would do" if args.dry_run else "skipped")
        print(f"{status:<8}  {step.name}: {step.detail}")
    if not steps:
        print("nothing to do")
    return 0


# --- output -----------------------------------------------------------------------------------


def _bar(**options: Any) -> Any:
    """A tqdm progress bar on stderr, drawn only on a terminal and only once the work has
    taken half a second (quick commands stay quiet)."""
    return tqdm(file=sys.stderr, disable=None, delay=0.5, **options)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=datetime.isoformat))


def _print_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] | None = None
) -> None:
    """Columns padded to their widest cell (numbers in columns ``right`` aligned right); the
    last column is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def align(i: int, text: str) -> str:
        return text.rjust(widths[i]) if right and i in right else text.ljust(widths[i])

    for row in [header, *rows]:
        cells = [align(i, t) for i, t in enumerate(row[:-1])] + [row[-1]]
        print("  ".join(cells).rstrip())


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _from_us(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, tz=timezone.utc)


def _time(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
