"""DuckDB connections with the DuckLake extensions a lake needs, loaded from their Python wheels.

Extensions are never downloaded at run time: the ``duckdb-extension-<name>`` wheels
(:data:`WHEELS`: ducklake, sqlite-scanner, postgres-scanner, httpfs) carry
``extensions/v<duckdb version>/<name>.duckdb_extension`` files, which :func:`connect`
installs (by path) into a private extension directory and loads, with DuckDB's automatic
install and autoload switched off. Only the extensions a lake needs are loaded
(:attr:`~sqlrooms_nb.store.config.LakeConfig.extensions`): ``postgres_scanner`` for a
PostgreSQL catalog, ``httpfs`` for an ``s3://`` data path.

One file per extension per process: every connection loads the copy installed in the
extension directory (:func:`load_into` for a connection we did not open). Loading the wheel's
file in one connection and the installed copy in another maps two copies of the library, and
two copies of SQLite (inside ``sqlite_scanner``) in one process do not see each other's
POSIX locks: one truncates the catalog's ``-shm`` WAL index while the other reads it mapped,
and the process dies of SIGBUS (https://www.sqlite.org/howtocorrupt.html, section 2.2.1).
"""

from __future__ import annotations

import importlib
import os
import pathlib
import tempfile
from collections.abc import Sequence

import duckdb

from ..errors import StorageError

WHEELS: dict[str, tuple[str, str]] = {
    # DuckDB extension name -> (Python module of its wheel, pip requirement name)
    "ducklake": ("duckdb_extension_ducklake", "duckdb-extension-ducklake"),
    "sqlite_scanner": ("duckdb_extension_sqlite_scanner", "duckdb-extension-sqlite-scanner"),
    "postgres_scanner": (
        "duckdb_extension_postgres_scanner",
        "duckdb-extension-postgres-scanner",
    ),
    "httpfs": ("duckdb_extension_httpfs", "duckdb-extension-httpfs"),
}
"""Every extension a lake may need, and the wheel that ships it."""

DEFAULT_EXTENSIONS = ("ducklake", "sqlite_scanner")
"""What the embedded default lake (SQLite catalog, local data) needs, in load order."""

EXTENSIONS: tuple[tuple[str, str, str], ...] = tuple(
    (name, *WHEELS[name]) for name in DEFAULT_EXTENSIONS
)
"""(extension, module, requirement) of :data:`DEFAULT_EXTENSIONS`, in load order."""


def wheel_file(name: str) -> pathlib.Path:
    """:func:`extension_file` of extension ``name`` (a key of :data:`WHEELS`).

    Raises :class:`StorageError` as :func:`extension_file` does, or for an unknown name."""
    if name not in WHEELS:
        raise StorageError(f"sqlrooms_nb loads no DuckDB extension named {name!r}")
    module, requirement = WHEELS[name]
    return extension_file(name, module, requirement)


def default_extension_dir() -> pathlib.Path:
    """``$XDG_CACHE_HOME/sqlrooms_nb/duckdb_extensions`` (``~/.cache/...`` without it).

    Falls back to a folder in the system temp dir when the cache dir cannot be created.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = pathlib.Path(base) / "sqlrooms_nb" / "duckdb_extensions"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    path = pathlib.Path(tempfile.gettempdir()) / f"sqlrooms_nb-{user}" / "duckdb_extensions"
    path.mkdir(parents=True, exist_ok=True)
    return path


def extension_file(name: str, module: str, requirement: str) -> pathlib.Path:
    """Path of ``<name>.duckdb_extension`` for the running DuckDB version inside wheel ``module``.

    Raises :class:`StorageError` when the wheel is not installed or has no file for this DuckDB
    version (the message names the versions it does have).
    """
    version = duckdb.__version__
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise StorageError(
            f"the DuckDB extension package {requirement!r} is not installed: "
            f"pip install '{requirement}=={version}'"
        ) from exc
    roots = [pathlib.Path(p) for p in getattr(mod, "__path__", [])]
    if not roots and getattr(mod, "__file__", None):
        roots = [pathlib.Path(mod.__file__).parent]  # type: ignore[arg-type]
    for root in roots:
        candidate = root / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
        if candidate.is_file():
            return candidate
    have = sorted(
        entry.name
        for root in roots
        if (root / "extensions").is_dir()
        for entry in (root / "extensions").iterdir()
    )
    raise StorageError(
        f"{requirement} has no {name} extension for DuckDB {version} (it has: "
        f"{', '.join(have) or 'none'}): install matching versions, e.g. "
        f"pip install 'duckdb=={have[-1][1:] if have else '<version>'}' '{requirement}' "
        "(sqlrooms_nb pins duckdb to the release the extension wheels are built for)"
    )


def connect(
    *,
    extension_dir: pathlib.Path | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection with ``extensions`` loaded (names from
    :data:`WHEELS`, in order; default ``ducklake`` and ``sqlite_scanner``).

    ``extension_dir`` is DuckDB's ``extension_directory`` for this connection; ``None`` means
    :func:`default_extension_dir`. Config: ``autoinstall_known_extensions=false``,
    ``autoload_known_extensions=false``. Each extension file from its wheel is installed by path
    (reinstalled when the installed copy's size differs) and loaded.

    Raises :class:`StorageError` when a wheel is missing, has no file for this DuckDB version,
    or DuckDB refuses to install or load it. Runs on the calling thread (~0.2 s).
    """
    files = [(name, wheel_file(name)) for name in extensions]
    ext_dir = extension_dir if extension_dir is not None else default_extension_dir()
    try:
        ext_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create the DuckDB extension directory {ext_dir}: {exc}"
        ) from exc
    try:
        con = duckdb.connect(
            ":memory:",
            config={
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "extension_directory": str(ext_dir),
            },
        )
    except duckdb.Error as exc:
        raise StorageError(f"cannot start DuckDB: {exc}") from exc
    try:
        installed = {
            row[0]: row[1]
            for row in con.execute(
                "SELECT extension_name, install_path FROM duckdb_extensions() WHERE installed"
            ).fetchall()
        }
        for name, path in files:
            current = installed.get(name)
            stale = isinstance(current, str) and (
                not os.path.isfile(current) or os.path.getsize(current) != path.stat().st_size
            )
            verb = "FORCE INSTALL" if stale else "INSTALL"
            con.execute(f"{verb} '{_sql_string(str(path))}'")
            con.execute(f"LOAD {name}")
    except duckdb.Error as exc:
        con.close()
        raise StorageError(
            f"DuckDB {duckdb.__version__} could not install or load its extensions from "
            f"{ext_dir}: {exc}"
        ) from exc
    return con


def load_into(con: duckdb.DuckDBPyConnection, extensions: Sequence[str]) -> None:
    """Load ``extensions`` (names from :data:`WHEELS`) into ``con``, a connection opened
    elsewhere (e.g. the notebook's own DuckDB), from the very files :func:`connect` loads:
    the copies installed in :func:`default_extension_dir` (installed there first if absent).

    An extension ``con`` already has is left alone, unless DuckDB installed it from another
    file (a copy of its own in ``~/.duckdb``): then this raises :class:`StorageError`, since a
    second copy of ``sqlite_scanner`` in one process can crash it (see the module docstring).
    Also raises :class:`StorageError` as :func:`connect` does.
    """
    ours = _installed_files(extensions)
    loaded = {
        row[0]: row[1]
        for row in con.execute(
            "SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded"
        ).fetchall()
    }
    for name in extensions:
        if name in loaded:
            path = loaded[name]
            # '' = loaded by path (as below), which we cannot tell apart: assumed ours.
            if path and os.path.realpath(path) != os.path.realpath(ours[name]):
                raise StorageError(
                    f"this DuckDB connection already has the {name} extension from {path}; "
                    f"sqlrooms_nb uses the copy in {ours[name]} and will not load a second one"
                )
            continue
        try:
            con.execute(f"LOAD '{_sql_string(str(ours[name]))}'")
        except duckdb.Error as exc:
            raise StorageError(f"DuckDB could not load {ours[name]}: {exc}") from exc


_installed: dict[str, pathlib.Path] = {}


def _installed_files(extensions: Sequence[str]) -> dict[str, pathlib.Path]:
    """The installed copy of each extension :func:`connect` loads, found by opening a
    connection that installs them once per process."""
    missing = [name for name in extensions if name not in _installed]
    if missing:
        con = connect(extensions=missing)
        try:
            for name, path in con.execute(
                "SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded"
            ).fetchall():
                if name in missing:
                    _installed[name] = pathlib.Path(path)
        finally:
            con.close()
    return {name: _installed[name] for name in extensions}


def _sql_string(text: str) -> str:
    """``text`` escaped for use inside a single-quoted SQL literal (DuckDB statements that
    take no parameters, like ``INSTALL``)."""
    return text.replace("'", "''")
