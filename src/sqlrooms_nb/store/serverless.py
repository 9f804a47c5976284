"""Serverless single-user lakes: ``s3://bucket/prefix``, the SQLite catalog kept in the bucket.

No catalog server: the lake's DuckLake catalog is a SQLite file that lives in the bucket next to
the data. A writer downloads it (with ``s3fs``) when it opens the lake, attaches the local copy
like any SQLite catalog (its parquet files go straight to the bucket through DuckDB's
``httpfs``), and uploads a consistent copy (SQLite's backup API) after flushes and on close,
under a single-writer **lease** object. Layout in the bucket::

    s3://bucket/prefix/catalog.sqlite  the last uploaded catalog copy (rollback journal mode);
                                       object metadata: snapshot (DuckLake snapshot id),
                                       writer (the uploading lease's token)
    s3://bucket/prefix/lease.json      the writer's lease; absent when nobody writes
    s3://bucket/prefix/data/           the DuckLake data path (parquet files)

and in the local cache folder of the lake (``cache=``, default
``$XDG_CACHE_HOME/sqlrooms_nb/serverless/<hash of the bucket, prefix and endpoint>``)::

    catalog.sqlite (+ -wal, -shm)      the working copy the writer attaches
    state.json                         the bucket copy it is based on (ETag) and the DuckLake
                                       snapshot id last uploaded
    catalog.sqlite.conflict-<time>     a local copy set aside (see "Opening" below)
    view-*/                            read-only viewers' downloads (removed on release)

Lake string (see :func:`parse_serverless`; every parameter optional)::

    s3://bucket/prefix?s3_endpoint=127.0.0.1:9000&s3_url_style=path&s3_use_ssl=false
        &s3_region=us-east-1&upload_every=20&upload_s=10&lease_s=60&cache=/some/dir
        &readonly=true

Credentials only from the environment (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``; s3fs also follows botocore's usual chain, e.g. ``AWS_PROFILE``); a lake
string holding ``key:secret@`` is refused.

**Opening for writing** (:func:`open_serverless`): take the lease (below), then pick the local
copy: the bucket's copy is downloaded unless the local copy is based on the very same bucket
object (same ETag in ``state.json``); a local copy with DuckLake snapshots never uploaded (the
last writer on this machine died before its upload: ``kill -9``, power loss) is then *ahead* and
is used and uploaded at once. When the bucket's copy changed meanwhile (another machine wrote
after the lease expired) *and* the local copy has changes never uploaded, the two have diverged:
the bucket wins and the local copy is kept as ``catalog.sqlite.conflict-<time>`` (a warning
names it).

**Uploads** (a :class:`~sqlrooms_nb.store.lake.LakeJob` plus a keeper thread): after every
``upload_every`` flushes (default 20) from the writer thread, every ``upload_s`` seconds
(default 10) while there are changes not uploaded, and on the last release of the lake (also
when the room's last flush or a SQL run failed: partial state is uploaded). Each upload copies
the local catalog with the backup API into a temporary file (under the lake's ``write_lock``:
no commit of this process in between), renews the lease and PUTs the copy conditionally on the
ETag of the copy it replaces, so a writer that lost its lease can never overwrite a newer copy.
An upload is skipped when the DuckLake snapshot id has not moved since the last one.

**The lease** (``lease.json``, :class:`Lease`): created with a conditional PUT
(``If-None-Match: *``); renewed (PUT ``If-Match: <our ETag>``) every ``lease_s / 3`` seconds by
the keeper thread, and before every upload; deleted (``If-Match``) on release. A lease held by
someone else is refused with :class:`~sqlrooms_nb.errors.LeaseError` ("... is open elsewhere
since <time> by <user@host pid N> ...") unless it has expired (the bucket's own clock:
``Last-Modified`` + its duration) or its holder is a process of this machine that no longer
exists (same host name and boot id, dead pid), in which case it is taken over with a PUT
``If-Match: <its ETag>``, so of two processes taking over at once exactly one wins. After
writing, the lease is read back and must carry our token. A writer that finds its lease taken
over stops uploading (its local copy keeps the changes) and reports it.

**Read-only viewers** (``?readonly=true``): no lease; the bucket's catalog copy is downloaded
into a temporary folder and attached ``READ_ONLY`` -- a consistent view of the last uploaded
state, however many uploads follow. (DuckDB's sqlite extension can also attach the bucket copy
directly through ``httpfs``: ``ATTACH 'ducklake:sqlite:s3://bucket/prefix/catalog.sqlite' AS
lake (READ_ONLY, DATA_PATH 's3://bucket/prefix/data/')`` works from a plain DuckDB, e.g. the
CLI with an S3 secret. It is not used here: every catalog page then is a ranged GET, and an
upload while the viewer reads replaces the object under it.)

Limitations: one writer per lake at a time (it is a single-user mode: use a PostgreSQL catalog to
share); the S3 server must honour conditional writes (``If-None-Match`` / ``If-Match`` on
PutObject: AWS S3 since 2024, MinIO, moto); a catalog copy is uploaded whole, read into memory
(catalogs are megabytes: inlined update rows, never the snapshots); changes committed after the
last upload are lost if the machine (not just the process) is lost; a DuckDB reading the bucket
copy sees nothing newer than the last upload.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import getpass
import hashlib
import json
import logging
import os
import pathlib
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from ..errors import LeaseError, StorageError, ValidationError
from .config import (
    CATALOG_FILE,
    LakeConfig,
    S3Settings,
    _local,
    _s3_settings,
    _split_query,
    parse_lake,
    redact,
)

if TYPE_CHECKING:
    from .lake import Lake

T = TypeVar("T")
LOG = logging.getLogger("sqlrooms_nb")

__all__ = [
    "CATALOG_OBJECT",
    "DEFAULT_LEASE_S",
    "DEFAULT_UPLOAD_EVERY",
    "DEFAULT_UPLOAD_S",
    "LEASE_OBJECT",
    "Lease",
    "ServerlessSettings",
    "acquire_lease",
    "check_layout",
    "open_serverless",
    "parse_serverless",
    "read_lease",
    "release_lease",
]

CATALOG_OBJECT = "catalog.sqlite"
"""Name of the catalog copy under the lake's prefix."""
LEASE_OBJECT = "lease.json"
"""Name of the lease object under the lake's prefix."""
DATA_FOLDER = "data"
"""DuckLake data path under the lake's prefix."""
STATE_FILE = "state.json"
"""What the local copy is based on, in the cache folder."""
DEFAULT_UPLOAD_EVERY = 20
"""Upload after this many flushes (``upload_every``)."""
DEFAULT_UPLOAD_S = 10.0
"""Upload changes at most this many seconds after the last upload (``upload_s``)."""
DEFAULT_LEASE_S = 60.0
"""Lease duration in seconds (``lease_s``); renewed every third of it."""
MIN_LEASE_S = 1.0
LEASE_FORMAT = 1
ACQUIRE_ATTEMPTS = 6
"""Create / take over attempts of one :func:`acquire_lease` (each loses only to a writer)."""
CLOCK_SLACK = dt.timedelta(seconds=1)
"""``Last-Modified`` has one-second resolution: a lease expires this much later than it says."""
KEEPER_WAIT_S = 0.5
"""How long the keeper thread waits for the lake's ``write_lock`` before trying later."""
_DOWNLOAD_CHUNK = 8 << 20

_PRECONDITION = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_UNSUPPORTED = frozenset({"NotImplemented", "501"})

_active_tokens: set[str] = set()
"""Tokens of the leases this process holds."""
_active_lock = threading.Lock()


# --- settings and the lake string ------------------------------------------------------------


@dataclass(frozen=True)
class ServerlessSettings:
    """The serverless part of a :class:`~sqlrooms_nb.store.config.LakeConfig`.

    ``root``: ``s3://bucket`` or ``s3://bucket/prefix`` (no trailing slash); ``cache``: the local
    cache folder; ``endpoint``: ``host[:port]`` of an S3-compatible server (part of the lake's
    identity); ``upload_every`` (flushes), ``upload_s`` (seconds), ``lease_s`` (seconds): see
    the module doc; ``read_only``: a viewer (no lease, nothing written).
    """

    root: str
    cache: pathlib.Path
    endpoint: str | None = None
    upload_every: int = DEFAULT_UPLOAD_EVERY
    upload_s: float = DEFAULT_UPLOAD_S
    lease_s: float = DEFAULT_LEASE_S
    read_only: bool = False

    @property
    def bucket(self) -> str:
        return self.root[len("s3://") :].split("/", 1)[0]

    def key(self, name: str) -> str:
        """Object key of ``name`` under the prefix."""
        prefix = self.root[len("s3://") :].partition("/")[2]
        return f"{prefix}/{name}" if prefix else name

    def url(self, name: str) -> str:
        return f"{self.root}/{name}"

    @property
    def catalog_url(self) -> str:
        return self.url(CATALOG_OBJECT)

    @property
    def lease_url(self) -> str:
        return self.url(LEASE_OBJECT)

    @property
    def data_path(self) -> str:
        return self.url(DATA_FOLDER) + "/"

    @property
    def remote(self) -> str:
        """The bucket side of the lake as a lake string (no secrets; no ``readonly``)."""
        query = f"?s3_endpoint={self.endpoint}" if self.endpoint else ""
        return self.root + query

    @property
    def identity(self) -> str:
        """:attr:`remote`, plus ``readonly=true`` for a viewer (a lake of its own)."""
        if not self.read_only:
            return self.remote
        return self.remote + ("&" if self.endpoint else "?") + "readonly=true"


def default_cache_dir(remote: str, *, env: Mapping[str, str] | None = None) -> pathlib.Path:
    """``$XDG_CACHE_HOME/sqlrooms_nb/serverless/<16 hex digits of sha256(remote)>`` (``~/.cache``
    without it). Nothing is created."""
    source = os.environ if env is None else env
    base = source.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(remote.encode()).hexdigest()[:16]
    return pathlib.Path(base).resolve() / "sqlrooms_nb" / "serverless" / digest


def parse_serverless(text: str, *, env: Mapping[str, str] | None = None) -> LakeConfig:
    """The :class:`LakeConfig` of a serverless lake string ``s3://bucket[/prefix][?params]``.

    Parameters: ``s3_endpoint``, ``s3_region``, ``s3_url_style``, ``s3_use_ssl`` (as for any S3
    data path), ``upload_every`` (int >= 1), ``upload_s`` (seconds > 0), ``lease_s`` (seconds >=
    1), ``cache`` (local folder), ``readonly`` (``true``/``false``). The config is a SQLite lake
    whose ``catalog_path`` is ``<cache>/catalog.sqlite`` and whose data path is
    ``s3://bucket/prefix/data/``. Nothing is opened or created. Raises :class:`ValidationError`
    for a malformed string, an unknown parameter, or credentials in the string.
    """
    head, params = _split_query(text)
    if not head.lower().startswith("s3://"):
        raise ValidationError(f"a serverless lake is s3://bucket/prefix, not {redact(text)!r}")
    rest = head[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket:
        raise ValidationError(
            f"{redact(text)!r}: a lake string never holds S3 keys: remove them and give them "
            "through AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment"
        )
    prefix = prefix.strip("/")
    if not bucket or "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise ValidationError(f"a serverless lake is s3://bucket/prefix, not {redact(text)!r}")
    s3 = _s3_settings(params)
    upload_every = _number(params, "upload_every", DEFAULT_UPLOAD_EVERY, int, minimum=1)
    upload_s = _number(params, "upload_s", DEFAULT_UPLOAD_S, float, minimum=0.001)
    lease_s = _number(params, "lease_s", DEFAULT_LEASE_S, float, minimum=MIN_LEASE_S)
    read_only = _flag(params, "readonly")
    cache_text = params.pop("cache", "")
    if params:
        raise ValidationError(
            f"unknown lake parameter(s) for s3: {', '.join(sorted(params))} (a lake string "
            "never holds S3 keys: use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        )
    root = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    endpoint = s3.endpoint if s3 is not None else None
    settings = ServerlessSettings(
        root=root,
        cache=pathlib.Path("."),
        endpoint=endpoint,
        upload_every=upload_every,
        upload_s=upload_s,
        lease_s=lease_s,
        read_only=read_only,
    )
    cache = _local(cache_text) if cache_text else default_cache_dir(settings.remote, env=env)
    settings = dataclasses.replace(settings, cache=cache)
    return LakeConfig(
        catalog="sqlite",
        catalog_path=cache / CATALOG_FILE,
        data_path=settings.data_path,
        s3=s3,
        serverless=settings,
    )


def _number(
    params: dict[str, str], name: str, default: T, kind: Callable[[str], T], *, minimum: float
) -> T:
    text = params.pop(name, None)
    if text is None or text == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValidationError(f"{name} must be a number, not {text!r}") from None
    if not value >= minimum:  # type: ignore[operator]
        raise ValidationError(f"{name} must be at least {minimum:g}, not {text!r}")
    return value


def _flag(params: dict[str, str], name: str) -> bool:
    text = params.pop(name, "false").lower()
    if text not in ("true", "false", "1", "0", ""):
        raise ValidationError(f"{name} must be true or false, not {text!r}")
    return text in ("true", "1")


def _settings(config: LakeConfig) -> ServerlessSettings:
    settings = config.serverless
    if settings is None:
        raise ValidationError(f"{config.describe()} is not a serverless (s3://) lake")
    return settings


# --- the S3 side (s3fs) ----------------------------------------------------------------------


class _S3Error(StorageError):
    """An S3 request failed; ``s3_code`` is the S3 error code (``""`` when there was none)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.s3_code = code


def _fs_options(config: LakeConfig, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``s3fs.S3FileSystem`` arguments for the lake's endpoint settings (no credentials: botocore
    reads them from the environment)."""
    source = os.environ if env is None else env
    s3 = config.s3 or S3Settings()
    url: str | None
    if s3.endpoint:
        url = f"{'http' if s3.use_ssl is False else 'https'}://{s3.endpoint}"
    else:
        url = source.get("AWS_ENDPOINT_URL_S3") or source.get("AWS_ENDPOINT_URL") or None
        if url and s3.use_ssl is False and url.startswith("https://"):
            url = "http://" + url[len("https://") :]
    client_config: dict[str, Any] = {
        "connect_timeout": 10,
        "read_timeout": 60,
        "retries": {"max_attempts": 3, "mode": "standard"},
    }
    if s3.url_style:
        client_config["s3"] = {"addressing_style": "path" if s3.url_style == "path" else "virtual"}
    options: dict[str, Any] = {
        "skip_instance_cache": True,
        "use_listings_cache": False,
        "config_kwargs": client_config,
    }
    if url:
        options["endpoint_url"] = url
    region = s3.region or source.get("AWS_REGION") or source.get("AWS_DEFAULT_REGION")
    if region:
        options["client_kwargs"] = {"region_name": region}
    return options


class _Remote:
    """The lake's objects in the bucket, through one ``s3fs.S3FileSystem`` (its botocore client
    and event loop). Every method raises :class:`_S3Error` (a :class:`StorageError`)."""

    def __init__(self, config: LakeConfig) -> None:
        self.settings = _settings(config)
        try:
            import s3fs  # type: ignore[import-untyped]
        except ImportError as exc:
            raise StorageError(
                "a serverless lake (s3://...) needs s3fs: pip install 'sqlrooms_nb[shared]'"
            ) from exc
        try:
            self._fs: Any = s3fs.S3FileSystem(**_fs_options(config))
        except Exception as exc:
            raise StorageError(
                redact(f"cannot set up S3 access to {self.settings.root}: {exc}")
            ) from None
        self._bucket = self.settings.bucket

    def _run(self, doing: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        from fsspec.asyn import sync  # type: ignore[import-untyped]

        try:
            result: T = sync(self._fs.loop, fn, *args, **kwargs)
        except _S3Error:
            raise
        except Exception as exc:
            code = _code(exc)
            text = f"could not {doing}: {type(exc).__name__}: {exc}".rstrip(": ")
            raise _S3Error(redact(text), code) from exc
        return result

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = await self._fs._call_s3(method, Bucket=self._bucket, **kwargs)
        return response

    def head(self, name: str) -> dict[str, Any] | None:
        """``head_object`` of ``name``, ``None`` when there is no such object."""
        try:
            return self._run(
                f"read {self.settings.url(name)}",
                self._call,
                "head_object",
                Key=self.settings.key(name),
            )
        except _S3Error as exc:
            if exc.s3_code in _MISSING:
                return None
            raise

    def get(self, name: str) -> tuple[bytes, dict[str, Any]] | None:
        """Body and ``get_object`` response of ``name``; ``None`` when there is no such object."""

        async def get() -> tuple[bytes, dict[str, Any]]:
            response = await self._call("get_object", Key=self.settings.key(name))
            body = response["Body"]
            try:
                data: bytes = await body.read()
            finally:
                body.close()
            return data, response

        try:
            return self._run(f"read {self.settings.url(name)}", get)
        except _S3Error as exc:
            if exc.s3_code in _MISSING:
                return None
            raise

    def put(
        self,
        name: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """PUT ``name`` (conditionally); returns the new ETag."""
        kwargs: dict[str, Any] = {"Key": self.settings.key(name), "Body": data}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if metadata:
            kwargs["Metadata"] = dict(metadata)
        if name.endswith(".json"):
            kwargs["ContentType"] = "application/json"
        response = self._run(f"write {self.settings.url(name)}", self._call, "put_object", **kwargs)
        return str(response.get("ETag", ""))

    def delete(self, name: str, *, if_match: str | None = None) -> None:
        kwargs: dict[str, Any] = {"Key": self.settings.key(name)}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        self._run(f"delete {self.settings.url(name)}", self._call, "delete_object", **kwargs)

    def download(self, name: str, path: pathlib.Path, *, etag: str) -> int:
        """Write object ``name`` (as long as its ETag is ``etag``) to ``path``; returns its size."""

        async def download() -> int:
            response = await self._call("get_object", Key=self.settings.key(name), IfMatch=etag)
            body = response["Body"]
            size = 0
            try:
                with open(path, "wb") as out:
                    while True:
                        chunk = await body.read(_DOWNLOAD_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        size += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            finally:
                body.close()
            return size

        return self._run(f"download {self.settings.url(name)}", download)


def _code(exc: BaseException) -> str:
    """The S3 error code behind an s3fs / botocore exception (``""`` if none)."""
    for candidate in (exc, exc.__cause__):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            code = str(error.get("Code") or "")
            if code:
                return code
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if status:
                return str(status)
    if isinstance(exc, FileExistsError):
        return "PreconditionFailed"
    if isinstance(exc, FileNotFoundError):
        return "NoSuchKey"
    return ""


def _server_now(response: Mapping[str, Any]) -> dt.datetime:
    """The S3 server's clock from a response's ``Date`` header (this machine's without one)."""
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    text = headers.get("date")
    if isinstance(text, str):
        try:
            return email.utils.parsedate_to_datetime(text).astimezone(dt.timezone.utc)
        except (TypeError, ValueError):
            pass
    return _utcnow()


# --- the lease -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """The single-writer lease of a serverless lake (``lease.json`` in the bucket).

    ``holder``: who holds it (``"user@host pid N"``); ``since``: when it was taken;
    ``expires``: when it lapses unless renewed (by the bucket's clock: the object's
    ``Last-Modified`` + ``duration_s`` + 1 s); ``token``: random id of the holding session;
    ``host`` / ``pid`` / ``boot_id``: the holding process; ``renewed``: its last renewal (its
    own clock); ``etag``: of the lease object when read; ``checked_at``: the bucket's clock
    when it was read. Timestamps are timezone-aware (UTC). Holds no credentials.
    """

    holder: str
    since: dt.datetime
    expires: dt.datetime
    token: str
    host: str = ""
    pid: int = 0
    boot_id: str = ""
    duration_s: float = DEFAULT_LEASE_S
    renewed: dt.datetime | None = None
    etag: str | None = field(default=None, compare=False)
    checked_at: dt.datetime | None = field(default=None, compare=False)

    @property
    def expired(self) -> bool:
        """Whether the lease had lapsed when it was read (``checked_at``; now if unknown)."""
        return (self.checked_at or _utcnow()) >= self.expires

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": LEASE_FORMAT,
                "holder": self.holder,
                "host": self.host,
                "pid": self.pid,
                "boot_id": self.boot_id,
                "token": self.token,
                "since": self.since.isoformat(),
                "renewed": (self.renewed or self.since).isoformat(),
                "expires": self.expires.isoformat(),
                "duration_s": self.duration_s,
            },
            indent=1,
        ).encode()

    @classmethod
    def from_object(cls, data: bytes, response: Mapping[str, Any]) -> Lease:
        """The lease in ``data`` (a ``get_object`` body) with its ETag / clock from ``response``.

        Raises ``ValueError`` for an unreadable lease object."""
        try:
            obj = json.loads(data)
            holder = str(obj["holder"])
            since = _parse_time(obj["since"])
            written_expires = _parse_time(obj["expires"])
            duration = float(obj.get("duration_s", DEFAULT_LEASE_S))
            renewed = _parse_time(obj["renewed"]) if obj.get("renewed") else None
            token = str(obj["token"])
            pid = int(obj.get("pid", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable lease object: {exc}") from exc
        modified = response.get("LastModified")
        if isinstance(modified, dt.datetime):
            expires = modified.astimezone(dt.timezone.utc) + dt.timedelta(seconds=duration)
            expires += CLOCK_SLACK
        else:
            expires = written_expires
        return cls(
            holder=holder,
            since=since,
            expires=expires,
            token=token,
            host=str(obj.get("host", "")),
            pid=pid,
            boot_id=str(obj.get("boot_id", "")),
            duration_s=duration,
            renewed=renewed,
            etag=str(response.get("ETag") or "") or None,
            checked_at=_server_now(response),
        )


def read_lease(config: LakeConfig | str) -> Lease | None:
    """The lease of a serverless lake as it stands in the bucket; ``None`` when nobody holds it
    or the lake is not serverless (``s3://...``; a lake string is parsed).

    Raises :class:`StorageError` when the bucket cannot be reached or the lease object is
    unreadable. Blocks for one or two S3 requests.
    """
    config = parse_lake(config)
    if config.serverless is None:
        return None
    remote = _Remote(config)
    lease, _etag = _read_lease_object(remote)
    if lease is None and _etag is not None:
        raise StorageError(f"the lease object {config.serverless.lease_url} is unreadable")
    return lease


def acquire_lease(config: LakeConfig, *, remote: _Remote | None = None) -> Lease:
    """Take the lease of serverless lake ``config`` for this process (see the module doc).

    Returns the :class:`Lease` (with its ETag). Raises :class:`LeaseError` when another process
    holds a lease that has not expired; :class:`StorageError` when the bucket cannot be
    reached or the server does not honour conditional writes.
    """
    settings = _settings(config)
    remote = remote if remote is not None else _Remote(config)
    token = uuid.uuid4().hex
    with _active_lock:  # before the first PUT: this process's other threads see it as live
        _active_tokens.add(token)
    try:
        return _acquire(remote, settings, token)
    except BaseException:
        with _active_lock:
            _active_tokens.discard(token)
        raise


def _acquire(remote: _Remote, settings: ServerlessSettings, token: str) -> Lease:
    user, host, boot_id, pid = _me()
    for _ in range(ACQUIRE_ATTEMPTS):
        now = _utcnow()
        mine = Lease(
            holder=f"{user}@{host} pid {pid}",
            since=now,
            expires=now + dt.timedelta(seconds=settings.lease_s),
            token=token,
            host=host,
            pid=pid,
            boot_id=boot_id,
            duration_s=settings.lease_s,
            renewed=now,
        )
        try:
            etag = remote.put(LEASE_OBJECT, mine.to_json(), if_none_match=True)
        except _S3Error as exc:
            if exc.s3_code not in _PRECONDITION:
                raise _unsupported(exc, settings) from exc
        else:
            return _confirm(remote, settings, dataclasses.replace(mine, etag=etag))
        current, found = _read_lease_object(remote)
        if found is None:
            continue  # released meanwhile: create it again
        if current is not None and not current.expired and not _holder_gone(current):
            raise _lease_error(settings, current)
        try:
            taken = remote.put(LEASE_OBJECT, mine.to_json(), if_match=found)
        except _S3Error as exc:
            if exc.s3_code in _PRECONDITION or exc.s3_code in _MISSING:
                continue  # another process was faster: look again
            raise _unsupported(exc, settings) from exc
        lease = _confirm(remote, settings, dataclasses.replace(mine, etag=taken))
        if current is None:
            LOG.warning("[sqlrooms_nb] replaced an unreadable lease object %s", settings.lease_url)
        else:
            why = "its process is gone" if not current.expired else "it expired"
            LOG.warning(
                "[sqlrooms_nb] took over the lease of %s held by %s since %s (%s at %s)",
                settings.root,
                current.holder,
                _fmt(current.since),
                why,
                _fmt(current.expires),
            )
        return lease
    raise StorageError(
        f"could not take the lease {settings.lease_url}: other processes kept replacing it "
        f"({ACQUIRE_ATTEMPTS} attempts)"
    )


def release_lease(config: LakeConfig, lease: Lease) -> bool:
    """Give back ``lease`` (from :func:`acquire_lease`): delete the lease object if it still is
    that lease (``If-Match`` its ETag). Returns whether it was deleted (``False``: it had been
    taken over or removed). Raises :class:`StorageError` if the bucket cannot be reached.
    """
    settings = _settings(config)
    remote = _Remote(config)
    with _active_lock:
        _active_tokens.discard(lease.token)
    try:
        remote.delete(LEASE_OBJECT, if_match=lease.etag)
    except _S3Error as exc:
        if exc.s3_code in _PRECONDITION or exc.s3_code in _MISSING:
            return False
        raise _unsupported(exc, settings) from exc
    return True


def _confirm(remote: _Remote, settings: ServerlessSettings, lease: Lease) -> Lease:
    """Read the lease back: it must be ours (a server ignoring ``If-None-Match`` shows here)."""
    current, etag = _read_lease_object(remote)
    if current is None or current.token != lease.token:
        if current is not None:
            raise _lease_error(settings, current)
        raise StorageError(f"the lease {settings.lease_url} vanished right after it was written")
    return dataclasses.replace(lease, etag=etag or lease.etag, checked_at=current.checked_at)


def _read_lease_object(remote: _Remote) -> tuple[Lease | None, str | None]:
    """(lease, ETag) of the lease object: (None, None) if there is none, (None, etag) if it is
    unreadable."""
    got = remote.get(LEASE_OBJECT)
    if got is None:
        return None, None
    data, response = got
    etag = str(response.get("ETag") or "")
    try:
        return Lease.from_object(data, response), etag
    except ValueError:
        return None, etag


def _lease_error(settings: ServerlessSettings, lease: Lease) -> LeaseError:
    return LeaseError(
        f"this room's lake {settings.root} is open elsewhere since {_fmt(lease.since)} by "
        f"{lease.holder}; its lease ({settings.lease_url}) expires at {_fmt(lease.expires)} "
        "unless that process renews it. Close the room there, or open the lake read-only "
        "(add ?readonly=true to the lake string) to see its last uploaded state, or wait: an "
        "expired lease is taken over when the lake is opened",
        holder=lease.holder,
        since=lease.since,
        expires=lease.expires,
    )


def _unsupported(exc: _S3Error, settings: ServerlessSettings) -> StorageError:
    if exc.s3_code in _UNSUPPORTED:
        return StorageError(
            f"{exc}\nthe S3 server of {settings.root} does not support conditional writes "
            "(If-None-Match / If-Match), which the serverless lease needs"
        )
    return exc


def _holder_gone(lease: Lease) -> bool:
    """Whether ``lease`` belongs to a process of this machine (same host name and boot) that
    no longer runs, or to an earlier session of this process."""
    _user, host, boot_id, pid = _me()
    if not boot_id or lease.host != host or lease.boot_id != boot_id:
        return False
    if lease.pid == pid:
        with _active_lock:
            return lease.token not in _active_tokens
    return not _pid_alive(lease.pid)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    try:  # a zombie (killed, not yet reaped) is gone too
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _me() -> tuple[str, str, str, int]:
    """(user, host name, boot id, pid) of this process (boot id ``""`` where unknown)."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            boot_id = file.read().strip()
    except OSError:
        boot_id = ""
    return user, socket.gethostname(), boot_id, os.getpid()


# --- opening ---------------------------------------------------------------------------------


def open_serverless(config: LakeConfig, create: Callable[[LakeConfig], Lake]) -> Lake:
    """Open serverless lake ``config``: a writer takes the lease and prepares the local
    catalog copy, a viewer downloads the bucket's copy; then ``create(config)`` (the lake's
    usual SQLite path) attaches it, and the writer's uploads start.

    Raises :class:`LeaseError` when another process writes the lake, :class:`StorageError`
    when the bucket or the cache folder cannot be used (or, for a viewer, the bucket has no
    catalog yet), and whatever ``create`` raises (the lease is then given back).
    """
    settings = _settings(config)
    if settings.read_only:
        return _open_viewer(config, create)
    writer = _Writer.begin(config)
    try:
        lake = create(config)
    except BaseException:
        writer.finish(release_lease=True)
        raise
    writer.start(lake)
    return lake


def check_layout(lake: Lake) -> None:
    """For a read-only lake (nothing may be created): check that it holds the project's tables
    in a layout this version reads. Raises :class:`StorageError`."""
    from .lake import LAKE_SCHEMA_VERSION

    cur = lake.cursor()
    try:
        rows = cur.execute(
            f"SELECT value FROM {lake.table('lake_meta')} WHERE key = 'schema_version'"
        ).fetchall()
    except duckdb.CatalogException:
        raise StorageError(
            f"{lake.config.describe()} holds no sqlrooms_nb tables (never opened by a writer?)"
        ) from None
    finally:
        cur.close()
    versions = {str(row[0]) for row in rows}
    if not versions or not versions <= {str(v) for v in range(1, LAKE_SCHEMA_VERSION + 1)}:
        raise StorageError(
            f"the lake {lake.config.describe()} has table layout version "
            f"{', '.join(sorted(versions)) or 'none'}, which this sqlrooms_nb (layout "
            f"{LAKE_SCHEMA_VERSION}) cannot read"
        )


def _open_viewer(config: LakeConfig, create: Callable[[LakeConfig], Lake]) -> Lake:
    settings = _settings(config)
    remote = _Remote(config)
    head = remote.head(CATALOG_OBJECT)
    if head is None:
        raise StorageError(
            f"{settings.catalog_url} does not exist: nothing to view until a writer has opened "
            "the lake (without ?readonly=true) and closed it or uploaded"
        )
    _mkdir(settings.cache)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="view-", dir=settings.cache))
    try:
        local = folder / CATALOG_FILE
        began = time.monotonic()
        size = remote.download(CATALOG_OBJECT, local, etag=str(head["ETag"]))
        LOG.debug(
            "[sqlrooms_nb] downloaded %s (%d bytes) in %.3f s",
            settings.catalog_url,
            size,
            time.monotonic() - began,
        )
        lake = create(dataclasses.replace(config, catalog_path=local))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    lake.add_job(_ViewerCleanup(folder))
    return lake


class _ViewerCleanup:
    """Removes a viewer's download when the lake is released."""

    name = "serverless viewer cleanup"

    def __init__(self, folder: pathlib.Path) -> None:
        self._folder = folder

    def due(self, flushes: int, now: float) -> bool:
        return False

    def run(self, cur: duckdb.DuckDBPyConnection, final: bool) -> None:
        if final:
            shutil.rmtree(self._folder, ignore_errors=True)


# --- the writer ------------------------------------------------------------------------------


class _Writer:
    """The serverless side of one lake open for writing: lease, local copy, uploads."""

    def __init__(self, config: LakeConfig, remote: _Remote, lease: Lease) -> None:
        self.config = config
        self.settings = _settings(config)
        assert config.catalog_path is not None
        self.local = config.catalog_path
        self.remote = remote
        self.lease = lease
        self.base_etag: str | None = None
        """ETag of the bucket copy the local copy is based on (``None``: no bucket copy)."""
        self.uploaded: int | None = None
        """DuckLake snapshot id of the bucket copy (``None``: none, or unknown)."""
        self.uploads = 0
        self.flushes_at_upload = 0
        self._lock = threading.Lock()  # the lease, uploads
        self._started = False  # between start() and finish(): uploads allowed
        self._lake: Lake | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed_at = time.monotonic()
        self._uploaded_at = time.monotonic()

    # --- lifetime ------------------------------------------------------------------------------

    @classmethod
    def begin(cls, config: LakeConfig) -> _Writer:
        """Take the lease and make the local copy the one to attach (see the module doc)."""
        remote = _Remote(config)
        lease = acquire_lease(config, remote=remote)
        writer = cls(config, remote, lease)
        try:
            writer._prepare_local()
        except BaseException:
            writer.finish(release_lease=True)
            raise
        return writer

    def start(self, lake: Lake) -> None:
        """After the lake attached the local copy: upload it if the bucket lacks its changes,
        then run uploads between flushes and the keeper thread. Never raises."""
        self._lake = lake
        self._started = True
        try:
            with lake.write_lock:
                if self.upload():
                    LOG.info("[sqlrooms_nb] uploaded the catalog of %s", self.settings.root)
        except Exception as exc:
            LOG.warning(
                "[sqlrooms_nb] could not upload the catalog of %s yet (tried again later): %s",
                self.settings.root,
                redact(str(exc)),
            )
        lake.add_job(_UploadJob(self))
        self._thread = threading.Thread(
            target=self._keep, name="sqlrooms_nb-serverless", daemon=True
        )
        self._thread.start()

    def finish(self, *, release_lease: bool) -> None:
        """Stop the keeper and give the lease back (``release_lease``; never a lost one)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        with self._lock:
            self._started = False
            if release_lease and self._lost is None:
                try:
                    self._delete_lease()
                except StorageError as exc:
                    LOG.warning(
                        "[sqlrooms_nb] could not give back the lease %s (it expires by itself "
                        "at %s): %s",
                        self.settings.lease_url,
                        _fmt(self.lease.expires),
                        exc,
                    )
            with _active_lock:
                _active_tokens.discard(self.lease.token)

    # --- the local copy ------------------------------------------------------------------------

    def _prepare_local(self) -> None:
        settings, local = self.settings, self.local
        _mkdir(settings.cache)
        state = _load_state(settings)
        head = self.remote.head(CATALOG_OBJECT)
        local_snapshot: int | None = None
        has_local = local.exists()
        if has_local:
            try:
                local_snapshot = _settle(local)
            except sqlite3.DatabaseError as exc:
                aside = _set_aside(local)
                LOG.warning(
                    "[sqlrooms_nb] the local catalog copy %s is unreadable (%s): moved to %s",
                    local,
                    exc,
                    aside,
                )
                has_local = False
        if head is None:
            if has_local:
                if state is not None and state.get("etag"):
                    LOG.warning(
                        "[sqlrooms_nb] %s is gone from the bucket: uploading the local copy %s",
                        settings.catalog_url,
                        local,
                    )
                self.base_etag, self.uploaded = None, None
            return
        etag = str(head["ETag"])
        if has_local and state is not None and state.get("etag") == etag:
            self.base_etag = etag
            self.uploaded = _int_or_none(state.get("snapshot"))
            if local_snapshot != self.uploaded:
                LOG.warning(
                    "[sqlrooms_nb] the local catalog copy %s has changes the bucket lacks "
                    "(the last session ended before uploading them): using it, uploading them",
                    local,
                )
            return
        if has_local and local_snapshot is not None:
            clean = state is not None and _int_or_none(state.get("snapshot")) == local_snapshot
            if not clean:
                aside = _set_aside(local)
                LOG.warning(
                    "[sqlrooms_nb] the local catalog copy of %s has changes never uploaded, but "
                    "another writer has replaced the bucket's copy since: using the bucket's; "
                    "the local copy is kept as %s",
                    settings.root,
                    aside,
                )
        self._download(etag)

    def _download(self, etag: str) -> None:
        settings, local = self.settings, self.local
        tmp = local.with_name(f".download-{uuid.uuid4().hex}.sqlite")
        began = time.monotonic()
        try:
            size = self.remote.download(CATALOG_OBJECT, tmp, etag=etag)
            _remove_sidecars(local)
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)
        self.base_etag = etag
        self.uploaded = _settle(local)
        _save_state(settings, etag, self.uploaded)
        LOG.debug(
            "[sqlrooms_nb] downloaded %s (%d bytes) in %.3f s",
            settings.catalog_url,
            size,
            time.monotonic() - began,
        )

    # --- uploads -------------------------------------------------------------------------------

    def upload(self) -> bool:
        """Upload the local copy if it changed since the last upload; the caller holds the
        lake's ``write_lock``. Returns whether it uploaded. Raises StorageError / LeaseError."""
        with self._lock:
            copy = self._copy()
            if copy is None:
                return False
            self._push(*copy)
            return True

    def _copy(self) -> tuple[bytes, int | None] | None:
        """A consistent copy of the local catalog and its DuckLake snapshot id, ``None`` if
        nothing changed. Holds ``_lock``; the lake's ``write_lock`` is held by the caller."""
        if self._lost is not None:
            raise StorageError(self._lost)
        if not self._started:
            return None
        raw = self.local.with_name(f".upload-{self.lease.token}.raw.sqlite")
        tmp = self.local.with_name(f".upload-{self.lease.token}.sqlite")
        try:
            _copy_files(self.local, raw)
            src = sqlite3.connect(raw)  # a file of its own: replays the copied WAL
            try:
                snapshot = _snapshot_id(src)
                if snapshot == self.uploaded and self.base_etag is not None:
                    return None
                _backup(src, tmp)
            finally:
                src.close()
            return tmp.read_bytes(), snapshot
        finally:
            _remove_with_sidecars(raw)
            tmp.unlink(missing_ok=True)

    def _push(self, data: bytes, snapshot: int | None) -> None:
        """Renew the lease, then PUT ``data`` over the copy it replaces (holds ``_lock``)."""
        began = time.monotonic()
        self._renew()
        metadata = {"snapshot": str(snapshot), "writer": self.lease.token}
        try:
            etag = self._put_catalog(data, metadata)
        except _S3Error as exc:
            if exc.s3_code not in _PRECONDITION:
                raise
            head = self.remote.head(CATALOG_OBJECT)
            if head is None or (head.get("Metadata") or {}).get("writer") != self.lease.token:
                self._lost = (
                    f"the catalog copy {self.settings.catalog_url} was replaced by another "
                    f"writer: this process stops uploading; its changes stay in {self.local}"
                )
                raise StorageError(self._lost) from exc
            # Our own earlier upload whose answer was lost: replace it.
            self.base_etag = str(head["ETag"])
            etag = self._put_catalog(data, metadata)
        self.base_etag, self.uploaded = etag, snapshot
        self.uploads += 1
        self._uploaded_at = time.monotonic()
        _save_state(self.settings, etag, snapshot)
        LOG.debug(
            "[sqlrooms_nb] uploaded %s (%d bytes, snapshot %s) in %.3f s",
            self.settings.catalog_url,
            len(data),
            snapshot,
            time.monotonic() - began,
        )

    def _put_catalog(self, data: bytes, metadata: Mapping[str, str]) -> str:
        if self.base_etag is None:
            return self.remote.put(CATALOG_OBJECT, data, if_none_match=True, metadata=metadata)
        return self.remote.put(CATALOG_OBJECT, data, if_match=self.base_etag, metadata=metadata)

    # --- the lease -----------------------------------------------------------------------------

    def _renew(self) -> None:
        """Extend our lease (holds ``_lock``). Raises LeaseError when it is no longer ours."""
        if self._lost is not None:
            raise StorageError(self._lost)
        now = _utcnow()
        renewed = dataclasses.replace(
            self.lease, renewed=now, expires=now + dt.timedelta(seconds=self.settings.lease_s)
        )
        try:
            etag = self.remote.put(LEASE_OBJECT, renewed.to_json(), if_match=self.lease.etag)
        except _S3Error as exc:
            if exc.s3_code not in _PRECONDITION and exc.s3_code not in _MISSING:
                raise
            try:
                current, _etag = _read_lease_object(self.remote)
            except StorageError:
                current = None
            who = f" by {current.holder} since {_fmt(current.since)}" if current else ""
            self._lost = (
                f"lost the lease of {self.settings.root}: it was taken over{who} (this process "
                f"did not renew it in time); uploads stopped, the changes since the last "
                f"upload stay in {self.local}"
            )
            self._stop.set()
            raise LeaseError(
                self._lost,
                holder=current.holder if current else "",
                since=current.since if current else None,
                expires=current.expires if current else None,
            ) from exc
        self.lease = dataclasses.replace(renewed, etag=etag)
        self._renewed_at = time.monotonic()

    def _delete_lease(self) -> None:
        try:
            self.remote.delete(LEASE_OBJECT, if_match=self.lease.etag)
        except _S3Error as exc:
            if exc.s3_code in _MISSING:
                return
            if exc.s3_code in _PRECONDITION:
                LOG.warning(
                    "[sqlrooms_nb] the lease %s is no longer ours: left in place",
                    self.settings.lease_url,
                )
                return
            if exc.s3_code not in _UNSUPPORTED and exc.s3_code not in ("InvalidArgument",):
                raise
            current, _etag = _read_lease_object(self.remote)  # no conditional delete here
            if current is not None and current.token == self.lease.token:
                self.remote.delete(LEASE_OBJECT)

    # --- the keeper thread ---------------------------------------------------------------------

    def _keep(self) -> None:
        """Renew the lease every third of its duration; upload changes every ``upload_s``."""
        settings = self.settings
        tick = min(1.0, settings.lease_s / 6, settings.upload_s)
        while not self._stop.wait(tick):
            now = time.monotonic()
            try:
                if now - self._renewed_at >= settings.lease_s / 3:
                    with self._lock:
                        if self._stop.is_set():
                            return
                        self._renew()
                if now - self._uploaded_at >= settings.upload_s:
                    self._upload_in_background()
            except LeaseError as exc:
                LOG.error("[sqlrooms_nb] %s", exc)
                return
            except Exception as exc:
                LOG.warning(
                    "[sqlrooms_nb] serverless lake %s: %s (tried again later)",
                    settings.root,
                    redact(str(exc)),
                )

    def _upload_in_background(self) -> None:
        lake = self._lake
        if lake is None:
            return
        with self._lock:
            if self._stop.is_set() or not self._started or self._lost is not None:
                return
            # Lock order elsewhere is write_lock, then _lock: wait briefly, never block.
            if not lake.write_lock.acquire(timeout=KEEPER_WAIT_S):
                return
            try:
                copy = self._copy()
            finally:
                lake.write_lock.release()
            if copy is None:
                self._uploaded_at = time.monotonic()
            else:
                self._push(*copy)


class _UploadJob:
    """The upload as a :class:`~sqlrooms_nb.store.lake.LakeJob`: every ``upload_every``
    flushes, and on the last release (then the lease is given back, unless the upload
    failed: the lease then lapses by itself, and the local copy is uploaded at the next
    open on this machine)."""

    name = "serverless upload"

    def __init__(self, writer: _Writer) -> None:
        self._writer = writer
        self._flushes = 0

    def due(self, flushes: int, now: float) -> bool:
        self._flushes = flushes
        return flushes - self._writer.flushes_at_upload >= self._writer.settings.upload_every

    def run(self, cur: duckdb.DuckDBPyConnection, final: bool) -> None:
        writer = self._writer
        if not final:
            writer.upload()
            writer.flushes_at_upload = self._flushes
            return
        uploaded = False
        try:
            writer.upload()
            uploaded = True
        except Exception as exc:
            LOG.warning(
                "[sqlrooms_nb] the last changes of %s were not uploaded (%s): they stay in %s "
                "and are uploaded when the lake is next opened on this machine (set aside "
                "instead if another writer has replaced the bucket's copy); the lease is left "
                "to lapse at %s",
                writer.settings.root,
                redact(str(exc)),
                writer.local,
                _fmt(writer.lease.expires),
            )
            raise
        finally:
            writer.finish(release_lease=uploaded)


# --- local files -----------------------------------------------------------------------------


def _copy_files(path: pathlib.Path, dst: pathlib.Path, attempts: int = 20) -> None:
    """Copy the local catalog and its WAL, byte for byte, to ``dst`` (and ``dst``-wal).

    Python's ``sqlite3`` never opens the live catalog while DuckDB has it: that would be a
    second copy of SQLite in the process, which does not see DuckDB's POSIX locks, may take
    itself for the only user and truncate the ``-shm`` index DuckDB's copy reads mapped (SIGBUS;
    https://www.sqlite.org/howtocorrupt.html, section 2.2.1). The caller holds the lake's
    ``write_lock`` (no commit); a checkpoint can still move pages from the WAL into the file
    when a reader's connection closes, so the copy is taken again until both files are
    unchanged across it. Raises StorageError after ``attempts`` tries.
    """
    wal = path.with_name(path.name + "-wal")
    dst_wal = dst.with_name(dst.name + "-wal")

    def state() -> tuple[tuple[int, int, int] | None, ...]:
        out: list[tuple[int, int, int] | None] = []
        for f in (path, wal):
            try:
                st = f.stat()
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    for _ in range(attempts):
        _remove_with_sidecars(dst)
        before = state()
        shutil.copyfile(path, dst)
        try:
            shutil.copyfile(wal, dst_wal)
        except FileNotFoundError:
            pass
        if state() == before:
            return
        time.sleep(0.01)
    raise StorageError(f"the local catalog {path} kept changing while it was being copied")


def _remove_with_sidecars(path: pathlib.Path) -> None:
    path.unlink(missing_ok=True)
    _remove_sidecars(path)


def _snapshot_id(con: sqlite3.Connection) -> int | None:
    """The latest DuckLake snapshot id of a catalog (``None`` for a file without one)."""
    try:
        row = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshot").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return int(row[0]) if row and row[0] is not None else None


def _settle(path: pathlib.Path) -> int | None:
    """Open the catalog alone (nothing else has it open: the lease is ours, the lake not yet
    attached), which replays a WAL left by a writer that died, and return its snapshot id.
    Closing checkpoints the WAL into the file. Raises sqlite3.DatabaseError if unreadable."""
    con = sqlite3.connect(path)
    try:
        return _snapshot_id(con)
    finally:
        con.close()


def _backup(src: sqlite3.Connection, dst_path: pathlib.Path) -> None:
    """Copy ``src`` (one read transaction: a consistent state) into a new file in rollback
    journal mode (so it opens anywhere, read-only too, without -wal / -shm files)."""
    dst_path.unlink(missing_ok=True)
    dst = sqlite3.connect(dst_path)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()


def _remove_sidecars(path: pathlib.Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _set_aside(path: pathlib.Path) -> pathlib.Path:
    stamp = _utcnow().strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.conflict-{stamp}")
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    return aside


def _load_state(settings: ServerlessSettings) -> dict[str, Any] | None:
    try:
        data = json.loads((settings.cache / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("remote") != settings.remote:
        return None
    return data


def _save_state(settings: ServerlessSettings, etag: str, snapshot: int | None) -> None:
    state = {
        "remote": settings.remote,
        "etag": etag,
        "snapshot": snapshot,
        "saved_at": _utcnow().isoformat(),
    }
    path = settings.cache / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc}") from exc


def _mkdir(folder: pathlib.Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the lake's cache folder {folder}: {exc}") from exc


def _int_or_none(value: object) -> int | None:
    if isinstance(value, (int, str)) and str(value).lstrip("-").isdigit():
        return int(value)
    return None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _parse_time(text: object) -> dt.datetime:
    if not isinstance(text, str):
        raise ValueError(f"not a time: {text!r}")
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _fmt(when: dt.datetime | None) -> str:
    if when is None:
        return "an unknown time"
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
