"""Image datasets: CIFAR-10 from a small archive in the official binary format built here,
scikit-learn's digits, scikit-image photo patches and whole photographs as thumbnails, and the
held-out pool of the SSIM baseline."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile

import numpy as np
import pytest

from recon import images
from recon.images import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, ChecksumError,
                          ImageDataset, UnsafeArchiveError, cifar10, from_sphere, load_images,
                          to_sphere)

FOLDER = "cifar-10-batches-bin"
PER_BATCH = 6  # records per data batch: labels (6*b + j) % 10, so every class appears 3 times


def _records(batch: int, count: int) -> list[tuple[int, np.ndarray]]:
    """Deterministic (label, pixels C x H x W uint8) records of one batch file."""
    rng = np.random.default_rng(100 + batch)
    return [((PER_BATCH * batch + j) % 10, rng.integers(0, 256, (3, 32, 32), dtype=np.uint8))
            for j in range(count)]


def _encode(records) -> bytes:
    return b"".join(bytes([label]) + pixels.tobytes() for label, pixels in records)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_archive(path, extra=None):
    """A ``cifar-10-binary.tar.gz`` shaped like the official one; returns its sha256 and the
    training records in file order. ``extra(tar)`` may add more members."""
    train = []
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(FOLDER)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        _add(tar, f"{FOLDER}/batches.meta.txt", ("\n".join(CIFAR10_CLASSES) + "\n\n").encode())
        for b in range(5):
            records = _records(b, PER_BATCH)
            train += records
            _add(tar, f"{FOLDER}/data_batch_{b + 1}.bin", _encode(records))
        _add(tar, f"{FOLDER}/test_batch.bin", _encode(_records(9, 10)))
        _add(tar, f"{FOLDER}/readme.html", b"<html></html>")
        if extra:
            extra(tar)
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), train


@pytest.fixture
def cifar(tmp_path):
    """(root, checksum, training records) of a small valid archive."""
    root = tmp_path / "data"
    root.mkdir()
    checksum, train = _write_archive(root / "cifar-10-binary.tar.gz")
    return root, checksum, train


def _hwc(records, index):
    return np.stack([records[i][1].transpose(1, 2, 0) for i in index])


# ----------------------------------------------------------------------------- CIFAR-10

def test_cifar10_binary_frog_vs_truck(cifar):
    root, checksum, train = cifar
    ds = load_images("cifar10", 4, root=root, checksum=checksum)
    labels = np.array([label for label, _ in train])
    frogs, trucks = np.flatnonzero(labels == 6)[:2], np.flatnonzero(labels == 9)[:2]
    np.testing.assert_array_equal(ds.index, np.concatenate([frogs, trucks]))
    np.testing.assert_array_equal(ds.y, [-1, -1, 1, 1])
    assert ds.y.dtype == np.float32 and ds.X.dtype == np.float32
    assert ds.classes == ("frog", "truck") and ds.name == "cifar10"
    assert ds.X.shape == (4, 3072) and ds.image_shape == (32, 32, 3)
    # pixel layout: H, W, C with channel c of pixel (h, w) at byte 1 + 1024 c + 32 h + w
    pixels = _hwc(train, ds.index)
    np.testing.assert_allclose(ds.to_images() * 255, pixels, atol=1e-3)
    first = train[ds.index[0]][1]
    np.testing.assert_allclose(ds.to_images()[0, 5, 7] * 255, first[:, 5, 7], atol=1e-3)
    # global standardisation: one mean/std over all n*d entries of the selection
    np.testing.assert_allclose(ds.mean, [pixels.mean() / 255], rtol=1e-5)
    np.testing.assert_allclose(ds.std, [(pixels / 255).std(ddof=1)], rtol=1e-4)
    assert abs(ds.X.mean()) < 1e-5 and abs(ds.X.std(ddof=1) - 1) < 1e-4


def test_cifar10_multiclass_channel_and_test_split(cifar):
    root, checksum, train = cifar
    ds = load_images("cifar10", 6, task="multiclass", k=3, normalization="channel",
                     root=root, checksum=checksum)
    assert ds.classes == ("airplane", "automobile", "bird")
    np.testing.assert_array_equal(ds.y, np.repeat(np.eye(3, dtype=np.float32), 2, axis=0))
    np.testing.assert_array_equal([train[i][0] for i in ds.index], [0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(ds.mean, CIFAR10_MEAN)
    np.testing.assert_allclose(ds.std, CIFAR10_STD)
    np.testing.assert_allclose(ds.to_images() * 255, _hwc(train, ds.index), atol=1e-3)
    np.testing.assert_allclose(ds.normalize(ds.to_images()), ds.X, atol=1e-5)

    named = load_images("cifar10", 2, task="multiclass", classes=["truck", 0], root=root,
                        checksum=checksum, split="test", downsample=4)
    assert named.classes == ("truck", "airplane") and named.image_shape == (8, 8, 3)
    test = _records(9, 10)
    np.testing.assert_array_equal([test[i][0] for i in named.index], [9, 0])
    block = test[named.index[0]][1].transpose(1, 2, 0)[:4, :4].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(named.to_images()[0, 0, 0] * 255, block, atol=1e-3)


def test_cifar10_seeded_selection_is_deterministic(cifar):
    root, checksum, _ = cifar
    a = load_images("cifar10", 4, seed=3, root=root, checksum=checksum)
    b = load_images("cifar10", 4, seed=3, root=root, checksum=checksum)
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(a.X, b.X)


def test_cifar10_reuses_verified_extraction(cifar):
    root, checksum, _ = cifar
    load_images("cifar10", 2, root=root, checksum=checksum)
    (root / "cifar-10-binary.tar.gz").unlink()
    assert load_images("cifar10", 2, root=root, checksum=checksum).n == 2
    with pytest.raises(FileNotFoundError):  # another checksum needs the archive again
        load_images("cifar10", 2, root=root, checksum="md5:" + "0" * 32)


def test_cifar10_root_from_environment(cifar, monkeypatch):
    root, checksum, _ = cifar
    monkeypatch.setenv("RECON_DATA", str(root))
    assert images.default_root() == root
    assert load_images("cifar10", 2, checksum=checksum).n == 2


def test_cifar10_wrong_checksum_refused(cifar):
    root, _, _ = cifar
    with pytest.raises(ChecksumError, match="checksum mismatch.*expected sha256 0{64}"):
        load_images("cifar10", 2, root=root, checksum="sha256:" + "0" * 64)
    with pytest.raises(ChecksumError, match=images.CIFAR10_MD5):  # the official md5 by default
        load_images("cifar10", 2, root=root)
    assert not (root / FOLDER).exists()


def _hostile(name=None, link=None):
    def extra(tar):
        if link:
            info = tarfile.TarInfo(f"{FOLDER}/link")
            info.type, info.linkname = link, "/etc/passwd"
            tar.addfile(info)
        else:
            _add(tar, name, b"evil")
    return extra


@pytest.mark.parametrize("extra, reason", [
    (_hostile("../evil.bin"), "'..'"),
    (_hostile(f"{FOLDER}/../../evil.bin"), "'..'"),
    (_hostile("/tmp/recon-evil.bin"), "absolute"),
    (_hostile(link=tarfile.SYMTYPE), "symbolic link"),
    (_hostile(link=tarfile.LNKTYPE), "hard link"),
])
def test_hostile_archive_members_refused(tmp_path, extra, reason):
    root = tmp_path / "a" / "b"
    root.mkdir(parents=True)
    checksum, _ = _write_archive(root / "cifar-10-binary.tar.gz", extra)
    with pytest.raises(UnsafeArchiveError, match=f"refusing to extract.*{reason}"):
        load_images("cifar10", 2, root=root, checksum=checksum)
    assert not (root / FOLDER).exists()
    assert not list(tmp_path.rglob("evil.bin"))


def test_missing_archive_message(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as err:
        load_images("cifar10", 2, root=root)
    message = str(err.value)
    assert str(root / "cifar-10-binary.tar.gz") in message
    assert "download=True" in message and images.CIFAR10_URL in message


def test_download_verifies_checksum(cifar, tmp_path, monkeypatch):
    source, checksum, _ = cifar
    payload = (source / "cifar-10-binary.tar.gz").read_bytes()
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(cifar10.urllib.request, "urlopen", fake_urlopen)
    bad = tmp_path / "bad"
    with pytest.raises(ChecksumError):
        load_images("cifar10", 2, root=bad, download=True)  # official md5 != the small one
    assert list(bad.iterdir()) == []  # the partial download is removed
    good = tmp_path / "good"
    assert load_images("cifar10", 2, root=good, download=True, checksum=checksum).n == 2
    assert urls == [images.CIFAR10_URL] * 2


def test_corrupt_batch_refused(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(b"\x00" * 3072)
    with pytest.raises(ValueError, match="not a positive multiple"):
        images.read_cifar10_batch(path)


# ----------------------------------------------------------------------------- digits, patches

def test_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    ds = load_images("digits", 20, classes=(3, "8"))
    assert ds.X.shape == (20, 64) and ds.image_shape == (8, 8, 1) and ds.classes == ("3", "8")
    np.testing.assert_array_equal(digits.target[ds.index], [3] * 10 + [8] * 10)
    np.testing.assert_array_equal(ds.y, [-1] * 10 + [1] * 10)
    np.testing.assert_allclose(ds.to_images()[..., 0] * 16, digits.images[ds.index], atol=1e-4)

    multi = load_images("digits", 30, task="multiclass", k=3, seed=1, downsample=2)
    assert multi.X.shape == (30, 16) and multi.y.shape == (30, 3)
    assert multi.image_shape == (4, 4, 1)
    np.testing.assert_array_equal(digits.target[multi.index], multi.labels)
    again = load_images("digits", 30, task="multiclass", k=3, seed=1, downsample=2)
    np.testing.assert_array_equal(multi.X, again.X)
    assert load_images("digits", 30, task="multiclass", k=3).classes == ("0", "1", "2")


def test_patches():
    ds = load_images("patches", 6, seed=0)
    assert ds.X.shape == (6, 3072) and ds.image_shape == (32, 32, 3)
    assert ds.classes == ("astronaut", "coffee")
    again = load_images("patches", 6, seed=0)
    np.testing.assert_array_equal(ds.X, again.X)
    assert not np.array_equal(ds.index, load_images("patches", 6, seed=1).index)
    # a patch is the grid cell its index names, in its photograph
    photo = images.photo("coffee")
    row, col = divmod(int(ds.index[3]), photo.shape[1] // 32)
    cell = photo[32 * row:32 * row + 32, 32 * col:32 * col + 32]
    np.testing.assert_allclose(ds.to_images()[3] * 255, cell, atol=1e-3)

    small = load_images("patches", 16, task="multiclass", k=8, downsample=4,
                        normalization="channel")
    assert small.X.shape == (16, 192) and small.image_shape == (8, 8, 3)
    assert small.classes == images.PHOTOS and small.mean.shape == (3,)
    np.testing.assert_allclose(small.normalize(small.to_images()), small.X, atol=1e-4)


@pytest.mark.parametrize("side", [16, 32])
def test_photos_are_whole_thumbnails(side):
    ds = load_images("photos", 10, side=side, normalization="none")
    assert ds.X.shape == (10, side * side * 3) and ds.image_shape == (side, side, 3)
    assert ds.classes == ("colour", "grayscale")
    np.testing.assert_array_equal(ds.y, [-1] * 5 + [1] * 5)
    pictures = ds.to_images()
    assert pictures.min() >= 0 and pictures.max() <= 1 and pictures.std() > 0.1
    # one whole picture per sample, in each group's order
    assert [images.ALL_PHOTOS[i] for i in ds.index] == [
        *images.COLOUR_PHOTOS[:5], *images.GRAYSCALE_PHOTOS[:5]]
    # grey pictures have three equal channels, colour ones do not
    assert np.ptp(pictures[5:], axis=-1).max() == 0 and np.ptp(pictures[:5], axis=-1).max() > 0.1
    # the astronaut thumbnail is the centre square of the photograph, resized
    from skimage.transform import resize

    whole = images.whole_photo("astronaut") / 255.0
    np.testing.assert_allclose(pictures[0], resize(whole, (side, side, 3), anti_aliasing=True),
                               atol=1e-4)
    again = load_images("photos", 10, side=side, normalization="none")
    np.testing.assert_array_equal(ds.X, again.X)


def test_photos_options():
    grey = load_images("photos", 4, side=16, channels=1, seed=3)
    assert grey.image_shape == (16, 16, 1) and grey.X.shape == (4, 256)
    assert np.array_equal(grey.X, load_images("photos", 4, side=16, channels=1, seed=3).X)
    assert not np.array_equal(grey.index, load_images("photos", 4, side=16, channels=1,
                                                      seed=4).index)
    multi = load_images("photos", 20, task="multiclass", k=2, side=16, downsample=2)
    assert multi.image_shape == (8, 8, 3) and multi.y.shape == (20, 2)
    assert sorted(multi.index) == list(range(len(images.ALL_PHOTOS)))
    assert images.source_shape("photos", 16) == (16, 16, 3)
    assert images.source_shape("digits") == (8, 8, 1)


def test_holdout_pool_leaves_the_training_images_out():
    ds = load_images("digits", 6, seed=2)
    pool = images.load_holdout(ds, 4)
    assert pool.classes == ds.classes and pool.normalization == "none"
    np.testing.assert_array_equal(pool.labels, [0] * 4 + [1] * 4)
    assert not set(pool.index) & set(ds.index)
    photos = load_images("photos", 14, side=16)
    held = images.load_holdout(photos, 5, side=16)
    assert held.image_shape == (16, 16, 3) and len(held.X) == 6  # 10 per group, 7 trained
    assert not set(held.index) & set(photos.index)
    with pytest.raises(ValueError, match="none is left to hold out"):
        images.load_holdout(load_images("photos", 20, side=16), 2, side=16)
    with pytest.raises(ValueError, match="pass the downsample"):
        images.load_holdout(photos, 2, side=32)


def test_sphere_round_trip():
    ds = load_images("digits", 4)
    X_sphere, scale = to_sphere(ds.X)
    np.testing.assert_allclose(np.linalg.norm(X_sphere, axis=1), np.sqrt(ds.d), rtol=1e-5)
    np.testing.assert_allclose(from_sphere(X_sphere, scale), ds.X, atol=1e-5)


def test_dataset_is_immutable_and_checks_shapes():
    ds = load_images("digits", 2, normalization="none")
    assert ds.mean == 0 and ds.std == 1 and ds.X.max() <= 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"
    with pytest.raises(ValueError):
        ds.X[0, 0] = 1.0
    with pytest.raises(ValueError, match=r"shape \(m, 64\)"):
        ds.to_images(np.zeros((2, 10)))
    assert isinstance(ds, ImageDataset) and ds.k == 2


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(name="mnist", n=2), ValueError, "unknown name 'mnist'.*'cifar10'"),
    (dict(name="digits", n=0), ValueError, "n must be"),
    (dict(name="digits", n="10"), TypeError, "n must be an integer"),
    (dict(name="digits", n=5), ValueError, "n must be even"),
    (dict(name="digits", n=10, task="multiclass", k=3), ValueError, "multiple of k=3"),
    (dict(name="digits", n=10, task="multiclass", k=11), ValueError, "k must be at most 10"),
    (dict(name="digits", n=10, task="multiclass", k=2, classes=(1, 2, 3)), ValueError,
     "does not match"),
    (dict(name="digits", n=10, task="regression"), ValueError, "unknown task"),
    (dict(name="digits", n=10, k=3), ValueError, "k must be 2"),
    (dict(name="digits", n=10, classes=("3",)), ValueError, "two classes"),
    (dict(name="digits", n=10, classes=("3", "3")), ValueError, "distinct"),
    (dict(name="digits", n=10, classes=("3", "x")), ValueError, "unknown class 'x'"),
    (dict(name="digits", n=10, classes=(3, 12)), ValueError, r"class index must lie in \[0, 9\]"),
    (dict(name="digits", n=10, classes="38"), TypeError, "classes must be a sequence"),
    (dict(name="digits", n=10, classes=(3.0, 8)), TypeError, "name .str. or an index"),
    (dict(name="digits", n=10, normalization="minmax"), ValueError, "unknown normalization"),
    (dict(name="digits", n=10, downsample=3), ValueError, "must divide"),
    (dict(name="digits", n=10, downsample=0), ValueError, "downsample must be"),
    (dict(name="digits", n=10, seed=-1), ValueError, "seed must be"),
    (dict(name="digits", n=400), ValueError, "only .* available"),
    (dict(name="patches", n=600), ValueError, "usable 32x32 cells"),
    (dict(name="patches", n=4, classes=("astronaut", "lena")), ValueError, "unknown class"),
    (dict(name="photos", n=22), ValueError, "which has 10: astronaut, chelsea.*at most 20"),
    (dict(name="photos", n=4, side=24), ValueError, "side must be one of 8, 16, 32, 64"),
    (dict(name="photos", n=4, channels=2), ValueError, "channels must be 1 .grey. or 3"),
    (dict(name="photos", n=4, classes=("colour", "sepia")), ValueError,
     "unknown class 'sepia'.*'grayscale'"),
    (dict(name="digits", n=4, side=16), ValueError, "side=16 only applies to dataset 'photos'"),
    (dict(name="cifar10", n=20000), ValueError, "5000 per class"),
    (dict(name="cifar10", n=2, split="val"), ValueError, "unknown split"),
    (dict(name="cifar10", n=2, checksum="md5:xyz"), ValueError, "checksum must be"),
    (dict(name="cifar10", n=2, checksum=123), TypeError, "checksum must be a string"),
])
def test_bad_input(tmp_path, kwargs, error, match):
    kwargs.setdefault("root", tmp_path / "no-archive")  # errors come before the archive check
    with pytest.raises(error, match=match):
        load_images(**kwargs)


def test_bad_root_type():
    with pytest.raises(TypeError, match="root must be a path"):
        load_images("cifar10", 2, root=3)


def test_downsampled_shape_and_source_shapes():
    assert images.downsampled_shape((32, 32, 3), 4) == (8, 8, 3)
    with pytest.raises(ValueError, match="downsample=3 must divide the 8x8"):
        images.downsampled_shape((8, 8, 1), 3)
    for name in ("digits", "patches", "photos"):
        assert load_images(name, 2).image_shape == images.SOURCE_SHAPES[name]
