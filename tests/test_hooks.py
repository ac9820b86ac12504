"""Third-party datasets, models, attacks and methods plug into the same pipeline as built-ins."""

from collections import Counter

from dcrobench.attacks import AttackSet, AttackSpec
from dcrobench.datasets import DatasetSpec
from dcrobench.hookspecs import hookimpl
from dcrobench.methods import CompressionMethod, select_per_class
from dcrobench.models import ModelSpec
from dcrobench_plugins.models import build_mlp
from dcrobench.protocol import load_protocol
from dcrobench.registry import build_registries
from dcrobench.runner import RunRequest, run
from tests.helpers import TINY_PROTOCOL, blobs

def _load(root, download):
    return blobs(per_class=20, classes=3, seed=1), blobs(per_class=10, classes=3, seed=2)


class FirstK(CompressionMethod):
    name = "first-k"

    def compress(self, data, budget, seed, device):
        return select_per_class(data, {c: data.class_indices(c)[:budget] for c in range(data.num_classes)})


class ThirdParty:
    """The plugin; ``calls`` counts its model builds and attack batches (one counter per instance)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    @hookimpl
    def register_datasets(self):
        return [DatasetSpec("blobs3", 3, 1, 4, (0.5,), (0.5,), _load, )]

    @hookimpl
    def register_models(self):
        def build(channels, size, num_classes, mean, std):
            self.calls["model"] += 1
            return build_mlp(channels, size, num_classes, mean, std, hidden=16)

        return [ModelSpec("tiny-mlp", build)]

    @hookimpl
    def register_attacks(self):
        def noop_attack(model, *, norm, eps, params, seed, device):
            def run(x, y):
                self.calls["attack"] += 1
                return x.clone()

            return run

        return [AttackSpec("noop", noop_attack, "identity (for tests)"), AttackSet("noop-then-pgd", ("noop", "pgd"))]

    @hookimpl
    def register_methods(self):
        return [FirstK]


def test_third_party_dataset_model_attack_and_method_run_end_to_end(tmp_path):
    plugin = ThirdParty()
    regs = build_registries(extra_plugins={"third": plugin})
    proto = load_protocol(TINY_PROTOCOL)
    import dataclasses

    proto = dataclasses.replace(proto, evaluation=dataclasses.replace(proto.evaluation, attacks=("noop-then-pgd",)),
                                attacks={"pgd": {"steps": 3}})
    req = RunRequest(dataset="blobs3", protocol=proto, method="first-k", budget=5, model="tiny-mlp", seeds=(0,),
                     results_dir=tmp_path, progress=False)
    (rec,) = run(req, regs, log=lambda m: None)
    # standard + adversarial model, each attacked once (one batch: the 100 test points fit in batch_size)
    assert plugin.calls == {"model": 2, "attack": 2}
    assert rec.budget.per_class_counts == [5, 5, 5]
    # the no-op attack cannot lower accuracy; PGD after it may
    assert rec.adversarial.attacks["noop"] == rec.adversarial.clean_acc
    assert rec.model == "tiny-mlp" and rec.dataset == "blobs3"
