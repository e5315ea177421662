"""Writing a user's output file: all of it or none of it.

``render -o``, ``plan --plot`` and ``report`` write here.  The data goes to a
temporary file in the target's directory (same filesystem, so the rename is
atomic), is flushed to disk, and then renamed over the target: a full disk, a
killed process or a bad path leaves the previous file as it was, never half a
YAML stream that ``kubectl apply`` would take for a whole one.  Every OS error
becomes one :class:`~calico_rr.errors.InputError` line naming the path and flag.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from calico_rr.errors import InputError


def write_atomic(path: str, data: bytes, *, field: str) -> None:
    """Replace ``path`` with ``data`` atomically; raise InputError on any OS error."""
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory", field=field)
    directory = os.path.dirname(os.path.abspath(path))
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".calico-rr-", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        mode = _mode_of(path)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}", field=field) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _mode_of(path: str) -> int:
    """Keep an existing file's permissions; a new one gets 0666 less the umask, as
    ``open(path, "w")`` would give it (mkstemp's own 0600 would surprise a user)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
