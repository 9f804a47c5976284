"""Where a lake lives: :class:`LakeConfig` and the strings :func:`parse_lake` reads.

A lake is a DuckLake **catalog** (SQLite file or PostgreSQL database) plus a **data path**
(local folder or ``s3://bucket/prefix``) where its parquet files go. One string says both; the
same strings work for ``SqlRoom(lake=...)``, :meth:`~sqlrooms_nb.store.Lake.open` and the
``SQLROOMS_NB_LAKE`` environment variable::

    .sqlrooms                       embedded default: a folder holding catalog.sqlite + data/
    ~/lakes/team                    (any path without a scheme; ~ expanded, made absolute)
    sqlite:/abs/catalog.sqlite      a SQLite catalog file; data in data/ beside it unless
    sqlite:/abs/cat.sqlite?data=s3://bucket/prefix     ?data= says otherwise
    postgres:host=db.example port=5432 dbname=lake user=ana?data=s3://bucket/prefix
    postgresql://ana@db.example:5432/lake?data=s3://bucket/prefix&s3_region=eu-west-1
    postgresql://ana@127.0.0.1:5432/lake?data=/srv/lake-data    (a local data folder)
    s3://bucket/prefix?s3_endpoint=127.0.0.1:9000&upload_every=20   serverless single-user:
                                    the SQLite catalog lives in the bucket (see .serverless)

Query parameters after the (last) ``?``, all optional but ``data`` for PostgreSQL:

- ``data``          data path: a local folder or ``s3://bucket/prefix``
- ``s3_endpoint``   ``host:port`` of an S3-compatible server (``AWS_ENDPOINT_URL`` otherwise)
- ``s3_region``     region (``AWS_REGION`` / ``AWS_DEFAULT_REGION`` otherwise)
- ``s3_url_style``  ``path`` or ``vhost``
- ``s3_use_ssl``    ``true`` or ``false``

Any other parameter of a ``postgresql://`` URI (``sslmode``, ``connect_timeout``,
``application_name``, ...) is kept as a libpq keyword. PostgreSQL DSNs are normalised to libpq
keyword form (``host=... port=... dbname=... user=...``).

**No secrets here.** A config never holds a password or a key: a ``password`` / ``sslpassword``
keyword, or ``user:password@`` in a URI, is refused (:class:`ValidationError`). Credentials
come from where their own tools look:

- PostgreSQL: ``PGPASSWORD``, ``~/.pgpass`` (``PGPASSFILE``), or any other libpq mechanism
  (peer / certificate authentication). libpq reads them when the lake connects.
- S3: ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``) in the
  environment become a temporary DuckDB secret of the lake's own DuckDB (scoped to the data
  path, never persisted); without them, DuckDB uses the persistent secrets the user made
  (``CREATE PERSISTENT SECRET (TYPE s3, ...)``), which must then carry the endpoint settings.

So nothing secret reaches the document, the lake's rows or the logs; :func:`redact` still
scrubs anything that looks like a password from every message, as a second line of defence.
"""

from __future__ import annotations

import os
import pathlib
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ValidationError

if TYPE_CHECKING:
    from .serverless import ServerlessSettings

LAKE_ENV = "SQLROOMS_NB_LAKE"
"""Environment variable holding the lake (a path or a lake URI) when none is given."""
DEFAULT_LAKE_DIR = ".sqlrooms"
"""Lake folder (relative to the current directory) when neither an argument nor the env is set."""
CATALOG_FILE = "catalog.sqlite"
"""Catalog file name inside an embedded lake folder."""
DATA_DIR = "data"
"""Data folder name inside an embedded lake folder (or beside a ``sqlite:`` catalog)."""
SPILL_ENV = "SQLROOMS_NB_SPILL_DIR"
"""Environment variable naming the folder of spill files (see :func:`spill_root`)."""

SECRET_KEYWORDS = frozenset({"password", "sslpassword"})
"""libpq keywords a lake string may not carry (use PGPASSWORD / ~/.pgpass)."""
_S3_PARAMS = ("s3_endpoint", "s3_region", "s3_url_style", "s3_use_ssl")
_URL_STYLES = ("path", "vhost")
_PG_ORDER = ("host", "hostaddr", "port", "dbname", "user")
"""Keywords first in a normalised DSN, in this order; the rest follow sorted."""

_NO_PASSWORD_HINT = (
    "a lake string never holds a password: remove it, and give it to PostgreSQL through "
    "the PGPASSWORD environment variable or ~/.pgpass"
)


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3(-compatible) store; every field ``None`` means DuckDB's default.

    ``endpoint``: ``host[:port]`` without scheme (AWS when ``None``); ``region``: e.g.
    ``"us-east-1"``; ``url_style``: ``"path"`` (most self-hosted servers) or ``"vhost"``;
    ``use_ssl``: ``False`` for a plain-HTTP endpoint. No credentials (see the module doc).
    """

    endpoint: str | None = None
    region: str | None = None
    url_style: str | None = None
    use_ssl: bool | None = None

    def __post_init__(self) -> None:
        if self.url_style is not None and self.url_style not in _URL_STYLES:
            raise ValidationError(f"s3_url_style must be 'path' or 'vhost', not {self.url_style!r}")
        if self.endpoint is not None and ("://" in self.endpoint or "@" in self.endpoint):
            raise ValidationError(
                f"s3_endpoint is host[:port] without scheme or credentials, not "
                f"{redact(self.endpoint)!r} (say s3_use_ssl=false for plain http)"
            )


@dataclass(frozen=True)
class LakeConfig:
    """Where one lake lives. Holds no secrets (see the module doc); build it with
    :func:`parse_lake` or directly.

    Fields:
        catalog: ``"sqlite"`` or ``"postgres"``.
        catalog_path: absolute path of the SQLite catalog file (``None`` for PostgreSQL).
        dsn: libpq keyword DSN of the PostgreSQL catalog (``None`` for SQLite); no password.
        data_path: absolute local folder or ``s3://bucket/prefix``; always ends with ``/``.
        s3: endpoint settings, only with an ``s3://`` data path.
        folder: the lake folder of an embedded lake (``catalog.sqlite`` + ``data/`` inside),
            ``None`` otherwise.
        serverless: a serverless lake's bucket side (``s3://bucket/prefix``: the catalog copy
            and lease in the bucket, ``catalog_path`` its local working copy), ``None`` otherwise.

    Raises :class:`ValidationError` for a missing or contradictory field or a DSN holding a
    password.
    """

    catalog: str
    data_path: str
    catalog_path: pathlib.Path | None = None
    dsn: str | None = None
    s3: S3Settings | None = None
    folder: pathlib.Path | None = field(default=None, compare=False)
    serverless: ServerlessSettings | None = None

    def __post_init__(self) -> None:
        if self.catalog == "sqlite":
            if self.catalog_path is None or self.dsn is not None:
                raise ValidationError("a sqlite lake has a catalog_path and no dsn")
        elif self.catalog == "postgres":
            if self.dsn is None or self.catalog_path is not None:
                raise ValidationError("a postgres lake has a dsn and no catalog_path")
            _check_no_password(parse_dsn(self.dsn))
        else:
            raise ValidationError(f"catalog must be 'sqlite' or 'postgres', not {self.catalog!r}")
        if not self.data_path.endswith("/"):
            object.__setattr__(self, "data_path", self.data_path + "/")
        if self.s3 is not None and not self.on_s3:
            raise ValidationError(
                f"S3 settings were given but the data path {self.data_path} is not s3://"
            )

    # --- derived -------------------------------------------------------------------------------

    @property
    def on_s3(self) -> bool:
        """Whether the data path is in S3 (``s3://``)."""
        return self.data_path.startswith("s3://")

    @property
    def identity(self) -> str:
        """Normalised text naming this lake (catalog + data path), without secrets: equal for
        two configs that open the same lake. Used as the process-wide registry key."""
        if self.serverless is not None:
            return self.serverless.identity
        if self.catalog == "sqlite":
            return f"sqlite:{self.catalog_path}?data={self.data_path}"
        return f"postgres:{self.dsn}?data={self.data_path}"

    @property
    def extensions(self) -> tuple[str, ...]:
        """DuckDB extensions an attach of this lake needs, in load order."""
        scanner = "sqlite_scanner" if self.catalog == "sqlite" else "postgres_scanner"
        return ("ducklake", scanner, *(("httpfs",) if self.on_s3 else ()))

    @property
    def read_only(self) -> bool:
        """Whether the lake is opened read-only (a serverless viewer, ``?readonly=true``)."""
        return self.serverless is not None and self.serverless.read_only

    @property
    def host(self) -> str | None:
        """The PostgreSQL host (``host`` or ``hostaddr``; ``None`` for SQLite or a default)."""
        if self.dsn is None:
            return None
        keys = parse_dsn(self.dsn)
        return keys.get("host") or keys.get("hostaddr")

    def describe(self) -> str:
        """Short text for messages and logs: the folder of an embedded lake, else
        :attr:`identity` (which never holds a password)."""
        return str(self.folder) if self.folder is not None else self.identity

    def attach_sql(self, alias: str, *, read_only: bool = False) -> str:
        """``ATTACH`` statement of this lake as ``alias`` (a plain identifier).

        SQLite catalogs use WAL journaling and a busy timeout; a local data path overrides
        the recorded one for this session (the folder may have moved). PostgreSQL catalogs get
        ``connect_timeout=10`` unless the DSN sets one, so an unreachable host fails in
        seconds, not minutes. Raises :class:`ValidationError` for an ``alias`` that is not a
        plain identifier (it is spliced into the statement).
        """
        _check_identifier(alias, "lake alias")
        options = [f"DATA_PATH {sql_string(self.data_path)}"]
        read_only = read_only or self.read_only
        if read_only:
            options.insert(0, "READ_ONLY")
        if self.catalog == "sqlite":
            target = f"ducklake:sqlite:{self.catalog_path}"
            if not self.on_s3:
                options.append("OVERRIDE_DATA_PATH true")
            if not read_only:
                options.append("META_JOURNAL_MODE 'WAL'")
                options.append(f"META_BUSY_TIMEOUT {SQLITE_BUSY_TIMEOUT_MS}")
        else:
            assert self.dsn is not None
            dsn = self.dsn
            if "connect_timeout" not in parse_dsn(dsn):
                dsn += f" connect_timeout={PG_CONNECT_TIMEOUT_S}"
            target = f"ducklake:postgres:{dsn}"
        return f"ATTACH IF NOT EXISTS {sql_string(target)} AS {alias} ({', '.join(options)})"

    def __repr__(self) -> str:
        return f"LakeConfig({redact(self.describe())!r})"

    __str__ = describe


SQLITE_BUSY_TIMEOUT_MS = 5000
"""SQLite busy timeout of the catalog connection, milliseconds."""
PG_CONNECT_TIMEOUT_S = 10
"""libpq ``connect_timeout`` (seconds) added to a PostgreSQL DSN that sets none."""


def parse_lake(
    value: str | os.PathLike[str] | LakeConfig | None,
    *,
    env: Mapping[str, str] | None = None,
) -> LakeConfig:
    """The :class:`LakeConfig` for ``value`` (forms in the module doc).

    ``None`` means ``$SQLROOMS_NB_LAKE`` (read from ``env``, default ``os.environ``) or
    ``.sqlrooms``; a :class:`LakeConfig` is returned as is. Relative paths are made absolute
    against the current directory (``~`` expanded, symlinks resolved). Nothing is opened or
    created. Raises :class:`ValidationError` naming the problem (never echoing a password) for
    an unknown scheme, a bad parameter, a missing ``data`` for PostgreSQL, a password, or a
    control character (NUL, newline...) anywhere in the string.
    """
    if isinstance(value, LakeConfig):
        return value
    if value is None:
        value = (os.environ if env is None else env).get(LAKE_ENV) or DEFAULT_LAKE_DIR
    text = os.fspath(value)
    if not isinstance(text, str):
        raise ValidationError(f"a lake is a path or a lake URI string, not {type(value).__name__}")
    if any(ch < " " or ch == "\x7f" for ch in text):
        # A NUL would cut the ATTACH statement (or a path) short; the others are typos.
        raise ValidationError(
            f"a lake string cannot hold control characters (NUL, newline...): {redact(text)!r:.120}"
        )
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme in ("postgres", "postgresql"):
        return _parse_postgres(text)
    if scheme == "sqlite":
        return _parse_sqlite(text[len("sqlite:") :])
    if scheme == "s3":
        from .serverless import parse_serverless

        return parse_serverless(text, env=env)
    if scheme and len(scheme) > 1 and "/" not in scheme and "\\" not in scheme:
        # (one letter is a Windows drive; a slash before the colon is a path)
        raise ValidationError(
            f"unknown lake scheme {scheme + ':'!r} in {redact(text)!r}: use a folder path, "
            "sqlite:<catalog file>, postgres:<libpq DSN>?data=..., postgresql://...?data=... "
            "or s3://bucket/prefix (serverless)"
        )
    folder = _local(text)
    return LakeConfig(
        catalog="sqlite",
        catalog_path=folder / CATALOG_FILE,
        data_path=str(folder / DATA_DIR),
        folder=folder,
    )


def _local(text: str) -> pathlib.Path:
    return pathlib.Path(text).expanduser().resolve()


def _data_path(text: str) -> str:
    if text.startswith("s3://"):
        if len(text) <= len("s3://") or text[len("s3://")] == "/":
            raise ValidationError(f"an S3 data path is s3://bucket/prefix, not {text!r}")
        return text
    if "://" in text:
        raise ValidationError(
            f"a data path is a local folder or s3://bucket/prefix, not {redact(text)!r}"
        )
    return str(_local(text))


def _split_query(text: str) -> tuple[str, dict[str, str]]:
    """``text`` before the last ``?`` and its parameters (each given at most once)."""
    if "?" not in text:
        return text, {}
    head, _, query = text.rpartition("?")
    params: dict[str, str] = {}
    for key, val in urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key in params:
            raise ValidationError(f"lake parameter {key!r} is given twice")
        params[key] = val
    return head, params


def _s3_settings(params: dict[str, str]) -> S3Settings | None:
    given = {k: params.pop(k) for k in _S3_PARAMS if k in params}
    if not given:
        return None
    use_ssl: bool | None = None
    if "s3_use_ssl" in given:
        flag = given["s3_use_ssl"].lower()
        if flag not in ("true", "false", "1", "0"):
            raise ValidationError(f"s3_use_ssl must be true or false, not {flag!r}")
        use_ssl = flag in ("true", "1")
    return S3Settings(
        endpoint=given.get("s3_endpoint") or None,
        region=given.get("s3_region") or None,
        url_style=given.get("s3_url_style") or None,
        use_ssl=use_ssl,
    )


def _parse_sqlite(rest: str) -> LakeConfig:
    path, params = _split_query(rest)
    if not path:
        raise ValidationError(
            "sqlite: needs the catalog file, e.g. sqlite:/srv/lake/catalog.sqlite"
        )
    catalog_path = _local(path)
    data = params.pop("data", None)
    s3 = _s3_settings(params)
    if params:
        raise ValidationError(f"unknown lake parameter(s) for sqlite: {', '.join(sorted(params))}")
    data_path = _data_path(data) if data else str(catalog_path.parent / DATA_DIR)
    return LakeConfig(catalog="sqlite", catalog_path=catalog_path, data_path=data_path, s3=s3)


def _parse_postgres(text: str) -> LakeConfig:
    if "://" in text.split("?", 1)[0]:
        keys, params = _postgres_uri(text)
    else:
        head, params = _split_query(text.split(":", 1)[1])
        keys = parse_dsn(head)
    _check_no_password(keys)
    data = params.pop("data", None)
    s3 = _s3_settings(params)
    keys.update(params)  # libpq options given as URI parameters (sslmode=..., ...)
    _check_no_password(keys)
    if not data:
        raise ValidationError(
            f"a PostgreSQL lake needs its data path: add ?data=s3://bucket/prefix or "
            f"?data=/a/shared/folder to {redact(text)!r}"
        )
    return LakeConfig(catalog="postgres", dsn=format_dsn(keys), data_path=_data_path(data), s3=s3)


def _postgres_uri(text: str) -> tuple[dict[str, str], dict[str, str]]:
    parts = urllib.parse.urlsplit(text)
    if parts.password is not None:
        raise ValidationError(f"{redact(text)!r}: {_NO_PASSWORD_HINT}")
    keys: dict[str, str] = {}
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ValidationError(f"bad PostgreSQL URI {redact(text)!r}: {exc}") from exc
    if host:
        keys["host"] = host
    if port:
        keys["port"] = str(port)
    if parts.path.strip("/"):
        keys["dbname"] = urllib.parse.unquote(parts.path.strip("/"))
    if parts.username:
        keys["user"] = urllib.parse.unquote(parts.username)
    params: dict[str, str] = {}
    for key, val in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in params:
            raise ValidationError(f"lake parameter {key!r} is given twice")
        params[key] = val
    return keys, params


def _check_no_password(keys: Mapping[str, str]) -> None:
    found = sorted(SECRET_KEYWORDS & set(keys))
    if found:
        raise ValidationError(f"the DSN sets {', '.join(found)}: {_NO_PASSWORD_HINT}")


_DSN_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']*)")


def parse_dsn(dsn: str) -> dict[str, str]:
    """libpq keyword/value connection string -> dict (single-quoted values unescaped).

    Raises :class:`ValidationError` for text that is not ``key=value`` pairs (the message
    does not repeat the DSN, which may hold a password)."""
    keys: dict[str, str] = {}
    pos = 0
    dsn = dsn.strip()
    while pos < len(dsn):
        match = _DSN_TOKEN.match(dsn, pos)
        if match is None or match.end() == pos:
            raise ValidationError(
                "a PostgreSQL DSN is libpq key=value pairs separated by spaces, e.g. "
                "postgres:host=127.0.0.1 port=5432 dbname=lake user=ana"
            )
        key, val = match.group(1).lower(), match.group(2)
        if val.startswith("'"):
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        keys[key] = val
        pos = match.end()
    return keys


def format_dsn(keys: Mapping[str, str]) -> str:
    """dict -> normalised libpq keyword DSN (host, hostaddr, port, dbname, user first, then
    the rest sorted; values quoted when they need it)."""
    order = [k for k in _PG_ORDER if k in keys] + sorted(k for k in keys if k not in _PG_ORDER)
    return " ".join(f"{key}={_dsn_value(keys[key])}" for key in order)


def _dsn_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_REDACTIONS = (
    # password='...' / password=... in a libpq DSN (and sslpassword)
    re.compile(r"((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]*)", re.IGNORECASE),
    # scheme://user:password@host
    re.compile(r"(://[^/\s:@]*:)([^@\s/]*)(@)"),
    # SECRET '...' / KEY_ID '...' / SESSION_TOKEN '...' in a CREATE SECRET statement
    re.compile(r"((?:SECRET|KEY_ID|SESSION_TOKEN)\s+)('(?:[^']|'')*')", re.IGNORECASE),
)
_SECRET_ENV = ("PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def redact(text: str, *, env: Mapping[str, str] | None = None) -> str:
    """``text`` with passwords and keys replaced by ``***``: ``password=`` in a DSN,
    ``user:password@`` in a URI, the values of a ``CREATE SECRET``, and the values of
    ``PGPASSWORD`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` (from ``env``, default
    ``os.environ``) wherever they appear."""
    for pattern in _REDACTIONS:
        text = pattern.sub(
            lambda m: m.group(1) + "***" + (m.group(3) if m.lastindex == 3 else ""), text
        )
    source = os.environ if env is None else env
    for name in _SECRET_ENV:
        secret = source.get(name)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _check_identifier(name: str, what: str) -> None:
    """Names the package splices into SQL unquoted (aliases, secret names) are constants;
    this keeps them plain identifiers. Raises :class:`ValidationError`."""
    if not isinstance(name, str) or _IDENTIFIER.fullmatch(name) is None:
        raise ValidationError(f"{what} {name!r:.80} is not a plain SQL identifier")


def sql_string(text: str) -> str:
    """``text`` as a single-quoted SQL literal."""
    return "'" + text.replace("'", "''") + "'"


def s3_secret_sql(
    config: LakeConfig, name: str, *, env: Mapping[str, str] | None = None
) -> str | None:
    """``CREATE OR REPLACE TEMPORARY SECRET`` statement giving DuckDB access to the lake's
    S3 data path, or ``None`` when the data path is local or the environment has no
    ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (then DuckDB's persistent secrets apply).

    The secret is scoped to the data path (it wins over broader secrets for it and touches
    nothing else), lives only in the DuckDB instance that runs the statement, and holds the
    keys from ``env`` (default ``os.environ``) plus :attr:`LakeConfig.s3`, falling back to
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` and ``AWS_REGION`` /
    ``AWS_DEFAULT_REGION``. The returned text holds secrets: never log it (pass any error
    through :func:`redact`).
    """
    _check_identifier(name, "secret name")
    if not config.on_s3:
        return None
    source = os.environ if env is None else env
    key_id, secret = source.get("AWS_ACCESS_KEY_ID"), source.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        return None
    s3 = config.s3 or S3Settings()
    endpoint, use_ssl = s3.endpoint, s3.use_ssl
    if endpoint is None:
        url = source.get("AWS_ENDPOINT_URL_S3") or source.get("AWS_ENDPOINT_URL")
        if url:
            parts = urllib.parse.urlsplit(url if "://" in url else "https://" + url)
            endpoint = parts.netloc
            if use_ssl is None:
                use_ssl = parts.scheme != "http"
    region = s3.region or source.get("AWS_REGION") or source.get("AWS_DEFAULT_REGION")
    # A serverless lake's secret covers its whole prefix: the catalog copy too.
    scope = config.serverless.root + "/" if config.serverless is not None else config.data_path
    options = [
        "TYPE s3",
        f"KEY_ID {sql_string(key_id)}",
        f"SECRET {sql_string(secret)}",
        f"SCOPE {sql_string(scope)}",
    ]
    token = source.get("AWS_SESSION_TOKEN")
    if token:
        options.append(f"SESSION_TOKEN {sql_string(token)}")
    if endpoint:
        options.append(f"ENDPOINT {sql_string(endpoint)}")
    if region:
        options.append(f"REGION {sql_string(region)}")
    if s3.url_style:
        options.append(f"URL_STYLE {sql_string(s3.url_style)}")
    if use_ssl is not None:
        options.append(f"USE_SSL {'true' if use_ssl else 'false'}")
    return f"CREATE OR REPLACE TEMPORARY SECRET {name} ({', '.join(options)})"


def spill_root(env: Mapping[str, str] | None = None) -> pathlib.Path:
    """Folder of the spill files (unsaved changes kept on this machine while a lake is
    unreachable, see :mod:`.spill`): ``$SQLROOMS_NB_SPILL_DIR``, else
    ``$XDG_STATE_HOME/sqlrooms_nb/spill``, else ``~/.local/state/sqlrooms_nb/spill``.

    A state folder, not a cache (cleaners empty caches), and not beside the lake (the lake is
    what may be unreachable or full). Read from ``env`` (default ``os.environ``); absolute,
    ``~`` expanded; nothing is created.
    """
    source = os.environ if env is None else env
    given = source.get(SPILL_ENV)
    if given:
        return _local(given)
    state = source.get("XDG_STATE_HOME")
    base = _local(state) if state else pathlib.Path.home() / ".local" / "state"
    return base / "sqlrooms_nb" / "spill"
