"""Durable file writes: a file the package writes is either the old one or the new one, never a
fragment.

``replacing(path)`` yields a binary file object on a temporary file in the target's own folder
(the same file system, so the rename below is atomic); when the ``with`` block ends without an
exception the data is flushed and fsync'ed, the temporary file is renamed onto ``path``
(``os.replace``) and the folder is fsync'ed so that the rename itself survives a power cut. An
exception inside the block removes the temporary file and leaves ``path`` as it was. A process
killed at any moment leaves the old file (or none) at ``path``, and at worst a ``.tmp`` file
beside it, which no reader looks at.
"""
import contextlib
import os
import tempfile


def _fsync_dir(folder):
    """fsync a folder (the rename's durability); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return                      # e.g. Windows: a folder cannot be opened for fsync
    try:
        os.fsync(fd)
    except OSError:
        pass                        # some file systems refuse fsync on a folder
    finally:
        os.close(fd)


def _mode_for(path):
    """The permission bits ``path`` gets: those it has now, else what ``open`` would give a new
    file (0666 less the umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def replacing(path, mode="wb"):
    """A file object (``mode`` "wb" or "w") whose contents replace ``path`` atomically when the
    block ends without an exception (module docstring)."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        os.chmod(tmp, _mode_for(path))      # mkstemp's 0600 would outlive the rename
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
