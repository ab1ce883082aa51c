"""The data folder and the files in it are the service user's alone, whatever the umask.

The database holds outcome notes and the audit log; the folder also holds the signing and
pseudonym keys. Blocking file-system calls: use from a thread or at start-up.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: The files SQLite keeps next to a database: WAL, its shared-memory index, rollback journal.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create `path` (and missing parents) and make it 0700; a wider existing folder is narrowed."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _narrow(path, PRIVATE_DIR_MODE)


def private_file(path: Path) -> None:
    """Make an existing file 0600 if it is wider; a missing file is left missing."""
    if path.exists():
        _narrow(path, PRIVATE_FILE_MODE)


def create_private_file(path: Path) -> None:
    """Create `path` empty at 0600 unless it exists (then narrow it), never through the umask."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & ~PRIVATE_FILE_MODE:
            os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def private_sqlite_files(database: Path) -> None:
    """The database file made 0600 before SQLite opens it.

    SQLite gives its WAL, shared-memory and journal files the database file's own mode, so they
    follow; side files left by an older version are narrowed too."""
    private_dir(database.parent)
    create_private_file(database)
    for suffix in SQLITE_SIDE_FILES:
        private_file(database.with_name(database.name + suffix))


def _narrow(path: Path, mode: int) -> None:
    if stat.S_IMODE(path.stat().st_mode) & ~mode:
        path.chmod(mode)
