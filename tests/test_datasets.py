"""torchvision loaders on tiny files in their real on-disk formats, and the embedded sets.

CIFAR and SVHN loaders verify each file's md5 against the list in the torchvision class. The
tests keep that check on: they write tiny files, compute *their* md5s and put them in the class's
list for the duration of the test (monkeypatch), so the verification code runs unchanged and real
users' downloads are still checked against the published sums.
"""

import hashlib
import pickle

import numpy as np
import pytest
import scipy.io
import torch

from dcrobench.datasets import load_dataset, stratified_subset
from dcrobench_plugins.datasets import BUILTIN_DATASETS
from dcrobench.errors import DatasetError
from tests.helpers import idx_bytes

SPECS = {d.name: d for d in BUILTIN_DATASETS}
rng = np.random.default_rng(0)


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_idx(path, array):
    path.write_bytes(idx_bytes(array))


@pytest.fixture
def mnist_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 20), ("t10k", 10)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return tmp_path


def test_mnist_reads_idx_files(mnist_root):
    train, test = load_dataset(SPECS["mnist"], mnist_root, False)
    assert train.images.shape == (20, 1, 28, 28) and test.images.shape == (10, 1, 28, 28)
    assert train.images.dtype == torch.float32 and 0 <= train.images.min() and train.images.max() <= 1
    assert train.labels.tolist() == [i % 10 for i in range(20)]
    raw = (mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()[16:16 + 784]
    assert torch.allclose(train.images[0].flatten() * 255, torch.tensor(list(raw), dtype=torch.float32))


def test_corrupt_mnist_file_is_a_clear_error(mnist_root):
    (mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(DatasetError, match="mnist"):
        load_dataset(SPECS["mnist"], mnist_root, False)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "svhn"])
def test_missing_dataset_says_how_to_get_it(tmp_path, name):
    with pytest.raises(DatasetError, match="--download"):
        load_dataset(SPECS[name], tmp_path / "empty", False)


def _cifar_files(monkeypatch, root, cls, folder, label_key, meta_key, n_classes):
    d = root / folder
    d.mkdir(parents=True)

    def batch(n):
        return {"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), label_key: list(np.arange(n) % n_classes)}

    files = [name for name, _ in cls.train_list + cls.test_list]
    sizes = {name: (6 if name in dict(cls.train_list) else 4) for name in files}
    written = {}
    for name in files:
        with open(d / name, "wb") as fh:
            pickle.dump(batch(sizes[name]), fh)
        written[name] = md5(d / name)
    with open(d / cls.meta["filename"], "wb") as fh:
        pickle.dump({meta_key: [f"c{i}" for i in range(n_classes)]}, fh)
    monkeypatch.setattr(cls, "train_list", [[n, written[n]] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, written[n]] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(d / cls.meta["filename"])})
    return d, sum(sizes[n] for n, _ in cls.train_list)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_python_batches_with_md5_verified(tmp_path, monkeypatch, name):
    import torchvision.datasets as tvd

    if name == "cifar10":
        d, n_train = _cifar_files(monkeypatch, tmp_path, tvd.CIFAR10, "cifar-10-batches-py", "labels", "label_names", 10)
    else:
        d, n_train = _cifar_files(monkeypatch, tmp_path, tvd.CIFAR100, "cifar-100-python", "fine_labels", "fine_label_names", 100)
    train, test = load_dataset(SPECS[name], tmp_path, False)
    assert train.images.shape == (n_train, 3, 32, 32) and len(test) == 4
    assert train.num_classes == (10 if name == "cifar10" else 100)
    # the md5 check is live: a changed byte is rejected
    first = d / (tvd.CIFAR10.train_list if name == "cifar10" else tvd.CIFAR100.train_list)[0][0]
    data = bytearray(first.read_bytes())
    data[-5] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="corrupted"):
        load_dataset(SPECS[name], tmp_path, False)


def test_svhn_reads_mat_files_with_md5_verified(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    split_list = {}
    for split, n in (("train", 7), ("test", 5)):
        url, filename, _ = tvd.SVHN.split_list[split]
        y = (np.arange(n) % 10)
        y[y == 0] = 10  # SVHN stores digit 0 as label 10
        scipy.io.savemat(tmp_path / filename, {"X": rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8), "y": y.reshape(-1, 1)})
        split_list[split] = [url, filename, md5(tmp_path / filename)]
    monkeypatch.setattr(tvd.SVHN, "split_list", {**tvd.SVHN.split_list, **split_list})
    train, test = load_dataset(SPECS["svhn"], tmp_path, False)
    assert train.images.shape == (7, 3, 32, 32) and len(test) == 5
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5, 6]
    (tmp_path / split_list["train"][1]).write_bytes(b"not a mat file")
    with pytest.raises(DatasetError):
        load_dataset(SPECS["svhn"], tmp_path, False)


@pytest.mark.parametrize("name,n_train,n_test", [("digits", 1438, 359), ("mnist5k", 4000, 1000)])
def test_embedded_sets_have_a_fixed_stratified_split(name, n_train, n_test):
    train, test = load_dataset(SPECS[name], None, False)
    assert (len(train), len(test)) == (n_train, n_test)
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) <= 1.0
    counts_tr, counts_te = np.array(train.class_counts()), np.array(test.class_counts())
    assert np.allclose(counts_te / (counts_tr + counts_te), 0.2, atol=0.01)
    again, _ = load_dataset(SPECS[name], None, False)
    assert train.fingerprint() == again.fingerprint()
    # train and test are disjoint images
    tr_rows = {bytes(r) for r in (train.images.flatten(1) * 255).round().to(torch.uint8).numpy()}
    te_rows = [bytes(r) for r in (test.images.flatten(1) * 255).round().to(torch.uint8).numpy()]
    assert sum(r in tr_rows for r in te_rows) < 0.02 * len(te_rows)  # (a few exact duplicate digits exist)


def test_stratified_subset_is_fixed_and_balanced():
    _, test = load_dataset(SPECS["mnist5k"], None, False)
    a, b = stratified_subset(test, 500), stratified_subset(test, 500)
    assert len(a) == 500 and a.class_counts() == [50] * 10
    assert torch.equal(a.images, b.images)


def test_embedded_tensor_cache_round_trips_and_heals(tmp_path, monkeypatch):
    from dcrobench.cache import cache_dir

    first, _ = load_dataset(SPECS["digits"], None, False)
    (entry,) = cache_dir("datasets").glob("digits-*.pt")
    cached, _ = load_dataset(SPECS["digits"], None, False)
    assert cached.fingerprint() == first.fingerprint()
    entry.write_bytes(b"damaged")
    healed, _ = load_dataset(SPECS["digits"], None, False)
    assert healed.fingerprint() == first.fingerprint()
