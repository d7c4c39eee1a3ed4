"""Numba's on-disk cache, keyed on every source file of this backend.

Numba validates a cached kernel against its own file's timestamp only, but our kernels inline
helpers from other files (``_fastmath.py``, ``dense.py`` ...): after such a helper changed, a
stale cache was loaded and crashed the interpreter (seen twice while developing the whole-step
kernel). These locators give every function of ``nnfast._numba`` one stamp — the names, mtimes
and sizes of all the package's ``.py`` files and of the modules whose constants they compile
in (``_SHARED``) — so a change to any of them recompiles all.
They subclass Numba's own locators (in-tree ``__pycache__``, ``NUMBA_CACHE_DIR``, user-wide)
and only change the stamp; if Numba's internals change shape, the default caching stays.

The policy, all of it here (README, "Numba's cache"):

- What is cached: every kernel of the backend (``njit`` below, ``cache=True``), one entry per
  signature. Numba keys an entry on the signature, the CPU (name and features: an entry from
  another CPU is not used) and the function's bytecode; its index on the Numba version. The
  stamp adds all the backend's sources, Numba's and llvmlite's versions and the Numba settings
  that change the generated code (``NUMBA_BOUNDSCHECK``, ``NUMBA_OPT``, debug info), so an entry
  compiled under other settings is recompiled, never trusted.
- A cached function never calls a ``parallel=True`` one. Numba starts its thread pool when it
  loads a parallel function from the cache, and a caller compiled in the same process inherits
  that start-up — but not when the parallel callee was itself loaded from the cache: the
  caller's entry then lacks it, and the first call in a later process jumps into a thread pool
  that was never started (SIGSEGV; numba issue 8578 and its neighbours; nnfast issue 6 was
  ``step.softmax_step`` calling the parallel ``softmax_cross_entropy``). Serial helpers
  (``losses._sce_serial``) serve such callers; tests/test_numba_cache.py checks every kernel.
- A damaged entry (cut short by a killed process, garbage, an index that does not unpickle) is
  treated as missing: the kernel is recompiled and the entry rewritten (``njit`` gives each
  kernel's cache these guards). Numba writes index and data through a temporary file and
  ``os.replace``, so processes compiling at once never read a half-written file; data files are
  named by their signature (``SafeCacheFile.save``), so processes compiling different signatures
  at once cannot cross their entries; the last writer's index wins and the other's entry is
  compiled again later.
- Where: ``NUMBA_CACHE_DIR`` if set, else ``__pycache__`` beside the sources if writable, else
  Numba's user-wide directory (``~/.cache/numba``); ``nnfast info`` prints it. A directory that
  cannot be written is skipped: kernels are then compiled in every process. Deleting the
  ``*.nbi``/``*.nbc`` files there starts afresh; nothing else depends on them.
"""
import hashlib
import os

_DIR = os.path.dirname(os.path.abspath(__file__))


#: Files outside the backend whose constants the kernels compile in (activation codes,
#: PARALLEL_MIN, BLOCK). Not ``_backend.py``: the kernels do not import the dispatcher, so
#: editing its table recompiles nothing.
_SHARED = ("_constants.py", "_kinds.py")


def _settings():
    """The versions and Numba settings that change generated code without changing a source."""
    import llvmlite
    import numba

    config = numba.config
    return (("numba", numba.__version__), ("llvmlite", llvmlite.__version__),
            ("boundscheck", repr(getattr(config, "BOUNDSCHECK", None))),
            ("opt", repr(getattr(config, "OPT", None))),
            ("debuginfo", repr(getattr(config, "DEBUGINFO_DEFAULT", None))))


def package_stamp():
    """(name, mtime_ns, size) of every .py file of the backend and of ``_SHARED``, sorted, and
    the settings of ``_settings``."""
    paths = [os.path.join(_DIR, name) for name in sorted(os.listdir(_DIR)) if name.endswith(".py")]
    paths += [os.path.join(os.path.dirname(_DIR), name) for name in _SHARED]
    stamp = []
    for path in paths:
        st = os.stat(path)
        stamp.append((os.path.basename(path), st.st_mtime_ns, st.st_size))
    return tuple(stamp) + _settings()


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


_guards = None


def _make_guards():
    """Subclasses of Numba's function cache and cache file that treat a damaged entry as a
    missing one (recompile, rewrite), or None where Numba's internals have another shape."""
    try:
        from numba.core import caching

        base_cache, base_file = caching.FunctionCache, caching.IndexDataCacheFile
    except (ImportError, AttributeError):
        return None

    class SafeCacheFile(base_file):
        def _load_index(self):
            try:
                return super()._load_index()
            except Exception:        # noqa: BLE001 - any damage means "no usable entries"
                return {}

        def save(self, key, data):
            """Numba names a new entry's data file by the first number its index does not
            use: two processes that read the index before either wrote it give their different
            signatures the same file, and if their writes interleave (index A, index B, data B,
            data A) the index maps B's signature to A's machine code, which crashes when called.
            Here the file is named by the signature itself and written before the index entry
            that points to it, so an entry can only ever lead to its own code; concurrent
            writers can at worst drop each other's index entries (recompiled on next use)."""
            digest = hashlib.sha256(repr(key).encode("utf-8", "backslashreplace")).hexdigest()
            data_name = self._data_name(int(digest[:15], 16))
            self._save_data(data_name, data)
            overloads = self._load_index()
            overloads[key] = data_name
            self._save_index(overloads)

    class SafeFunctionCache(base_cache):
        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception:        # noqa: BLE001 - a damaged data file: compile instead
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except Exception:        # noqa: BLE001 - unwritable directory, damaged index ...:
                pass                 # the kernel is compiled and runs; it is just not cached

    return base_cache, SafeFunctionCache, base_file, SafeCacheFile


def njit(**options):
    """``numba.njit(**options)`` for the backend's kernels: with ``cache=True`` the kernel's
    cache is keyed by ``package_stamp`` and survives damaged entries (see the module note)."""
    import numba

    global _guards
    install()
    if _guards is None:
        _guards = _make_guards() or ()

    def decorate(fn):
        dispatcher = numba.njit(**options)(fn)
        cache = getattr(dispatcher, "_cache", None)
        if _guards and type(cache) is _guards[0]:
            cache.__class__ = _guards[1]
            if type(cache._cache_file) is _guards[2]:
                cache._cache_file.__class__ = _guards[3]
        return dispatcher

    return decorate
