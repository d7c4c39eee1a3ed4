"""Numba's on-disk cache, keyed on every source file of this backend.

Numba validates a cached kernel against its own file's timestamp only, but our kernels inline
helpers from other files (``_fastmath.py``, ``dense.py`` ...): after such a helper changed, a
stale cache was loaded and crashed the interpreter (seen twice while developing the whole-step
kernel). These locators give every function of ``nnfast._numba`` one stamp — the names, mtimes
and sizes of all the package's ``.py`` files and of the modules whose constants they compile
in (``_SHARED``) — so a change to any of them recompiles all.
They subclass Numba's own locators (in-tree ``__pycache__``, ``NUMBA_CACHE_DIR``, user-wide)
and only change the stamp; if Numba's internals change shape, the default caching stays.
"""
import os

_DIR = os.path.dirname(os.path.abspath(__file__))


#: Files outside the backend whose constants the kernels compile in (activation codes,
#: PARALLEL_MIN).
_SHARED = ("_kinds.py", "_backend.py")


def package_stamp():
    """(name, mtime_ns, size) of every .py file of the backend and of ``_SHARED``, sorted."""
    paths = [os.path.join(_DIR, name) for name in sorted(os.listdir(_DIR)) if name.endswith(".py")]
    paths += [os.path.join(os.path.dirname(_DIR), name) for name in _SHARED]
    stamp = []
    for path in paths:
        st = os.stat(path)
        stamp.append((os.path.basename(path), st.st_mtime_ns, st.st_size))
    return tuple(stamp)


def install():
    try:
        from numba.core import caching

        classes = caching.CacheImpl._locator_classes
        bases = (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator,
                 caching.UserWideCacheLocator)
    except (ImportError, AttributeError):   # another Numba: keep its default caching
        return
    if any(getattr(cls, "_nnfast", False) for cls in classes):
        return
    for base in bases:
        if base not in classes:
            continue

        class Locator(base):
            _nnfast = True

            def get_source_stamp(self):
                return package_stamp()

            @classmethod
            def from_function(cls, py_func, py_file):
                if os.path.dirname(os.path.abspath(py_file)) != _DIR:
                    return None
                return super().from_function(py_func, py_file)

        Locator.__name__ = "NNFast" + base.__name__
        classes.insert(classes.index(base), Locator)
