"""The state directory is private: folders 0700, files 0600 whatever the umask, no symlink followed.

The state directory holds the outbox (everything not yet delivered), the generated OPC UA private key
and certificate. Someone who can plant a symlink there (a shared volume, a careless backup restore) must
not get the agent to write its key to a file of their choosing, or put an outbox outside the directory
(issue 10). So files are opened with ``O_NOFOLLOW`` and get their mode from ``fchmod`` on the open file,
not from the umask. The directory itself may be a symlink (``/var/lib/edge-agent`` -> ``/data``): that
one is chosen by whoever writes the config.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFile(OSError):
    """A state file is a symlink, or is not a regular file."""


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it mode 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with O_NOFOLLOW; a new or existing regular file ends up mode 0600.

    Raises:
        UnsafeFile: ``path`` is a symlink or not a regular file.
        OSError: any other reason the file cannot be opened.
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(
                errno.ELOOP,
                f"{path} is a symbolic link; the agent never follows links in its state directory",
            ) from None
        raise
    try:
        if not _is_regular(fd):
            raise UnsafeFile(errno.EINVAL, f"{path} is not a regular file")
        os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def prepare(*paths: Path) -> None:
    """Create each file if missing (0600, not through a symlink) and fix the mode of existing ones.

    For files another library opens by name afterwards (SQLite and its ``-wal`` and ``-shm`` files).
    """
    for path in paths:
        os.close(open_private(path, os.O_RDWR | os.O_CREAT))


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (created or truncated, 0600, never through a symlink)."""
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as out:
        out.write(data)


def read_private(path: Path) -> bytes:
    """The bytes of ``path``, refusing a symlink."""
    with os.fdopen(open_private(path, os.O_RDONLY), "rb") as src:
        return src.read()


SHARED_MODE = 0o640
"""Files that ``edge-agent train`` and ``record`` write (models, cards, recordings): readable by the
group of the folder they are written to. ``deploy/install.sh`` makes the model and recording folders
group ``edge-agent`` (setgid), so a model an administrator trains as root is readable by the service."""


def share_with_folder_group(fd: int, folder: Path) -> None:
    """Give the open file ``fd`` mode 0640 and the group of ``folder`` (when allowed to), whatever the umask."""
    os.fchmod(fd, SHARED_MODE)
    gid = os.stat(folder).st_gid
    if os.fstat(fd).st_gid != gid:
        # Not root and not in that group: the file keeps the writer's group.
        with contextlib.suppress(PermissionError):
            os.fchown(fd, -1, gid)
