"""The spool: every received instance as a file, on disk (fsync'ed) before the peer hears "success".

Files are written to a temporary name, flushed and fsync'ed, renamed into place, and the folder is
fsync'ed too, so after a crash a file is either complete or absent, never half-written under its
real name. Layout: `<spool>/<Study Instance UID>/<SOP Instance UID>.dcm` (UIDs are safe file names).
"""

from __future__ import annotations

import os
from pathlib import Path


def durable_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably; raise OSError (e.g. disk full) on failure,
    leaving no partial file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def instance_path(spool: Path, study_instance_uid: str, sop_instance_uid: str) -> Path:
    for uid in (study_instance_uid, sop_instance_uid):
        if not uid or not all(c.isdigit() or c == "." for c in uid) or len(uid) > 64:
            raise ValueError(f"{uid!r} is not a valid DICOM UID")
    return spool / study_instance_uid / f"{sop_instance_uid}.dcm"


def disk_use_percent(folder: Path) -> float:
    """How full the file system holding `folder` is, in percent, as `df` reports it: used blocks over
    used plus available ones. Blocks reserved for root count as neither, so an administrator who reads
    `df` sees the same figure the node compares with `node.max_disk_use_percent` (on a file system
    with many reserved blocks, total-minus-available over total reads far higher than `df`)."""
    folder.mkdir(parents=True, exist_ok=True)
    stats = os.statvfs(folder)
    used = stats.f_blocks - stats.f_bfree
    usable = used + stats.f_bavail
    return 100.0 * used / usable if usable else 100.0
