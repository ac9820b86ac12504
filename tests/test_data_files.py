"""`dcrobench data status | fetch | import`: dataset files recognised by content and put in place without a network.

Tiny IDX files in MNIST's exact format (20 train and 10 test 28x28 images, labels 0-9) stand in for
Fashion-MNIST: a test plugin registers ``tiny-fashion``, the real fashion-mnist spec declaring those
files with their own md5s, so the real loader (torchvision's FashionMNIST) reads what was imported.
Every refusal must be one ``error:`` line naming the file and why, with the data root byte-for-byte
unchanged (no file, no folder).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dcrobench.registry
from dcrobench.cli import main
from dcrobench.datasets import DataFile, load_dataset
from dcrobench.errors import DatasetError
from dcrobench.hookspecs import hookimpl
from dcrobench.registry import build_registries
from dcrobench_plugins.datasets import BUILTIN_DATASETS
from tests.helpers import idx_bytes

SPECS = {d.name: d for d in BUILTIN_DATASETS}
RAW = "FashionMNIST/raw"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _tiny_idx() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    contents = {}
    for prefix, n in (("train", 20), ("t10k", 10)):
        contents[f"{prefix}-images-idx3-ubyte"] = idx_bytes(rng.integers(0, 256, (n, 28, 28)))
        contents[f"{prefix}-labels-idx1-ubyte"] = idx_bytes(np.arange(n) % 10)
    return contents


IDX = _tiny_idx()
TINY_FASHION = dataclasses.replace(
    SPECS["fashion-mnist"], name="tiny-fashion",
    files=tuple(DataFile(f"{RAW}/{name}", md5(data), len(data)) for name, data in IDX.items()))

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_MEMBERS = {name: f"{name} of a tiny CIFAR stand-in".encode() for name in ("data_batch_1", "test_batch", "batches.meta")}


def _tar(members: dict[str, bytes], mode: str = "w:gz", extra=()) -> bytes:
    """A tar archive of ``members`` (name -> bytes) plus ``extra`` (TarInfo, bytes or None) entries."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, target: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, len(data or b"")
    return info, data


OFFICIAL_CIFAR = _tar({f"{CIFAR_DIR}/{n}": d for n, d in CIFAR_MEMBERS.items()}, extra=[
    _member(f"{CIFAR_DIR}/readme.html", b"<html>not a data file</html>"),
    _member("../escaped", CIFAR_MEMBERS["test_batch"] + b"!"),
    _member(f"{CIFAR_DIR}/link", kind=tarfile.SYMTYPE, target="/etc/passwd"),
])
TINY_CIFAR = dataclasses.replace(
    SPECS["cifar10"], name="tiny-cifar",
    files=tuple(DataFile(f"{CIFAR_DIR}/{n}", md5(d)) for n, d in CIFAR_MEMBERS.items()),
    archives=(DataFile("tiny-cifar-python.tar.gz", md5(OFFICIAL_CIFAR)),))


class TinyPlugin:
    def __init__(self, specs):
        self.specs = specs

    @hookimpl
    def register_datasets(self):
        return self.specs


def _written_by_download(root: Path, download: bool):
    """A loader whose download writes the tiny files (torchvision's, with a network)."""
    if download:
        for f, data in zip(TINY_FASHION.files, IDX.values(), strict=True):
            (root / f.path).parent.mkdir(parents=True, exist_ok=True)
            (root / f.path).write_bytes(data)
    return TINY_FASHION.load(root, False)


def _no_network(root: Path, download: bool):
    raise DatasetError("Error downloading train-images-idx3-ubyte.gz: <urlopen error [Errno -2] Name or service not known>")


@pytest.fixture(scope="module")
def regs():
    return build_registries(extra_plugins={"tiny": TinyPlugin([
        TINY_FASHION, TINY_CIFAR,
        dataclasses.replace(TINY_FASHION, name="tiny-online", load=_written_by_download),
        dataclasses.replace(TINY_FASHION, name="tiny-offline", load=_no_network),
    ])})


@pytest.fixture
def cli(regs, monkeypatch, tmp_path):
    """Runs `dcrobench data ...` against the test registry with the data root tmp_path/root."""
    monkeypatch.setattr(dcrobench.registry, "registries", lambda: regs)
    root = tmp_path / "root"

    def invoke(*args: str | Path):
        return CliRunner().invoke(main, ["data", *map(str, args), "--data-root", str(root)])

    invoke.root = root
    return invoke


@pytest.fixture
def given(tmp_path) -> Path:
    """The tiny files as a user would have copied them: raw, under the names the loader expects."""
    folder = tmp_path / "given"
    folder.mkdir()
    for name, data in IDX.items():
        (folder / name).write_bytes(data)
    return folder


def gz(data: bytes, filename: str = "", mtime: int = 0) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename=filename, mode="wb", fileobj=buf, mtime=mtime) as fh:
        fh.write(data)
    return buf.getvalue()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file's sha256 and every folder under ``folder``: equal snapshots = nothing changed on disk."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(folder.rglob("*"))}


def status_row(result, name: str) -> str:
    return next(line for line in result.output.splitlines() if line.split()[:1] == [name])


# --- importing ------------------------------------------------------------------------------------
def test_import_raw_files_then_status_is_present_and_the_loader_reads_them(cli, given):
    before = cli("status")
    assert before.exit_code == 0, before.output
    assert status_row(before, "tiny-fashion").split()[1] == "missing" and "none of its 4 files" in before.output

    res = cli("import", "tiny-fashion", *sorted(given.iterdir()))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert sorted(lines[:4]) == sorted(f"installed {RAW}/{n} (from {given / n})" for n in IDX)
    assert lines[4].startswith("tiny-fashion: complete, 4 files verified")
    for name, data in IDX.items():
        assert (cli.root / RAW / name).read_bytes() == data
    assert not [p for p in (cli.root / RAW).iterdir() if p.name.startswith(".")]  # no temporary file left

    after = cli("status")
    assert status_row(after, "tiny-fashion").split()[1:4] == ["present", "4", "files"]
    train, test = load_dataset(TINY_FASHION, cli.root, False)
    assert train.images.shape == (20, 1, 28, 28) and test.images.shape == (10, 1, 28, 28)
    assert train.labels.tolist() == [i % 10 for i in range(20)] and test.labels.tolist() == list(range(10))
    first_image = np.frombuffer(IDX["train-images-idx3-ubyte"][16:16 + 784], np.uint8)
    assert np.allclose(train.images[0].flatten().numpy() * 255, first_image)


def test_gz_files_are_recognised_by_their_content_whatever_their_gzip_header(cli, tmp_path):
    data = IDX["train-images-idx3-ubyte"]
    one, other = tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "copy" / "train-images-idx3-ubyte.gz"
    other.parent.mkdir()
    one.write_bytes(gz(data, "train-images-idx3-ubyte", mtime=1_500_000_000))
    other.write_bytes(gz(data, "some-other-name", mtime=1))
    assert md5(one.read_bytes()) != md5(other.read_bytes())  # the .gz files differ, their content does not

    res = cli("import", "tiny-fashion", one)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == f"installed {RAW}/train-images-idx3-ubyte (from {one})"
    assert (cli.root / RAW / "train-images-idx3-ubyte").read_bytes() == data  # installed decompressed
    assert "3 files missing" in res.output

    again = cli("import", "tiny-fashion", other)
    assert again.exit_code == 0, again.output
    assert again.output.startswith(f"already present {RAW}/train-images-idx3-ubyte (identical to {other})")


def test_content_decides_a_file_named_like_another_is_installed_as_what_it_is(cli, tmp_path):
    """Labels named as images, images named as labels: each goes where its content belongs, and says so."""
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    (swapped / "t10k-images-idx3-ubyte").write_bytes(IDX["t10k-labels-idx1-ubyte"])
    (swapped / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(IDX["t10k-images-idx3-ubyte"]))
    res = cli("import", "tiny-fashion", swapped / "t10k-images-idx3-ubyte", swapped / "t10k-labels-idx1-ubyte.gz")
    assert res.exit_code == 0, res.output
    assert (f"installed {RAW}/t10k-labels-idx1-ubyte (from {swapped / 't10k-images-idx3-ubyte'}; recognised by content, "
            "it was named t10k-images-idx3-ubyte)") in res.output
    assert "recognised by content, it was named t10k-labels-idx1-ubyte)" in res.output
    assert (cli.root / RAW / "t10k-labels-idx1-ubyte").read_bytes() == IDX["t10k-labels-idx1-ubyte"]
    assert (cli.root / RAW / "t10k-images-idx3-ubyte").read_bytes() == IDX["t10k-images-idx3-ubyte"]


def test_an_archive_installs_only_its_declared_members_at_their_declared_paths(cli, tmp_path):
    archive = tmp_path / "tiny-cifar-python.tar.gz"
    archive.write_bytes(OFFICIAL_CIFAR)
    res = cli("import", "tiny-cifar", archive)
    assert res.exit_code == 0, res.output
    assert f"installed {CIFAR_DIR}/data_batch_1 (from {archive}:{CIFAR_DIR}/data_batch_1, the official " \
           "tiny-cifar-python.tar.gz)" in res.output
    assert "tiny-cifar: complete, 3 files verified" in res.output
    # readme, the ../ member and the symlink are never written, inside the data root or outside it
    assert sorted(snapshot(cli.root)) == [CIFAR_DIR, *sorted(f"{CIFAR_DIR}/{n}" for n in CIFAR_MEMBERS)]
    assert not (tmp_path / "escaped").exists()


def test_an_archive_repacked_otherwise_is_accepted_by_its_members(cli, tmp_path):
    archive = tmp_path / "repacked.tar.bz2"
    archive.write_bytes(_tar({f"other-folder/{n}": d for n, d in CIFAR_MEMBERS.items()}, mode="w:bz2"))
    res = cli("import", "tiny-cifar", archive)
    assert res.exit_code == 0, res.output
    assert "official" not in res.output and "tiny-cifar: complete" in res.output
    assert (cli.root / CIFAR_DIR / "test_batch").read_bytes() == CIFAR_MEMBERS["test_batch"]


def test_status_names_a_damaged_file_and_exits_zero(cli, given):
    assert cli("import", "tiny-fashion", *given.iterdir()).exit_code == 0
    damaged = cli.root / RAW / "t10k-labels-idx1-ubyte"
    damaged.write_bytes(IDX["t10k-labels-idx1-ubyte"][:-1] + b"\x07")  # same size, one byte changed
    res = cli("status")
    assert res.exit_code == 0, res.output
    row = status_row(res, "tiny-fashion")
    assert row.split()[1] == "damaged" and f"{RAW}/t10k-labels-idx1-ubyte (md5 " in row
    assert status_row(res, "digits").split()[1] == "embedded"


def test_fetch_downloads_with_the_loader_then_verifies(cli):
    res = cli("fetch", "tiny-online")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == "tiny-online: complete, 4 files verified"


def test_fetch_without_a_network_is_one_line_pointing_to_import(cli):
    res = cli("fetch", "tiny-offline")
    assert res.exit_code not in (0, None), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no network?" in errors[0] and "dcrobench data import tiny-offline FILE..." in errors[0]


# --- refusals: one line, nothing written ----------------------------------------------------------
def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _swap_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


# each case: (id, args after `data import` given the folder of good files, the message)
REFUSALS = [
    ("wrong-file", lambda g: ["tiny-fashion", _write(g / "x" / "train-images-idx3-ubyte", _swap_byte(IDX["train-images-idx3-ubyte"]))],
     "is not the train-images-idx3-ubyte of dataset 'tiny-fashion': content md5"),
    ("truncated", lambda g: ["tiny-fashion", _write(g / "x" / "train-images-idx3-ubyte", IDX["train-images-idx3-ubyte"][:5000])],
     "5000 bytes instead of 15696 (truncated?)"),
    ("truncated-renamed", lambda g: ["tiny-fashion", _write(g / "x" / "part.bin", IDX["train-images-idx3-ubyte"][:5000])],
     "part.bin (content md5"),
    ("unknown-file", lambda g: ["tiny-fashion", _write(g / "x" / "notes.txt", b"hello")], "is none of the files of dataset"),
    ("truncated-gz", lambda g: ["tiny-fashion", _write(g / "x" / "t.gz", gz(IDX["train-images-idx3-ubyte"])[:300])],
     "t.gz: EOFError"),
    ("corrupt-gz", lambda g: ["tiny-fashion", _write(g / "x" / "c.gz", b"\x1f\x8b" + b"\x00" * 40)], "c.gz"),
    ("folder", lambda g: ["tiny-fashion", g], "is a folder, not a file"),
    ("no-such-file", lambda g: ["tiny-fashion", g / "nope"], "nope: no such file"),
    ("given-twice", lambda g: ["tiny-fashion", g / "t10k-labels-idx1-ubyte", g / "t10k-labels-idx1-ubyte"],
     "give each file once"),
    ("same-content-twice", lambda g: ["tiny-fashion", g / "t10k-labels-idx1-ubyte",
                                      _write(g / "x" / "labels.gz", gz(IDX["t10k-labels-idx1-ubyte"]))],
     "are both FashionMNIST/raw/t10k-labels-idx1-ubyte"),
    ("good-then-bad", lambda g: ["tiny-fashion", *sorted(g.glob("*-ubyte")), _write(g / "x" / "bad", b"bad")],
     "bad (content md5"),
    ("unknown-dataset", lambda g: ["tiny-fashon", g / "t10k-labels-idx1-ubyte"], "Did you mean: tiny-fashion"),
    ("embedded-dataset", lambda g: ["digits", g / "t10k-labels-idx1-ubyte"], "dataset 'digits' is embedded"),
    ("would-replace", lambda g: ["tiny-fashion", g / "train-labels-idx1-ubyte"],
     "train-labels-idx1-ubyte is already there with other content"),
    ("damaged-archive", lambda g: ["tiny-cifar", _write(g / "x" / "a.tar.gz", _tar({
        f"{CIFAR_DIR}/test_batch": CIFAR_MEMBERS["test_batch"], f"{CIFAR_DIR}/data_batch_1": b"damaged"}))],
     f"member {CIFAR_DIR}/data_batch_1 is not the data_batch_1 of dataset 'tiny-cifar'"),
    ("unrelated-archive", lambda g: ["tiny-cifar", _write(g / "x" / "a.tar", _tar({"x/y": b"y"}, mode="w"))],
     "holds none of the files of dataset 'tiny-cifar'"),
    ("truncated-archive", lambda g: ["tiny-cifar", _write(g / "x" / "a.tar.gz", OFFICIAL_CIFAR[:200])], "a.tar.gz"),
]


@pytest.mark.parametrize("case_id,build,message", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_a_bad_import_is_refused_with_one_line_and_the_data_root_is_unchanged(cli, given, case_id, build, message):
    # the data root already holds one good file, one damaged file, and something of the user's
    _write(cli.root / RAW / "t10k-images-idx3-ubyte", IDX["t10k-images-idx3-ubyte"])
    _write(cli.root / RAW / "train-labels-idx1-ubyte", _swap_byte(IDX["train-labels-idx1-ubyte"]))
    _write(cli.root / "notes.txt", b"mine")
    before = snapshot(cli.root)
    res = cli("import", *build(given))
    assert res.exit_code not in (0, None), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], res.output
    assert snapshot(cli.root) == before


def test_the_refusals_cover_the_catalogue():
    assert len(REFUSALS) >= 15 and len({c[0] for c in REFUSALS}) == len(REFUSALS)


# --- the real registry ------------------------------------------------------------------------------
def test_mnist_and_fashion_mnist_declare_the_md5s_of_their_decompressed_files():
    expected = {
        "mnist": ("MNIST", ["6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                            "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"]),
        "fashion-mnist": ("FashionMNIST", ["f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                                           "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"]),
    }
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for dataset, (folder, md5s) in expected.items():
        files = SPECS[dataset].data_files()
        assert [(f.path, f.md5) for f in files] == [(f"{folder}/raw/{n}", m) for n, m in zip(names, md5s)]
        assert [f.size for f in files] == [47_040_016, 60_008, 7_840_016, 10_008]


def test_cifar_and_svhn_declare_torchvisions_own_lists():
    import torchvision.datasets as tvd

    for name, cls in (("cifar10", tvd.CIFAR10), ("cifar100", tvd.CIFAR100)):
        declared = {f.path: f.md5 for f in SPECS[name].data_files()}
        listed = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
        assert declared == {f"{cls.base_folder}/{n}": m for n, m in listed}
        assert [(a.path, a.md5) for a in SPECS[name].data_archives()] == [(cls.filename, cls.tgz_md5)]
    svhn = {f.path: (f.md5, f.required) for f in SPECS["svhn"].data_files()}
    assert svhn == {filename: (m, split != "extra") for split, (_, filename, m) in tvd.SVHN.split_list.items()}
    assert SPECS["digits"].data_files() == () and SPECS["mnist5k"].data_files() == ()


def test_fashion_mnist_is_listed():
    res = CliRunner().invoke(main, ["list", "datasets"])
    assert res.exit_code == 0, res.output
    assert any(line.split()[:1] == ["fashion-mnist"] for line in res.output.splitlines())


@pytest.mark.parametrize("path", ["../outside", "/etc/passwd", ""])
def test_a_declared_file_cannot_point_outside_the_data_root(path):
    with pytest.raises(ValueError, match="under the data root"):
        DataFile(path, "0" * 32)
