"""Parameter sweeps with an on-disk cache, run locally or on a Dask cluster.

A **grid** names a set of cells; a **cell** is a dict of parameters; a **cell function**
``fn(**params) -> dict`` computes the metrics of one cell (e.g. the reconstruction error of
one ``(p, n, d, seed)`` point of the law ``p ~ n d``). :func:`run_sweep` runs every cell that
the **store** (a folder) does not hold yet and writes one JSON record per cell;
:func:`load_table` reads the records back as a tidy :class:`pandas.DataFrame`.

Store layout: ``STORE/<key>.json``, where ``key`` = :func:`cell_key` = a SHA-256 prefix of
the canonical JSON of ``{"fn": "module:qualname", "params": {...}, "version": "..."}``, the
version being the code's (:func:`code_version`, passed as ``run_sweep(version=...)``; left
out of the key when empty). A changed parameter, another cell function or changed code is
therefore a new file, never a stale hit. Each record holds::

    key, grid, fn, params, version, status ("ok" | "failed"), metrics, error, traceback,
    runtime_s, versions {python, jax, numpy, recon}, host, timestamp (UTC),
    sha256 (of the canonical JSON of all the other fields)

Records are written by the driver, atomically (temporary file in the store, ``fsync``,
``os.replace``), with the mode ``0666`` less the umask (``0644`` under the usual umask, so
the group can read them), so Dask workers never need to see the store. A record that cannot
be read, lacks keys, whose ``sha256`` does not match its content (edited by hand), or whose
``fn``/``params`` do not match the cell it is filed under is reported with a
:class:`CorruptRecordWarning` and recomputed. Records written before records carried a
checksum have no ``sha256``: they are treated the same way (warned about and recomputed),
since nothing tells them from a record whose checksum was removed; a code version keys them
apart anyway (:func:`code_version`), so only sweeps run without one meet them.

Several runs may share one store (two terminals, two machines on a shared folder): before a
run computes a cell it takes the cell's lock, ``STORE/.<key>.lock``, created with
``O_CREAT | O_EXCL`` and holding ``{"pid", "host", "since"}``, and removes it once the record
is written. A cell whose lock another run holds is left to it (counted as ``busy``); a lock
whose process is gone (same host, pid no longer running: a run killed with SIGKILL) is stale
and taken over. A lock left by a dead run on ANOTHER host cannot be told from a live one:
remove it by hand (it names its host and pid). With Dask, the driver takes the locks of all
the cells it submits at once.

YAML grid files (for ``python -m recon sweep --grid FILE.yml``). A grid file names code to
run: ``cell`` is imported and called with every cell's parameters, so run only grid files
you trust, as you would a script::

    name: law                      # grid name, stored in every record
    cell: recon.book.sweep:demo_cell    # the cell function, "module:function"
    params:                        # dict of lists -> Cartesian product ...
      x: [1, 2, 3]
      seed: [0, 1]
    # params:                      # ... or an explicit list of cells
    #   - {x: 1, y: 10}
    #   - {x: 2, y: 20}
    fixed: {y: 5}                  # optional, added to every cell
    retry_failed: true             # optional (default true)

The command line keys its cells with :func:`code_version`. It reports a bad grid file (YAML
syntax, with its line and column; unknown keys; an unknown cell function) or a store it cannot
write in one line, before any cell is computed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import importlib.metadata
import inspect
import itertools
import json
import os
import platform
import socket
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from recon import checks

__all__ = [
    "Grid",
    "Summary",
    "CorruptRecordWarning",
    "cell_key",
    "code_version",
    "function_name",
    "run_sweep",
    "load_table",
    "read_grid_file",
    "resolve_function",
    "demo_cell",
    "main",
]

EXECUTORS = ("local", "dask")
RECORD_KEYS = frozenset(
    {"key", "grid", "fn", "params", "version", "status", "metrics", "error", "traceback",
     "runtime_s", "versions", "host", "timestamp", "sha256"}
)
_KEY_LENGTH = 24  # hex characters of SHA-256 kept in file names (96 bits)
_VALUE_TYPES = (list, tuple, range)


class CorruptRecordWarning(UserWarning):
    """A record file in the store is unreadable or does not match its cell; it is recomputed."""


# --------------------------------------------------------------------------- grids


def _canonical(obj: Any) -> str:
    """Canonical JSON (sorted keys, no spaces, no NaN): equal objects give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _checksum(record: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``record`` without its ``sha256`` field (NaN kept as
    JSON writes it, so a record with a NaN metric checks too)."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_value(name: str, value: Any) -> None:
    """Raise TypeError unless ``value`` is JSON-serialisable (so it can be hashed and stored)."""
    try:
        _canonical(value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"parameter {name!r} = {value!r} (type {type(value).__name__}) is not "
            f"JSON-serialisable ({err}); use plain int/float/str/bool/None/list/dict values"
        ) from None


def _check_cell(cell: Any, where: str) -> dict:
    """Return ``cell`` as a dict after checking its keys are strings and values JSON."""
    if not isinstance(cell, Mapping):
        raise TypeError(f"{where} must be a dict of parameters, got {type(cell).__name__}")
    for name, value in cell.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"{where}: parameter names must be identifiers, got {name!r}")
        _check_value(name, value)
    return dict(cell)


@dataclasses.dataclass(frozen=True)
class Grid:
    """A named set of cells.

    ``params`` is either a dict ``{name: [values, ...]}`` expanded as a Cartesian product (in
    the order given, last name varying fastest), or an explicit list of cell dicts (for
    non-product grids such as pairs ``(n, d)``). ``fixed`` is added to every cell.
    """

    name: str
    params: Mapping[str, Sequence] | Sequence[Mapping[str, Any]]
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def cells(self) -> list[dict]:
        """Return the list of cells (dicts of parameters); raise on malformed grids."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Grid name must be a non-empty string, got {self.name!r}")
        fixed = _check_cell(self.fixed, f"grid {self.name!r}: fixed")
        base = self._explicit_cells() if _is_cell_list(self.params) else self._product_cells()
        cells = []
        for cell in base:
            clash = sorted(set(cell) & set(fixed))
            if clash:
                raise ValueError(f"grid {self.name!r}: {clash} given both in params and fixed")
            cells.append({**cell, **fixed})
        _check_unique(self.name, cells)
        return cells

    def _product_cells(self) -> list[dict]:
        """Expand the dict-of-lists form as a Cartesian product."""
        if not isinstance(self.params, Mapping):
            raise TypeError(
                f"grid {self.name!r}: params must be a dict of lists or a list of dicts, "
                f"got {type(self.params).__name__}"
            )
        if not self.params:
            raise ValueError(f"grid {self.name!r} is empty: params has no parameters")
        for name, values in self.params.items():
            if not isinstance(values, _VALUE_TYPES):
                raise TypeError(
                    f"grid {self.name!r}: parameter {name!r} must be a list of values, got "
                    f"{values!r} (type {type(values).__name__}); write [{values!r}] or move "
                    "it to fixed"
                )
            if len(values) == 0:
                raise ValueError(f"grid {self.name!r} is empty: parameter {name!r} has no values")
        names = list(self.params)
        combos = itertools.product(*(list(self.params[n]) for n in names))
        return [_check_cell(dict(zip(names, c)), f"grid {self.name!r}") for c in combos]

    def _explicit_cells(self) -> list[dict]:
        """Check the list-of-dicts form."""
        if len(self.params) == 0:
            raise ValueError(f"grid {self.name!r} is empty: the list of cells has no entries")
        return [_check_cell(c, f"grid {self.name!r}: cell {i}") for i, c in enumerate(self.params)]

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Grid:
        """Build a grid from ``{"name", "params", "fixed"?}`` (e.g. a parsed YAML file)."""
        missing = {"name", "params"} - set(spec)
        if missing:
            raise ValueError(f"grid spec lacks {sorted(missing)}; it needs name and params")
        return cls(name=spec["name"], params=spec["params"], fixed=spec.get("fixed") or {})


def _is_cell_list(params: Any) -> bool:
    """True for the explicit form (a list/tuple of cells) rather than a dict of lists."""
    return isinstance(params, (list, tuple))


def _check_unique(name: str, cells: list[dict]) -> None:
    """Raise ValueError if two cells of a grid have the same parameters."""
    seen: set[str] = set()
    for cell in cells:
        text = _canonical(cell)
        if text in seen:
            raise ValueError(f"grid {name!r} has the cell {cell} more than once")
        seen.add(text)


# --------------------------------------------------------------------------- keys


def function_name(fn: Callable) -> str:
    """Return ``"module:qualname"`` of a top-level function; raise TypeError otherwise.

    The name identifies the cell function in every key, so it must be stable and importable:
    lambdas, nested functions and ``functools.partial`` objects are refused.
    """
    if not callable(fn):
        raise TypeError(f"the cell function must be callable, got {fn!r}")
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise TypeError(
            f"the cell function must be a top-level function (importable as module:name), "
            f"got {fn!r}"
        )
    return f"{module}:{qualname}"


def cell_key(fn: Callable | str, params: Mapping[str, Any], version: str = "") -> str:
    """Return the store key of a cell: SHA-256 prefix of canonical JSON of (fn name, params,
    code version; the version only when not empty)."""
    name = fn if isinstance(fn, str) else function_name(fn)
    keyed = {"fn": name, "params": dict(params)} | ({"version": version} if version else {})
    return hashlib.sha256(_canonical(keyed).encode()).hexdigest()[:_KEY_LENGTH]


def code_version() -> str:
    """A short hash (12 hex digits) of every ``.py`` file of the ``recon`` package (the
    science, the chapters and the book), for ``run_sweep(version=...)``: results cached by
    other code are never reused."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# --------------------------------------------------------------------------- records


def _versions() -> dict[str, str | None]:
    """Versions of python, jax, numpy and recon in the running interpreter."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("jax", "numpy", "recon"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def _to_builtin(obj: Any) -> Any:
    """``json`` fallback: numpy/JAX scalars and arrays become Python numbers and lists."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _plain_metrics(metrics: Any) -> dict:
    """Return ``metrics`` as a plain-JSON dict; raise TypeError if it is not one."""
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"the cell function must return a dict of metrics, got {type(metrics).__name__}"
        )
    return json.loads(json.dumps(dict(metrics), default=_to_builtin))


def _outcome(status: str, metrics: dict | None, error: str | None, tb: str | None,
             runtime_s: float) -> dict:
    """The part of a record produced where the cell ran (worker or driver)."""
    return {
        "status": status, "metrics": metrics, "error": error, "traceback": tb,
        "runtime_s": runtime_s, "versions": _versions(),
        "host": socket.gethostname(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _failure(err: BaseException, runtime_s: float) -> dict:
    """An outcome for a cell whose function raised ``err``."""
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return _outcome("failed", None, f"{type(err).__name__}: {err}", tb, runtime_s)


def _run_cell(fn: Callable, params: dict) -> dict:
    """Run one cell and return its outcome.

    Exceptions from ``fn`` are caught and turned into a "failed" outcome, so a failing cell
    never stops the sweep. Runs on the driver or on a Dask worker.
    """
    start = time.perf_counter()
    try:
        metrics = _plain_metrics(fn(**params))
    except Exception as err:  # noqa: BLE001 - every failure is recorded, none kills the sweep
        return _failure(err, time.perf_counter() - start)
    return _outcome("ok", metrics, None, None, time.perf_counter() - start)


def _run_batch(fn: Callable, cells: list[dict]) -> list[dict]:
    """Run a batch function ``fn(cells) -> [metrics or exception, ...]`` on ``cells`` and
    return one outcome per cell (the batch's time shared out): an exception raised by ``fn``,
    or a result that is not one entry per cell, fails every cell; an exception returned in
    place of a cell's metrics fails that cell only."""
    start = time.perf_counter()
    try:
        results = fn(cells)
        if not isinstance(results, (list, tuple)) or len(results) != len(cells):
            raise TypeError(f"{function_name(fn)} must return one entry per cell "
                            f"({len(cells)}), got {type(results).__name__}")
    except Exception as err:  # noqa: BLE001 - every failure is recorded, none kills the sweep
        return [_failure(err, (time.perf_counter() - start) / len(cells))] * len(cells)
    share = (time.perf_counter() - start) / len(cells)
    outcomes = []
    for result in results:
        if isinstance(result, BaseException):
            outcomes.append(_failure(result, share))
            continue
        try:
            outcomes.append(_outcome("ok", _plain_metrics(result), None, None, share))
        except Exception as err:  # noqa: BLE001
            outcomes.append(_failure(err, share))
    return outcomes


def _run_unit(fn: Callable, cells: list[dict], batched: bool) -> list[dict]:
    """The outcomes of one unit of work: a batch of cells, or a single cell."""
    return _run_batch(fn, cells) if batched else [_run_cell(fn, cells[0])]


def _units(cells: list[dict], batch_by: Sequence[str] | None) -> list[list[int]]:
    """The indices of ``cells`` grouped into units of work: one cell each, or (with
    ``batch_by``) the cells that share the values of those parameters, in first-seen order."""
    if batch_by is None:
        return [[i] for i in range(len(cells))]
    groups: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        groups.setdefault(_canonical({k: cell.get(k) for k in batch_by}), []).append(i)
    return list(groups.values())


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_json_atomic(path: Path, record: dict) -> None:
    """Write ``record`` to ``path`` atomically: temp file in the same folder, fsync, replace;
    with the mode a plain ``open`` would give (``0666`` less the umask), not ``mkstemp``'s
    ``0600``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_record(path: Path) -> tuple[dict | None, str | None]:
    """Return ``(record, None)`` for a well-formed record file, else ``(None, why)``."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"not valid JSON ({err})"
    if not isinstance(record, dict):
        return None, f"not a JSON object but {type(record).__name__}"
    record.setdefault("version", "")  # records written before the code version was keyed
    missing = RECORD_KEYS - set(record)
    if missing == {"sha256"}:
        return None, ("no sha256 checksum (written by an older version of recon, or the "
                      "checksum was removed)")
    if missing:
        return None, f"missing keys {sorted(missing)}"
    if record["status"] not in ("ok", "failed"):
        return None, f"unknown status {record['status']!r}"
    if record["status"] == "ok" and not isinstance(record["metrics"], dict):
        return None, "status ok but metrics is not a dict"
    if not all(isinstance(record[k], t) for k, t in (("params", dict), ("fn", str),
                                                        ("version", str))):
        return None, "params is not a dict, or fn or version is not a string"
    key = cell_key(record["fn"], record["params"], record["version"])
    if record["key"] != path.stem or key != path.stem:
        return None, "its fn/params/version do not hash to its file name"
    if record["sha256"] != _checksum(record):
        return None, "its sha256 checksum does not match its content (edited by hand?)"
    return record, None


def _warn_corrupt(path: Path, why: str, action: str) -> None:
    """Report a corrupt record with its path and the reason."""
    warnings.warn(f"corrupt sweep record {path}: {why}; {action}", CorruptRecordWarning,
                  stacklevel=3)


# --------------------------------------------------------------------------- running


@dataclasses.dataclass
class Summary:
    """What one :func:`run_sweep` call did.

    ``computed``: cells run now (ok or failed); ``reused``: records taken from the store;
    ``failed``: cells whose record is "failed" after the run (new or kept with
    ``retry_failed=False``); ``corrupt``: unreadable/mismatched records found (recomputed if
    within ``max_cells``); ``pending``: cells left for a later run by ``max_cells``;
    ``busy``: cells another run was computing (their lock was held), left to it.
    """

    grid: str
    store: str
    total: int
    computed: int = 0
    reused: int = 0
    failed: int = 0
    corrupt: int = 0
    pending: int = 0
    seconds: float = 0.0
    busy: int = 0

    @property
    def complete(self) -> bool:
        """True when every cell has an "ok" record."""
        return self.failed == 0 and self.pending == 0 and self.busy == 0

    def __str__(self) -> str:
        return (
            f"sweep {self.grid!r}: {self.total} cells: {self.computed} computed, "
            f"{self.reused} reused, {self.failed} failed, {self.corrupt} corrupt, "
            f"{self.pending} pending"
            + (f", {self.busy} busy in another run" if self.busy else "")
            + f" ({self.seconds:.1f} s; store {self.store})"
        )


def _check_signature(fn: Callable, cells: list[dict]) -> None:
    """Raise TypeError if some cell's parameters cannot be passed to ``fn``."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    for cell in cells:
        try:
            signature.bind(**cell)
        except TypeError as err:
            raise TypeError(
                f"cell {cell} does not fit {function_name(fn)}{signature}: {err}"
            ) from None


def _check_options(executor: str | None, scheduler: Any, max_cells: int | None,
                   version: str, retry_failed: bool = True) -> str:
    """Validate the run options before anything is computed; return the executor name."""
    checks.boolean("retry_failed", retry_failed)
    if executor is None:
        executor = "local" if scheduler is None else "dask"
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    if executor == "dask" and scheduler is None:
        raise ValueError('executor="dask" needs scheduler= (an address or a dask Client)')
    if executor == "local" and scheduler is not None:
        raise ValueError('scheduler= is only used with executor="dask"')
    if not isinstance(version, str):
        raise TypeError(f"version must be a string (e.g. code_version()), got {version!r}")
    if max_cells is not None and (isinstance(max_cells, bool) or not isinstance(max_cells, int)
                                  or max_cells < 0):
        raise ValueError(f"max_cells must be None or an integer >= 0, got {max_cells!r}")
    return executor


def _prepare_store(store: str | os.PathLike) -> Path:
    """Create the store folder if needed and check that a file can be written in it; raise
    ValueError (before any cell is computed) if the path is not a folder or not writable."""
    path = Path(store)
    if path.exists() and not path.is_dir():
        raise ValueError(f"store {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"store {path} cannot be written ({err.strerror or err}); choose a "
                         f"folder you can write to") from None
    return path


_LOCKS_HERE: set[Path] = set()  # lock files held by this process (any thread, any run)


class _CellLocks:
    """The per-cell locks of one run in the store ``path`` (see the module docstring):
    ``acquire(key)`` creates ``.<key>.lock`` with ``O_CREAT | O_EXCL`` (taking over a stale
    one), ``release(key)`` removes it, ``release_all()`` removes every lock still held."""

    def __init__(self, path: Path):
        self.path = path
        self.host = socket.gethostname()
        self.held: set[str] = set()

    def file(self, key: str) -> Path:
        return self.path / f".{key}.lock"

    def acquire(self, key: str) -> bool:
        """Take the lock of ``key``; False if another live run holds it."""
        lock = self.file(key)
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                if not self._stale(lock):
                    return False
                lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"pid": os.getpid(), "host": self.host,
                           "since": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                          handle)
            self.held.add(key)
            _LOCKS_HERE.add(lock)
            return True
        return False

    def _stale(self, lock: Path) -> bool:
        """Whether ``lock`` was left by a process of this host that no longer runs (or is
        unreadable and over a minute old: a run killed while writing it)."""
        try:
            holder = json.loads(lock.read_text(encoding="utf-8"))
            pid, host = holder["pid"], holder["host"]
        except FileNotFoundError:
            return True  # released meanwhile: try again
        except (OSError, ValueError, TypeError, KeyError):
            try:
                return time.time() - lock.stat().st_mtime > 60
            except FileNotFoundError:
                return True
        if host != self.host or not isinstance(pid, int):
            return False
        if pid == os.getpid():  # ours, or left by a killed process whose pid we now have
            return lock not in _LOCKS_HERE
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def release(self, key: str) -> None:
        if key in self.held:
            self.file(key).unlink(missing_ok=True)
            self.held.discard(key)
            _LOCKS_HERE.discard(self.file(key))

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)


def _filed_for(record: dict, fn_name: str, cell: dict, version: str) -> bool:
    """Whether ``record`` is the record of this cell: same function, version and parameters."""
    return (record["fn"] == fn_name and record["version"] == version
            and _canonical(record["params"]) == _canonical(cell))


def _lookup(path: Path, key: str, fn_name: str, cell: dict, version: str,
            summary: Summary) -> dict | None:
    """Return the usable record of a cell, or None if it must be (re)computed."""
    file = path / f"{key}.json"
    if not file.exists():
        return None
    record, why = _read_record(file)
    if record is not None and not _filed_for(record, fn_name, cell, version):
        record, why = None, "its fn/params/version differ from the cell filed under this key"
    if record is None:
        summary.corrupt += 1
        _warn_corrupt(file, why, "it will be recomputed")
    return record


def _finished_meanwhile(path: Path, key: str, fn_name: str, cell: dict, version: str,
                        retry_failed: bool) -> dict | None:
    """The record another run wrote for this cell since the store was scanned, if usable."""
    file = path / f"{key}.json"
    if not file.exists():
        return None
    record, _ = _read_record(file)
    if record is None or not _filed_for(record, fn_name, cell, version):
        return None
    return record if record["status"] == "ok" or not retry_failed else None


def _to_compute(path: Path, cells: list[dict], fn_name: str, version: str, retry_failed: bool,
                summary: Summary) -> tuple[list[dict], list[str]]:
    """The cells without a usable record in the store, and their keys; counts the reused
    (and kept failed) records in ``summary``."""
    todo, keys = [], []
    for cell in cells:
        key = cell_key(fn_name, cell, version)
        record = _lookup(path, key, fn_name, cell, version, summary)
        if record is not None and (record["status"] == "ok" or not retry_failed):
            summary.reused += 1
            summary.failed += record["status"] == "failed"
        else:
            todo.append(cell)
            keys.append(key)
    return todo, keys


def _execute_local(fn, cells, units, batched, claim):
    """Yield ``(index, outcome)`` running the units one after another in this process, each
    on the cells of it that ``claim`` gives this run (their locks taken just before)."""
    for unit in units:
        mine = claim(unit)
        if mine:
            yield from zip(mine, _run_unit(fn, [cells[i] for i in mine], batched))


def _execute_dask(fn, cells, units, batched, claim, scheduler):
    """Yield ``(index, outcome)`` as Dask futures complete (``client.map`` + ``as_completed``),
    one future per unit, on the cells ``claim`` gives this run (all claimed up front)."""
    from dask.distributed import Client, as_completed

    units = [u for u in map(claim, units) if u]
    if not units:
        return
    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    futures = client.map(_run_unit, [fn] * len(units), [[cells[i] for i in u] for u in units],
                         [batched] * len(units), pure=False)
    index = {f.key: u for f, u in zip(futures, units)}
    try:
        for future in as_completed(futures):
            unit = index[future.key]
            try:
                outcomes = future.result()
            except Exception as err:  # noqa: BLE001 - lost worker, unpicklable fn, ...
                outcomes = [_failure(err, 0.0)] * len(unit)
            yield from zip(unit, outcomes)
    finally:
        client.cancel([f for f in futures if not f.done()])
        if own:
            client.close()


def _check_batching(fn, cells, batch_by) -> None:
    """``fn`` takes each cell's parameters (no ``batch_by``), or ``batch_by`` is a list of
    parameter names."""
    if batch_by is None:
        _check_signature(fn, cells)
    elif isinstance(batch_by, str) or not all(isinstance(k, str) for k in batch_by):
        raise TypeError(f"batch_by must be a list of parameter names, got {batch_by!r}")


def _write_record(path: Path, record: dict) -> None:
    """Write ``record`` with the sha256 of its content (:func:`_checksum`), atomically."""
    record["sha256"] = _checksum(record)
    _write_json_atomic(path, record)


def _claimer(path, locks, todo, todo_keys, identity, summary, bar):
    """``claim(unit)``: the cells of ``unit`` this run computes, locked by it and still
    without a record (another run may have written one since the scan); the others are
    counted in ``summary`` as busy or reused. ``identity`` is ``(fn_name, version,
    retry_failed)``."""
    fn_name, version, retry_failed = identity

    def claim(unit: list[int]) -> list[int]:
        mine = []
        for i in unit:
            if not locks.acquire(todo_keys[i]):
                summary.busy += 1
                bar.update(1)
                continue
            record = _finished_meanwhile(path, todo_keys[i], fn_name, todo[i], version,
                                         retry_failed)
            if record is None:
                mine.append(i)
                continue
            locks.release(todo_keys[i])
            summary.reused += 1
            summary.failed += record["status"] == "failed"
            bar.update(1)
        return mine

    return claim


def run_sweep(
    grid: Grid,
    fn: Callable[..., dict],
    store: str | os.PathLike,
    *,
    executor: str | None = None,
    scheduler: Any = None,
    retry_failed: bool = True,
    version: str = "",
    max_cells: int | None = None,
    progress: bool = True,
    batch_by: Sequence[str] | None = None,
) -> Summary:
    """Compute every cell of ``grid`` with ``fn`` that ``store`` does not already hold.

    ``fn(**cell) -> dict`` of JSON-able metrics (numpy/JAX scalars are converted) must be a
    top-level function. Finished cells are reused; failed ones are recomputed unless
    ``retry_failed=False``; corrupt records are warned about and recomputed. Exceptions in
    ``fn`` are recorded (message and traceback) and do not stop the sweep.

    ``executor``: ``"local"`` (default: sequential, in-process, so jitted JAX functions are
    reused across cells) or ``"dask"`` with ``scheduler`` = an address (``"tcp://..."``) or a
    ``dask.distributed.Client``; results are written by this process as they arrive.
    ``version``: the code version (:func:`code_version`), part of every cell's key, so that
    the cell function takes only the parameters it computes with.
    ``max_cells``: compute at most this many cells now (the rest stay pending).
    ``batch_by``: parameter names; ``fn`` is then ``fn(cells) -> list``, run once per group of
    missing cells sharing their values: each cell's metrics, or an exception (that cell fails).
    Returns a :class:`Summary`. All inputs are checked before any cell is computed.
    """
    started = time.perf_counter()
    cells, fn_name = grid.cells(), function_name(fn)
    executor = _check_options(executor, scheduler, max_cells, version, retry_failed)
    _check_batching(fn, cells, batch_by)
    path = _prepare_store(store)
    summary = Summary(grid=grid.name, store=str(path), total=len(cells))
    todo, todo_keys = _to_compute(path, cells, fn_name, version, retry_failed, summary)
    limit = len(todo) if max_cells is None else min(max_cells, len(todo))
    summary.pending = len(todo) - limit
    todo = todo[:limit]
    units, batched, locks = _units(todo, batch_by), batch_by is not None, _CellLocks(path)
    with tqdm(total=limit, desc=grid.name, unit="cell", disable=not progress) as bar:
        claim = _claimer(path, locks, todo, todo_keys, (fn_name, version, retry_failed),
                         summary, bar)
        try:
            results = (_execute_local(fn, todo, units, batched, claim) if executor == "local"
                       else _execute_dask(fn, todo, units, batched, claim, scheduler))
            for i, outcome in results:
                _write_record(path / f"{todo_keys[i]}.json",
                              {"key": todo_keys[i], "grid": grid.name, "fn": fn_name,
                               "params": todo[i], "version": version, **outcome})
                locks.release(todo_keys[i])
                summary.computed += 1
                summary.failed += outcome["status"] == "failed"
                bar.update(1)
        finally:
            locks.release_all()
    summary.seconds = time.perf_counter() - started
    return summary


# --------------------------------------------------------------------------- reading


_BASE_COLUMNS = ["grid", "fn", "status", "runtime_s", "error", "timestamp", "version", "key"]


def _row(record: dict) -> dict:
    """Flatten a record into one table row: params and metrics become columns.

    A metric whose name collides with a parameter or a base column is named ``metric_<name>``.
    """
    row = {name: record[name] for name in _BASE_COLUMNS}
    row.update(record["params"])
    for name, value in (record["metrics"] or {}).items():
        row[f"metric_{name}" if name in row else name] = value
    return row


def load_table(
    store: str | os.PathLike,
    grid: Grid | str | None = None,
    fn: Callable | str | None = None,
    version: str | None = None,
) -> pd.DataFrame:
    """Read the store as a tidy table: one row per record, params and metrics as columns.

    ``grid``: a :class:`Grid` keeps the records of its cells (in grid order), a string keeps
    the records written under that grid name; ``fn`` keeps one cell function's records;
    ``version`` keeps the records of one code version (as given to :func:`run_sweep`).
    Columns: grid, fn, the parameters, the metrics, then status, runtime_s, error,
    timestamp, version, key. Corrupt records are warned about and left out.
    """
    path = Path(store)
    if not path.is_dir():
        raise ValueError(f"store {path} is not a folder")
    wanted = {"fn": None if fn is None else (fn if isinstance(fn, str) else function_name(fn)),
              "grid": grid if isinstance(grid, str) else None, "version": version}
    order = None
    if isinstance(grid, Grid):
        order = {_canonical(c): i for i, c in enumerate(grid.cells())}
    records = [r for r in _records(path)
               if all(v is None or r[k] == v for k, v in wanted.items())
               and (order is None or _canonical(r["params"]) in order)]
    if order is not None:
        records.sort(key=lambda r: (order[_canonical(r["params"])], r["fn"], r["version"]))
        return _frame([_row(r) for r in records])
    records.sort(key=lambda r: (r["grid"], r["fn"], _canonical(r["params"]), r["version"]))
    return _sorted_by_params(_frame([_row(r) for r in records]), records)


def _records(path: Path) -> list[dict]:
    """Every well-formed record of the store ``path``; corrupt ones are warned about."""
    records = []
    for file in sorted(path.glob("*.json")):
        if file.name.startswith("."):
            continue
        record, why = _read_record(file)
        if record is None:
            _warn_corrupt(file, why, "left out of the table")
        else:
            records.append(record)
    return records


def _sorted_by_params(table: pd.DataFrame, records: list[dict]) -> pd.DataFrame:
    """Sort rows by grid, fn, then parameter values (numerically where they are numbers)."""
    names = list(dict.fromkeys(n for r in records for n in r["params"]))
    try:
        table = table.sort_values(["grid", "fn", *names], kind="stable", na_position="first")
    except TypeError:  # mixed types in a parameter column: keep the canonical-JSON order
        return table
    return table.reset_index(drop=True)


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Build the DataFrame with the base columns arranged around params and metrics."""
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=_BASE_COLUMNS)
    middle = [c for c in table.columns if c not in _BASE_COLUMNS]
    return table[["grid", "fn", *middle, *_BASE_COLUMNS[2:]]].reset_index(drop=True)


# --------------------------------------------------------------------------- files and CLI


_FILE_KEYS = {"name", "cell", "params", "fixed", "retry_failed"}


def resolve_function(spec: str) -> Callable:
    """Import ``"module:function"`` (the function may be ``Class.method``) and return it."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"cell function must be written 'module:function', got {spec!r}")
    module_name, attr = spec.split(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"cannot import module {module_name!r} of cell function {spec!r}: {err}"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module_name!r} has no {attr!r} (cell function {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{spec!r} is not callable")
    return obj


def read_grid_file(path: str | os.PathLike) -> tuple[Grid, Callable, dict]:
    """Read a YAML grid file; return ``(grid, cell function, run options)``.

    The run options are the optional ``retry_failed`` key, ready to be
    passed to :func:`run_sweep`. The format is shown in the module docstring.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"grid file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"grid file {path} is not UTF-8 text ({err.reason} at byte "
                         f"{err.start})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = ": ".join(filter(None, (getattr(err, "context", None),
                                       getattr(err, "problem", None)))) or str(err)
        raise ValueError(f"grid file {path}: {where}{what} (not valid YAML)") from None
    if not isinstance(spec, dict):
        raise ValueError(f"grid file {path} must hold a mapping with name, cell and params")
    unknown = set(spec) - _FILE_KEYS
    if unknown or "cell" not in spec:
        raise ValueError(
            f"grid file {path}: unknown keys {sorted(unknown)} or missing 'cell'; "
            f"allowed keys are {sorted(_FILE_KEYS)} (name, cell, params required)"
        )
    options = {k: checks.boolean(f"grid file {path}: {k}", spec[k])
               for k in ("retry_failed",) if k in spec}
    return Grid.from_dict(spec), resolve_function(spec["cell"]), options


def demo_cell(x: float, y: float = 0.0, seed: int = 0, fail: bool = False):
    """A cheap deterministic cell for tests and examples: ``sum = x + y + seed``, ``prod = x*y``.

    Raises ValueError when ``fail`` is true.
    """
    if fail:
        raise ValueError(f"demo_cell asked to fail at x={x}, y={y}, seed={seed}")
    return {"sum": x + y + seed, "prod": x * y, "seed_parity": seed % 2}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m recon sweep``."""
    parser = argparse.ArgumentParser(
        prog="recon sweep", description="Run a parameter grid with an on-disk cache (resumes)."
    )
    parser.add_argument("--grid", required=True, help="YAML grid file (name, cell, params, fixed)")
    parser.add_argument("--store", required=True, help="folder of the result records")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://...)")
    parser.add_argument("--max-cells", type=int, default=None, help="compute at most N cells now")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m recon sweep``: print the summary; exit status 1 if any cell failed, 2
    (with one line on stderr, no traceback) if the grid file, the options or the store are
    wrong; all of these are checked before any cell is computed."""
    args = build_parser().parse_args(argv)
    try:
        grid, fn, options = read_grid_file(args.grid)
        summary = run_sweep(
            grid, fn, args.store, scheduler=args.scheduler, max_cells=args.max_cells,
            version=code_version(), progress=not args.no_progress, **options,
        )
    except (ValueError, TypeError) as err:
        print(f"recon sweep: {err}", file=sys.stderr)
        return 2
    print(summary)
    return 1 if summary.failed else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
