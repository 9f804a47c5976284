"""Spill files: a writer's unflushed Loro updates, kept on the kernel's local disk while the lake
cannot be written, and replayed by the next kernel that opens the room/branch after a crash.

When a flush fails, the :class:`~sqlrooms_nb.store.persister.Persister` appends what the
document holds beyond what the lake and the spill already have to its spill file (write-ahead:
appended and fsynced before the failure is reported), and keeps doing so every
``FlushPolicy.max_delay_s`` while the outage lasts. When the lake is back the normal flush
writes everything beyond the saved version, and only after that commit is the spill removed.
If the kernel dies meanwhile, :func:`~sqlrooms_nb.store.recovery.recover_room` finds the file
(an *orphan*), imports its updates after the lake's rows (Loro import is idempotent: what did
reach the lake adds nothing, so nothing is written twice) and the new writer flushes and then
removes it.

Where (:func:`~sqlrooms_nb.store.config.spill_root`): ``$SQLROOMS_NB_SPILL_DIR``, else the
user's state folder (``$XDG_STATE_HOME/sqlrooms_nb/spill``, default
``~/.local/state/sqlrooms_nb/spill``) — not beside the lake, which is the thing that may be
unreachable, and not a cache folder, which cleaners empty. Layout::

    <root>/<key>/<writer>.spill     key: 16 hex digits, blake2b of (lake identity, room, branch)
                                    writer: the writer's id (the kernel replica's peer id)

Names never reach the path (only the hash does); each file's header names its lake, room,
branch and writer, and a claim checks them. A file is created as ``<writer>.spill.new``,
locked, then renamed (a crash in between leaves that small file, holding no change, behind).

An embedded lake whose disk is full usually shares that disk with the spill root: then the
spill append fails too, the changes stay in the kernel's memory only (the writer keeps retrying
both, and views are told how many changes are not on disk), and they are lost if the kernel
dies before space is freed. Point ``SQLROOMS_NB_SPILL_DIR`` at another file system to avoid
that.

Format (version 1)::

    file    = MAGIC (8 bytes: b"SNBSPL1\\n") record*
    record  = length (u32 LE, bytes of payload) crc (u32 LE, zlib.crc32 of length+payload)
              payload
    payload = kind (1 byte) body: b"H" + JSON header {format, lake, room, branch, writer, pid,
              host, created_at} (the first record), or b"U" + one Loro update (ExportMode.Updates)

Each append is one ``write`` then ``fsync``; a failed append is truncated away. A crash
mid-append leaves a *torn* last record (shorter than its length says), which readers detect
and ignore: it was never reported as kept. A record whose checksum does not match (a flipped
byte) stops the read there: the records before it are used, the file is kept aside as
``<writer>.spill.corrupt`` for inspection instead of being removed.

Several kernels: each writer has its own file and holds an exclusive ``flock`` on it while it
lives, released by the OS when the process dies however it dies. A kernel opening a room only
claims files it can lock (orphans; a live kernel's file is skipped), checks the locked file is
still the one at that path (it may have been removed by another claimer meanwhile), and holds
the lock until it has flushed and removed the file: two kernels opening the room at once never
both replay one file. Spill files are local: only a kernel on the same machine (same root) can
replay them. Without ``fcntl`` (Windows) there is no locking: run one kernel per room there.

Threads: a :class:`SpillFile` belongs to its persister's writer thread; :class:`SpillDir` and
:class:`Orphan` are used by whoever recovers the room, then handed to the writer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loro import LoroDoc, VersionVector

from ..errors import SpillError, ValidationError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking (see the module doc)
    fcntl = None  # type: ignore[assignment]

LOG = logging.getLogger("sqlrooms_nb")

MAGIC = b"SNBSPL1\n"
"""First 8 bytes of every spill file (format version 1)."""
FORMAT = 1
"""Spill file format version, recorded in the header record."""
SUFFIX = ".spill"
"""File name suffix of a spill file."""
CORRUPT_SUFFIX = ".corrupt"
"""Appended to a spill file whose records do not all verify, kept for inspection."""
MAX_RECORD_BYTES = 1 << 30
"""Largest record a reader accepts, bytes (a larger length field is treated as damage)."""

_FRAME = struct.Struct("<II")
_HEADER = b"H"
_UPDATE = b"U"


def spill_key(lake: str, room: str, branch: str) -> str:
    """Folder name of one room/branch of one lake: 16 hex digits (blake2b of the three,
    NUL-separated); ``lake`` is the lake's identity text (no secrets in it)."""
    digest = hashlib.blake2b(f"{lake}\0{room}\0{branch}".encode(), digest_size=8)
    return digest.hexdigest()


def _check_writer(writer: str) -> str:
    if not (writer.isascii() and writer.isdigit() and 0 < len(writer) <= 20):
        raise ValidationError(f"a spill file's writer id is a decimal peer id, not {writer!r}")
    return writer


def frame(kind: bytes, body: bytes) -> bytes:
    """One record: length, checksum, then ``kind`` (one byte) + ``body``."""
    payload = kind + body
    length = struct.pack("<I", len(payload))
    return length + struct.pack("<I", zlib.crc32(length + payload)) + payload


@dataclass(frozen=True)
class SpillContents:
    """What a spill file holds, as :func:`read_spill` found it.

    ``header``: the header record's JSON (``None`` if it is missing or damaged);
    ``updates``: the Loro updates of the valid records, in file order; ``valid_bytes``: length
    of the valid prefix; ``problem``: ``None`` when every byte was read, else what stopped the
    read (with its byte offset); ``torn``: the problem is a truncated last record, as a crash
    mid-append leaves (expected and harmless: that record was never reported as kept).
    """

    header: dict[str, Any] | None
    updates: list[bytes]
    valid_bytes: int
    problem: str | None = None
    torn: bool = False

    @property
    def corrupt(self) -> bool:
        """Whether a damaged record (not just a torn tail) stopped the read."""
        return self.problem is not None and not self.torn

    def version(self) -> VersionVector:
        """Version vector of the updates' ends, merged (what importing them reaches at most).
        Raises :class:`SpillError` if Loro cannot decode one (it passed its checksum)."""
        vv = VersionVector()  # type: ignore[no-untyped-call]  # untyped in the stubs
        for blob in self.updates:
            try:
                vv.merge(LoroDoc.decode_import_blob_meta(blob, False).partial_end_vv)
            except BaseException as exc:  # loro raises BaseException subclasses
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                raise SpillError(f"a spill record is not a Loro update: {exc}") from exc
        return vv


def read_spill(data: bytes) -> SpillContents:
    """Parse the bytes of a spill file (see the module doc); never raises.

    Reading stops at the first record that is short (``torn``), fails its checksum, has an
    unknown kind, or (first record) is not a valid header; everything before it is returned.
    """
    if not data:
        return SpillContents(None, [], 0)
    if len(data) < len(MAGIC) and MAGIC.startswith(data):
        return SpillContents(None, [], 0, "torn magic bytes", torn=True)
    if not data.startswith(MAGIC):
        return SpillContents(None, [], 0, "not a spill file (wrong magic bytes)")
    pos = len(MAGIC)
    header: dict[str, Any] | None = None
    updates: list[bytes] = []
    while pos < len(data):
        if len(data) - pos < _FRAME.size:
            return SpillContents(header, updates, pos, f"torn record at byte {pos}", torn=True)
        length, crc = _FRAME.unpack_from(data, pos)
        if length > MAX_RECORD_BYTES or length == 0:
            return SpillContents(header, updates, pos, f"bad record length {length} at {pos}")
        end = pos + _FRAME.size + length
        if end > len(data):
            return SpillContents(header, updates, pos, f"torn record at byte {pos}", torn=True)
        payload = data[pos + _FRAME.size : end]
        if zlib.crc32(data[pos : pos + 4] + payload) != crc:
            return SpillContents(header, updates, pos, f"checksum mismatch in record at {pos}")
        kind, body = payload[:1], payload[1:]
        if header is None:
            parsed = _parse_header(body) if kind == _HEADER else None
            if parsed is None:
                return SpillContents(None, [], pos, f"no valid header record at {pos}")
            header = parsed
        elif kind == _UPDATE:
            updates.append(body)
        else:
            return SpillContents(header, updates, pos, f"unknown record kind {kind!r} at {pos}")
        pos = end
    return SpillContents(header, updates, pos)


def _parse_header(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) and value.get("format") == FORMAT else None


def read_spill_file(path: str | os.PathLike[str]) -> SpillContents:
    """:func:`read_spill` of a file. Raises :class:`SpillError` if it cannot be read."""
    try:
        return read_spill(pathlib.Path(path).read_bytes())
    except OSError as exc:
        raise SpillError(f"cannot read the spill file {path}: {exc}") from exc


def _fsync_dir(folder: pathlib.Path) -> None:
    """Make a new or removed directory entry durable (best effort where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _lock(fd: int) -> bool:
    """Take the exclusive lock of an open spill file without waiting; ``False`` if held."""
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class SpillFile:
    """The spill file of one writer of one room/branch (created on the first append).

    Args:
        path: the file (``<root>/<key>/<writer>.spill``).
        header: the header record's fields (lake, room, branch, writer).

    Attributes: ``path``; ``size_bytes``, ``records`` and ``changes`` (Loro changes appended)
    of the file as it is on disk now (0 before the first append or after :meth:`remove`).
    Used by one thread (the writer's).
    """

    def __init__(self, path: pathlib.Path, header: dict[str, Any]) -> None:
        self.path = path
        self._header = header
        self._fd: int | None = None
        self.size_bytes = 0
        self.records = 0
        self.changes = 0
        self._dirty = False  # a failed append may have left bytes beyond size_bytes

    @property
    def exists(self) -> bool:
        """Whether this writer's file is on disk (it has had an append and no remove)."""
        return self._fd is not None

    def append(self, update: bytes, changes: int) -> None:
        """Append one Loro update (holding ``changes`` changes) and fsync it.

        On return the record is durable. Raises :class:`SpillError` (the file is then as it
        was before the call, or the next call truncates what this one left) if the folder or
        file cannot be created, locked or written (e.g. the disk is full).
        """
        try:
            fd = self._open()
            if self._dirty:
                os.ftruncate(fd, self.size_bytes)
                self._dirty = False
            record = frame(_UPDATE, update)
            try:
                _write_all(fd, record)
                os.fsync(fd)
            except OSError:
                self._dirty = True
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self.size_bytes)
                    self._dirty = False
                raise
        except OSError as exc:
            raise SpillError(
                f"cannot write the spill file {self.path} ({exc.strerror or exc}): the unsaved "
                "changes stay in this kernel's memory only until the lake or the disk is back"
            ) from exc
        self.size_bytes += len(record)
        self.records += 1
        self.changes += max(int(changes), 0)

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Made under a name claimers ignore, locked, then renamed: a claimer never sees the
        # file unlocked (it would take a live writer's file for an orphan).
        making = self.path.with_name(self.path.name + ".new")
        fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            if not _lock(fd):  # (a file of our own name: nobody else should hold it)
                raise OSError(f"{making} is locked by another process")
            head = MAGIC + frame(_HEADER, json.dumps(self._header).encode())
            _write_all(fd, head)
            os.fsync(fd)
            os.rename(making, self.path)
            _fsync_dir(folder)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                making.unlink()
            raise
        self._fd = fd
        self.size_bytes = len(head)
        return fd

    def remove(self) -> None:
        """Delete the file (everything in it is in the lake) and release it. Never raises:
        a file that cannot be removed is replayed harmlessly by the next open (logged)."""
        fd, self._fd = self._fd, None
        self.size_bytes = self.records = self.changes = 0
        self._dirty = False
        if fd is None:
            return
        try:
            self.path.unlink()
            _fsync_dir(self.path.parent)
        except OSError as exc:
            LOG.warning("[sqlrooms_nb] could not remove the spill file %s: %s", self.path, exc)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the file without removing it (it still holds unsaved changes: the next
        kernel that opens the room replays it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        return f"SpillFile({str(self.path)!r}, {self.records} records, {self.size_bytes} bytes)"


@dataclass
class Orphan:
    """A spill file left by a writer that is gone, claimed (locked) by this process.

    ``path``; ``contents`` (:class:`SpillContents`); set by recovery once its updates are in
    the document: ``version`` (what they reach; ``None`` before) and ``changes`` (Loro changes
    in them). The lock is held until :meth:`remove` or :meth:`release`.
    """

    path: pathlib.Path
    contents: SpillContents
    fd: int | None = dataclasses.field(default=None, repr=False)
    version: VersionVector | None = None
    changes: int = 0

    def remove(self) -> None:
        """The lake holds everything in the file: delete it (or, if part of it was damaged,
        keep it as ``<name>.corrupt`` for inspection) and release it. Never raises."""
        try:
            if self.contents.corrupt:
                target = self.path.with_name(self.path.name + CORRUPT_SUFFIX)
                self.path.rename(target)
                LOG.error(
                    "[sqlrooms_nb] the spill file %s was damaged (%s): the records before the "
                    "damage are saved; the file is kept as %s",
                    self.path,
                    self.contents.problem,
                    target,
                )
            else:
                self.path.unlink()
            _fsync_dir(self.path.parent)
        except OSError as exc:
            LOG.warning("[sqlrooms_nb] could not remove the spill file %s: %s", self.path, exc)
        finally:
            self.release()

    def release(self) -> None:
        """Give the file back without touching it (the next open claims it again)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


class SpillDir:
    """The spill folder of one room/branch of one lake: this writer's file and orphans.

    Args:
        root: the spill root (see :func:`~sqlrooms_nb.store.config.spill_root`).
        lake: the lake's identity text (:attr:`LakeConfig.identity`, no secrets).
        room, branch: the room/branch.

    Nothing is created until a writer's first append.
    """

    def __init__(self, root: str | os.PathLike[str], lake: str, room: str, branch: str) -> None:
        self.root = pathlib.Path(root)
        self.lake = lake
        self.room = room
        self.branch = branch
        self.folder = self.root / spill_key(lake, room, branch)

    def writer_file(self, writer: str) -> SpillFile:
        """The (not yet created) spill file of ``writer`` (a decimal peer id; raises
        :class:`ValidationError` otherwise)."""
        header = {
            "format": FORMAT,
            "lake": self.lake,
            "room": self.room,
            "branch": self.branch,
            "writer": _check_writer(writer),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "created_at": time.time(),
        }
        return SpillFile(self.folder / f"{writer}{SUFFIX}", header)

    def files(self) -> list[pathlib.Path]:
        """Every spill file in the folder, live or orphaned, sorted by name."""
        try:
            return sorted(p for p in self.folder.iterdir() if p.name.endswith(SUFFIX))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SpillError(f"cannot list the spill folder {self.folder}: {exc}") from exc

    def claim_orphans(self) -> list[Orphan]:
        """Lock and read every spill file no live writer holds (see the module doc).

        Files another process holds, files removed meanwhile, and files whose header names
        another lake/room/branch are skipped; a file with no complete header (a crash while
        creating it) holds nothing and is removed. Raises :class:`SpillError` if the folder
        cannot be listed; unreadable files are logged and skipped.
        """
        claimed: list[Orphan] = []
        for path in self.files():
            orphan = self._claim(path)
            if orphan is not None:
                claimed.append(orphan)
        return claimed

    def _claim(self, path: pathlib.Path) -> Orphan | None:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        except OSError as exc:
            LOG.warning("[sqlrooms_nb] cannot open the spill file %s: %s", path, exc)
            return None
        keep = False
        try:
            if not _lock(fd):
                return None  # a live writer's file
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                return None  # removed (and maybe re-created) by whoever held it before
            contents = read_spill(b"".join(_read_fd(fd)))
            header = contents.header
            if header is None:
                if contents.torn or contents.problem is None:
                    path.unlink()  # created but never written: holds nothing
                    return None
                orphan = Orphan(path, contents, fd)
                keep = True
                return orphan  # damaged from the start: kept aside by remove()
            if (header.get("lake"), header.get("room"), header.get("branch")) != (
                self.lake,
                self.room,
                self.branch,
            ):
                LOG.warning("[sqlrooms_nb] %s belongs to another room or lake; skipped", path)
                return None
            keep = True
            return Orphan(path, contents, fd)
        except OSError as exc:
            LOG.warning("[sqlrooms_nb] cannot read the spill file %s: %s", path, exc)
            return None
        finally:
            if not keep:
                os.close(fd)


def _read_fd(fd: int) -> Iterator[bytes]:
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return
        yield chunk
