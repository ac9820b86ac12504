"""`import-set`: sets distilled elsewhere (MTT, DC/DSA/DM, plain tensors) round-trip and are scored."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import dcrobench
from dcrobench.cli import main
from dcrobench.datasets import load_dataset
from dcrobench.errors import DcrobenchError, MethodError
from dcrobench.importing import NORMALIZATION_PRESETS, parse_normalization
from dcrobench.methods import CompressedSet
from dcrobench.registry import registries
from dcrobench.results import record_paths
from tests.helpers import TINY_PROTOCOL

MEAN, STD = NORMALIZATION_PRESETS["mnist"]


class NotATensor:  # a Python object: torch.load(weights_only=True) must refuse it
    pass


@pytest.fixture(scope="module")
def distilled():
    """A 'distilled' digits set made outside dcrobench: 3 images per class, pixels in [0, 1]."""
    train, _ = load_dataset(registries().datasets.get("digits"), None, False)
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([train.class_indices(c)[torch.randperm(train.class_indices(c).numel(), generator=g)[:3]]
                     for c in range(10)])
    images = (train.images[idx] * 0.8 + 0.1 * torch.rand(train.images[idx].shape, generator=g)).clamp(0, 1)
    return images, train.labels[idx].clone()


def normalise(images):
    return (images - MEAN[0]) / STD[0]


def check_round_trip(comp, images, labels):
    assert torch.allclose(comp.images, images, atol=1e-5) and torch.equal(comp.labels, labels)
    assert comp.provenance.per_class_counts == [3] * 10 and comp.provenance.budget == 3
    assert comp.provenance.source["plugin"] == "import-set"


def test_mtt_files_round_trip(tmp_path, distilled):
    images, labels = distilled
    torch.save(normalise(images), tmp_path / "images_best.pt")
    torch.save(labels, tmp_path / "labels_best.pt")
    torch.save(torch.tensor(0.01), tmp_path / "lr_best.pt")
    files = [tmp_path / "labels_best.pt", tmp_path / "lr_best.pt", tmp_path / "images_best.pt"]  # any order
    comp = dcrobench.import_set(files, fmt="mtt", dataset="digits", name="mtt-official", normalized="mnist",
                                out=tmp_path / "set.pt")
    check_round_trip(comp, images, labels)
    back = CompressedSet.load(tmp_path / "set.pt")
    assert back.provenance.method == "mtt-official" and back.provenance.params["source_format"] == "mtt"
    import hashlib
    hashes = {f["name"]: f["sha256"] for f in back.provenance.params["files"]}
    assert hashes["images_best.pt"] == hashlib.sha256((tmp_path / "images_best.pt").read_bytes()).hexdigest()


def test_dc_result_file_round_trips_the_chosen_experiment(tmp_path, distilled):
    images, labels = distilled
    other = torch.zeros_like(images)
    torch.save({"data": [[normalise(other), labels], [normalise(images), labels]],
                "accs_all_exps": {"ConvNet": [0.51, 0.52]}}, tmp_path / "res_DM_MNIST.pt")
    comp = dcrobench.import_set(tmp_path / "res_DM_MNIST.pt", fmt="dc", dataset="digits", name="dm-official",
                                normalized=(MEAN, STD), experiment=1)
    check_round_trip(comp, images, labels)
    with pytest.raises(DcrobenchError, match="experiment 2 asked, the file holds 2"):
        dcrobench.import_set(tmp_path / "res_DM_MNIST.pt", fmt="dc", dataset="digits", name="x", normalized="mnist",
                             experiment=2)


def test_plain_tensor_files_round_trip(tmp_path, distilled):
    images, labels = distilled
    np.savez(tmp_path / "set.npz", a=labels.numpy(), b=images.permute(0, 2, 3, 1).numpy())  # NHWC, unnamed keys
    check_round_trip(dcrobench.import_set(tmp_path / "set.npz", fmt="tensors", dataset="digits", name="npz-set"),
                     images, labels)
    torch.save((images[:, 0], labels), tmp_path / "pair.pt")  # [N, H, W] one-channel images
    check_round_trip(dcrobench.import_set(tmp_path / "pair.pt", fmt="tensors", dataset="digits", name="pt-set"),
                     images, labels)


def test_bad_files_are_refused_with_a_reason(tmp_path, distilled):
    images, labels = distilled
    torch.save({"images": images, "labels": labels, "note": NotATensor()}, tmp_path / "pickled.pt")
    with pytest.raises(MethodError, match=r"weights_only"):
        dcrobench.import_set(tmp_path / "pickled.pt", fmt="tensors", dataset="digits", name="x")
    np.save(tmp_path / "objects.npy", np.array([NotATensor()], dtype=object), allow_pickle=True)
    with pytest.raises(MethodError, match="without unpickling"):
        dcrobench.import_set(tmp_path / "objects.npy", fmt="tensors", dataset="digits", name="x")
    torch.save({"x": normalise(images), "y": labels}, tmp_path / "norm.pt")
    with pytest.raises(MethodError, match="looks normalised; give --normalized"):
        dcrobench.import_set(tmp_path / "norm.pt", fmt="tensors", dataset="digits", name="x")
    torch.save({"x": images, "y": labels + 5}, tmp_path / "labels.pt")
    with pytest.raises(MethodError, match="label"):
        dcrobench.import_set(tmp_path / "labels.pt", fmt="tensors", dataset="digits", name="x")
    torch.save({"x": images, "y": torch.softmax(torch.randn(30, 10), 1)}, tmp_path / "soft.pt")
    with pytest.raises(MethodError, match="soft"):
        dcrobench.import_set(tmp_path / "soft.pt", fmt="tensors", dataset="digits", name="x")
    with pytest.raises(DcrobenchError, match="channel"):
        parse_normalization("0.5,0.5,0.5,0.2,0.2,0.2", channels=1)


def test_cli_import_then_run_scores_it_under_its_own_name(tmp_path, distilled):
    images, labels = distilled
    torch.save(normalise(images), tmp_path / "images_best.pt")
    torch.save(labels, tmp_path / "labels_best.pt")
    out = tmp_path / "mtt.pt"
    res = CliRunner().invoke(main, ["import-set", "--from", "mtt", str(tmp_path / "images_best.pt"),
                                    str(tmp_path / "labels_best.pt"), "-d", "digits", "--name", "mtt-official",
                                    "--normalized", f"{MEAN[0]},{STD[0]}", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 30 images" in res.output
    res = CliRunner().invoke(main, ["run", "-d", "digits", "-p", TINY_PROTOCOL, "--compressed", str(out), "--seeds",
                                    "1", "--no-progress", "--threads", "1", "--results", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    (path,) = record_paths(tmp_path / "r")
    rec = json.loads(path.read_text())
    assert rec["method"]["name"].startswith("mtt-official (file ")
    assert rec["budget"]["per_class_counts"] == [3] * 10
    again = CliRunner().invoke(main, ["import-set", "--from", "mtt", str(tmp_path / "images_best.pt"),
                                      str(tmp_path / "labels_best.pt"), "-d", "digits", "--name", "m", "-o", str(out)])
    assert again.exit_code != 0 and "refusing to overwrite" in again.output
