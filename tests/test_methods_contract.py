import pytest
import torch

from dcrobench.errors import BudgetError, MethodError
from dcrobench.methods import CompressedSet, CompressionMethod, select_per_class
from dcrobench_plugins.baselines import Full, Random
from tests.helpers import blobs

CPU = torch.device("cpu")


def test_random_is_class_balanced_seeded_and_unique():
    data = blobs(per_class=12, classes=3)
    a = Random().run(data, 5, seed=1, device=CPU)
    b = Random().run(data, 5, seed=1, device=CPU)
    c = Random().run(data, 5, seed=2, device=CPU)
    assert a.provenance.per_class_counts == [5, 5, 5]
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)
    assert a.indices.unique().numel() == 15
    assert torch.equal(a.images, data.images[a.indices]) and torch.equal(a.labels, data.labels[a.indices])
    assert a.provenance.compress_s >= 0 and a.provenance.method == "random"


def test_full_returns_everything():
    data = blobs()
    out = Full().run(data, 1, seed=0, device=CPU)
    assert len(out) == len(data) and out.provenance.per_class_counts == data.class_counts()


def test_budget_larger_than_a_class_is_a_clear_error():
    data = blobs(per_class=12)
    with pytest.raises(BudgetError, match=r"budget 13 .* class 0 .* 12 training images.*--budget 12"):
        Random().run(data, 13, seed=0, device=CPU)
    with pytest.raises(BudgetError):
        Random().run(data, 0, seed=0, device=CPU)


def test_contract_violations_are_reported_with_the_methods_name():
    data = blobs()

    class Bad(CompressionMethod):
        name = "bad"
        mode = "range"

        def compress(self, data, budget, seed, device):
            idx = {c: data.class_indices(c)[:budget] for c in range(data.num_classes)}
            out = select_per_class(data, idx)
            if self.mode == "range":
                out.images = out.images * 2 + 1
            elif self.mode == "dupe":
                out.indices[1] = out.indices[0]
            elif self.mode == "raise":
                raise ZeroDivisionError("oops")
            return out

    for mode, msg in (("range", "pixels must lie in"), ("dupe", "not unique"), ("raise", "ZeroDivisionError: oops")):
        Bad.mode = mode
        with pytest.raises(MethodError, match=msg):
            Bad().run(data, 3, seed=0, device=CPU)


def test_unknown_method_parameter_is_rejected():
    with pytest.raises(MethodError, match="unknown parameter of random 'alpha'"):
        Random(alpha=1)


def test_compressed_set_round_trips_without_pickle(tmp_path):
    data = blobs()
    comp = select_per_class(data, {c: data.class_indices(c)[:2] for c in range(3)},
                            {c: torch.tensor([1.0, 3.0]) for c in range(3)}, meta={"eta_per_class": [0.5, 0.1, 0.2]})
    comp.extra_radius, comp.extra_radius_norm = torch.tensor([0.5, 0.5, 0.1, 0.1, 0.2, 0.2]), "l2"
    comp.save(tmp_path / "c.pt")
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # plain tensors and strings only
    assert set(raw) >= {"images", "labels", "weights", "indices", "meta_json"}
    back = CompressedSet.load(tmp_path / "c.pt")
    assert torch.equal(back.images, comp.images) and torch.equal(back.weights, comp.weights)
    assert back.meta == {"eta_per_class": [0.5, 0.1, 0.2]}
    assert torch.equal(back.extra_radius, comp.extra_radius) and back.extra_radius_norm == "l2"


def test_unreadable_compressed_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"definitely not a torch file")
    with pytest.raises(MethodError, match="cannot read compressed-set file"):
        CompressedSet.load(tmp_path / "bad.pt")
    with pytest.raises(MethodError, match="not found"):
        CompressedSet.load(tmp_path / "missing.pt")


def test_run_attaches_the_provenance_and_a_file_keeps_it_apart_from_the_methods_own_meta(tmp_path):
    data = blobs(per_class=12, classes=3)
    source = {"distribution": "dcrobench", "version": "0", "plugin": "baselines"}
    out = Random().run(data, 4, seed=3, device=CPU, source=source)
    out.meta["note"] = "the method's own"
    p = out.provenance
    assert (p.method, p.dataset, p.data_fingerprint, p.budget, p.seed, p.source) == \
        ("random", data.name, data.fingerprint(), 4, 3, source)
    out.save(tmp_path / "set.pt")
    back = CompressedSet.load(tmp_path / "set.pt")
    assert back.provenance == p and back.meta == {"note": "the method's own"}


def test_a_method_cannot_write_the_engines_provenance_keys_or_hide_its_time():
    class Liar(CompressionMethod):
        name = "liar"

        def compress(self, data, budget, seed, device):
            idx = {c: data.class_indices(c)[:budget] for c in range(data.num_classes)}
            return select_per_class(data, idx, meta={"seed": 0, "compress_s": 0.0})

    with pytest.raises(MethodError, match="compress_s, seed in its metadata"):
        Liar().run(blobs(), 2, seed=5, device=CPU)

    class Resumed(Liar):
        def compress(self, data, budget, seed, device):
            out = select_per_class(data, {c: data.class_indices(c)[:budget] for c in range(data.num_classes)})
            out.own_seconds = 123.0  # earlier sessions' time, which run cannot see
            return out

    assert Resumed().run(blobs(), 2, seed=5, device=CPU).provenance.compress_s == 123.0
