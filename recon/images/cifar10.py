"""CIFAR-10 read with numpy from its official *binary* archive ``cifar-10-binary.tar.gz``
(never pickle). The archive is checked against its published md5 before it is opened and is
extracted member by member only after every member has been vetted (no absolute paths, no
``..``, no links, no devices)."""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PureWindowsPath

import numpy as np

from recon import checks
from recon.images.dataset import ImageDataset
from recon.images.selection import DEFAULT_PAIRS, finish, make_request, select

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_SPLITS = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                  "test": ("test_batch.bin",)}
CIFAR10_PER_CLASS = {"train": 5000, "test": 1000}
CIFAR10_META = "batches.meta.txt"
CIFAR10_SHAPE = (32, 32, 3)
CIFAR10_RECORD = 1 + 32 * 32 * 3  # label byte + channel-major R, G, B planes
# Per-channel training-set statistics of CIFAR-10 in [0, 1], as in the authors' ResNet script.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.247, 0.243, 0.261)
_MARKER = ".recon-checksum"


class ChecksumError(ValueError):
    """A file's digest differs from the expected one."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder, or is a link/device."""



def default_root() -> Path:
    """Where datasets live: ``$RECON_DATA`` if set, else ``~/.cache/recon``."""
    return Path(os.environ.get("RECON_DATA") or Path.home() / ".cache" / "recon")


def _root(root) -> Path:
    if root is None:
        return default_root()
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path (str or os.PathLike) or None, got {root!r} "
                        f"(type {type(root).__name__})")
    return Path(root).expanduser()


def _parse_checksum(checksum) -> tuple[str, str]:
    """``(algorithm, hex digest)`` from ``"md5:<hex>"``, ``"sha256:<hex>"`` or bare hex."""
    if checksum is None:
        return "md5", CIFAR10_MD5
    if not isinstance(checksum, str):
        raise TypeError(f"checksum must be a string like 'md5:<hex>' or 'sha256:<hex>', got "
                        f"{checksum!r} (type {type(checksum).__name__})")
    algorithm, _, digest = checksum.strip().lower().rpartition(":")
    algorithm = algorithm or {32: "md5", 64: "sha256"}.get(len(digest), "")
    lengths = {"md5": 32, "sha256": 64}
    if lengths.get(algorithm) != len(digest) or any(ch not in "0123456789abcdef" for ch in digest):
        raise ValueError(f"checksum must be 'md5:' + 32 hex digits or 'sha256:' + 64 hex digits "
                         f"(or the bare digits), got {checksum!r}")
    return algorithm, digest


def file_checksum(path, algorithm: str = "md5") -> str:
    """Hex digest of the file at ``path`` with ``hashlib``'s ``algorithm``."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(functools.partial(f.read, 1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path, checksum=None) -> str:
    """Check the file at ``path`` against ``checksum`` (default: the official CIFAR-10 md5);
    raise :class:`ChecksumError` on a mismatch. Returns the verified ``"algo:hex"``."""
    algorithm, expected = _parse_checksum(checksum)
    actual = file_checksum(path, algorithm)
    if actual != expected:
        raise ChecksumError(
            f"checksum mismatch for {path}: expected {algorithm} {expected}, got {actual}. "
            "The file is corrupt, truncated or not the official archive: delete it and put a "
            "fresh copy there (or use download=True); pass checksum='md5:...'/'sha256:...' only "
            "if you use a different archive on purpose.")
    return f"{algorithm}:{expected}"


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` must not be extracted, or None if it is a plain file/folder inside."""
    name = member.name
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or \
            PureWindowsPath(name).is_absolute():
        return "has an absolute path"
    if ".." in PureWindowsPath(name).parts:
        return "has a '..' component that leaves the target folder"
    if member.issym() or member.islnk():
        return f"is a {'symbolic' if member.issym() else 'hard'} link (to {member.linkname!r})"
    if not (member.isfile() or member.isdir()):
        return "is not a regular file or folder (device, fifo, ...)"
    return None


def extract_archive(archive, target, folder: str) -> Path:
    """Extract the regular files under ``folder/`` of the ``.tar.gz`` ``archive`` into
    ``target`` after vetting *every* member; raise :class:`UnsafeArchiveError` if any member
    has an absolute path, a ``..`` component, is a link or a device. Returns ``target/folder``.
    The folder is written to a temporary place in ``target`` and moved in when complete."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            reason = _unsafe_reason(member)
            if reason:
                raise UnsafeArchiveError(
                    f"refusing to extract {archive}: member {member.name!r} {reason}. Only plain "
                    f"files inside the target folder are accepted; this is not the official "
                    f"archive.")
        wanted = [m for m in members if m.isfile()
                  and posixpath.normpath(m.name).startswith(folder + "/")]
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
        try:
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=wanted, **extra)
            destination = target / folder
            if destination.exists():
                shutil.rmtree(destination)
            (staging / folder).mkdir(exist_ok=True)
            os.replace(staging / folder, destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return destination


def download_cifar10(root=None, checksum=None, url: str = CIFAR10_URL) -> Path:
    """Download the CIFAR-10 binary archive into ``root`` (default :func:`default_root`) with
    urllib, verify its checksum, and only then move it to ``root/cifar-10-binary.tar.gz``."""
    root = _root(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / CIFAR10_ARCHIVE
    fd, partial = tempfile.mkstemp(prefix=CIFAR10_ARCHIVE, suffix=".part", dir=root)
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    shutil.copyfileobj(response, f)
            except (urllib.error.URLError, OSError) as e:
                raise OSError(f"could not download {url} ({e}); on a machine without internet "
                              f"put {CIFAR10_ARCHIVE} at {archive} yourself") from e
        verify_checksum(partial, checksum)
        os.replace(partial, archive)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return archive


def prepare_cifar10(root=None, *, download: bool = False, checksum=None) -> Path:
    """Return the folder ``root/cifar-10-batches-bin`` holding the extracted binary batches.

    It is reused when a previous extraction recorded the same verified checksum; otherwise
    ``root/cifar-10-binary.tar.gz`` (downloaded first with ``download=True``) is verified against
    ``checksum`` (default the official md5) and safely extracted."""
    root = _root(root)
    expected = "{}:{}".format(*_parse_checksum(checksum))
    folder, archive = root / CIFAR10_FOLDER, root / CIFAR10_ARCHIVE
    marker = folder / _MARKER
    if marker.is_file() and marker.read_text().strip() == expected:
        return folder
    if not archive.is_file():
        if not download:
            raise FileNotFoundError(
                f"CIFAR-10 binary archive not found: looked for {archive}. Put "
                f"{CIFAR10_ARCHIVE} (the official binary version) in {root} (choose the folder "
                f"with root=... or the RECON_DATA environment variable), or call with "
                f"download=True to fetch it from {CIFAR10_URL} (needs internet).")
        download_cifar10(root, checksum)
    verify_checksum(archive, checksum)
    folder = extract_archive(archive, root, CIFAR10_FOLDER)
    missing = [f for fs in CIFAR10_SPLITS.values() for f in fs + (CIFAR10_META,)
               if not (folder / f).is_file()]
    if missing:
        raise ValueError(f"{archive} lacks {', '.join(missing)} under {CIFAR10_FOLDER}/; it is "
                         "not a complete CIFAR-10 binary archive")
    marker.write_text(expected + "\n")
    return folder


def read_cifar10_batch(path) -> np.ndarray:
    """Records of a CIFAR-10 binary batch file as a read-only ``uint8`` array ``m x 3073``:
    column 0 is the label, columns 1.. the 32x32 R, then G, then B planes (row-major)."""
    size = os.path.getsize(path)
    if size == 0 or size % CIFAR10_RECORD:
        raise ValueError(f"{path} has {size} bytes, not a positive multiple of the "
                         f"{CIFAR10_RECORD}-byte CIFAR-10 record: the file is corrupt")
    records = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, CIFAR10_RECORD)
    if records[:, 0].max() >= len(CIFAR10_CLASSES):
        raise ValueError(f"{path} holds labels >= {len(CIFAR10_CLASSES)}: the file is corrupt")
    return records


def _check_meta(folder: Path) -> None:
    """The class names in ``batches.meta.txt`` must be CIFAR-10's, in order."""
    names = tuple(line.strip() for line in (folder / CIFAR10_META).read_text().splitlines()
                  if line.strip())
    if names != CIFAR10_CLASSES:
        raise ValueError(f"{folder / CIFAR10_META} lists classes {names}, expected "
                         f"{CIFAR10_CLASSES}: not a CIFAR-10 archive")


def load_cifar10(n: int, *, task: str = "binary", classes=None, k=None,
                 normalization: str = "global", downsample: int = 1, seed=None, root=None,
                 download: bool = False, checksum=None, split: str = "train") -> ImageDataset:
    """``n`` CIFAR-10 images (see :func:`recon.images.load_images` for the selection arguments).

    Args:
        root: folder holding ``cifar-10-binary.tar.gz`` (default :func:`default_root`).
        download: fetch the archive from :data:`CIFAR10_URL` when it is missing.
        checksum: expected digest of the archive, ``"md5:<hex>"``, ``"sha256:<hex>"`` or a
            bare hex string (32 digits = md5, 64 = sha256); default the official md5.
        split: ``"train"`` (``data_batch_1..5``, 50000 images) or ``"test"`` (10000).
    """
    split = checks.choice("split", split, CIFAR10_SPLITS)
    request = make_request(n, task, classes, k, normalization, downsample, seed,
                           CIFAR10_CLASSES, DEFAULT_PAIRS["cifar10"], CIFAR10_SHAPE)
    if request.per_class > CIFAR10_PER_CLASS[split]:
        raise ValueError(f"n={n} asks for {request.per_class} images per class, but the "
                         f"CIFAR-10 {split} split has {CIFAR10_PER_CLASS[split]} per class")
    folder = prepare_cifar10(root, download=download, checksum=checksum)
    _check_meta(folder)
    batches = [read_cifar10_batch(folder / f) for f in CIFAR10_SPLITS[split]]
    labels = np.concatenate([b[:, 0] for b in batches])
    index = select(labels, request, CIFAR10_CLASSES)
    offsets = np.cumsum([0] + [len(b) for b in batches])
    which = np.searchsorted(offsets, index, side="right") - 1
    records = np.empty((len(index), CIFAR10_RECORD), np.uint8)
    for b, batch in enumerate(batches):
        records[which == b] = batch[index[which == b] - offsets[b]]
    pixels = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # C,H,W -> H,W,C
    images = pixels.astype(np.float32) / 255
    stats = (CIFAR10_MEAN, CIFAR10_STD) if normalization == "channel" else None
    return finish("cifar10", images, index, request, stats)
