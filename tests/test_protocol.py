import dataclasses

import pytest

from dcrobench.errors import ProtocolError, UnknownNameError
from dcrobench.protocol import builtin_protocols, load_protocol, protocol_from_dict


def test_builtin_protocols_load_with_the_papers_settings():
    assert {"paper", "quick"} <= set(builtin_protocols())
    p = load_protocol("paper")
    assert (p.model, p.train.lr, p.train.epochs, p.budget, p.seeds) == ("resnet18", 0.01, 20, 50, (0, 1, 2))
    assert (p.train.momentum, p.train.weight_decay) == (0.9, 5e-4)
    assert p.epsilon_linf["mnist"] == 0.1 and p.epsilon_linf["cifar10"] == pytest.approx(8 / 255)
    assert p.evaluation.attacks == ("paper", "pgd") and p.evaluation.mode == "cascade" and p.evaluation.test_subset == 0
    assert p.attacks["apgd-ce"] == {"iterations": 100, "restarts": 5}  # AutoAttack's own values
    assert p.eps("mnist", "l2", 784) == pytest.approx(1.36, abs=0.005)


def test_hash_follows_values_not_formatting(tmp_path):
    a = load_protocol("quick")
    text = (tmp_path / "q.yaml")
    raw = {"name": "quick", "version": 1, "budget": 50}
    assert protocol_from_dict(raw).hash == protocol_from_dict(dict(reversed(list(raw.items())))).hash
    assert protocol_from_dict({**raw, "budget": 51}).hash != protocol_from_dict(raw).hash
    assert protocol_from_dict({**raw, "description": "words"}).hash == protocol_from_dict(raw).hash
    from importlib.resources import files

    text.write_text(files("dcrobench_protocols").joinpath("quick.yaml").read_text())
    assert load_protocol(str(text)).hash == a.hash


def test_unknown_keys_and_names_are_clear_errors(tmp_path):
    with pytest.raises(ProtocolError, match="Did you mean: epochs"):
        protocol_from_dict({"name": "x", "version": 1, "train": {"epoch": 3}})
    with pytest.raises(ProtocolError, match="missing required key 'version'"):
        protocol_from_dict({"name": "x"})
    with pytest.raises(UnknownNameError, match="Did you mean: quick"):
        load_protocol("quik")
    with pytest.raises(ProtocolError, match="not found"):
        load_protocol(str(tmp_path / "nope.yaml"))
    with pytest.raises(ProtocolError, match="not a number"):
        protocol_from_dict({"name": "x", "version": 1, "epsilon_linf": {"mnist": "eight/255"}})


def test_train_overrides_and_seeds():
    p = protocol_from_dict({"name": "x", "version": 1, "train": {"lr": 0.1},
                            "train_overrides": {"mcs": {"lr": 0.001, "adv_lr": 0.0001}}})
    assert p.train_for("mcs").lr == 0.001 and p.train_for("mcs").adversarial_lr == 0.0001
    assert p.train_for("random").adversarial_lr == 0.1
    assert p.seed_list(2) == [0, 1] and p.seed_list(5) == [0, 1, 2, 3, 4]
    # beyond the protocol's list: the integers after its largest seed (before: range(n), so [5, 6] gave 0, 1, 2)
    other = dataclasses.replace(p, seeds=(5, 6))
    assert other.seed_list(1) == [5] and other.seed_list(3) == [5, 6, 7] and other.seed_list(None) == [5, 6]
    with pytest.raises(ProtocolError):
        protocol_from_dict({"name": "x", "version": 1, "train_overrides": {"mcs": {"learning_rate": 1}}})


def test_a_records_hash_counts_the_proxy_block_only_for_methods_that_take_it():
    """Before, the proxy block was in every method's hash: tuning it orphaned random's, full's, dm's and mcs's records."""
    from dcrobench.registry import registries

    methods = registries().methods
    a = protocol_from_dict({"name": "x", "version": 1, "proxy": {"epochs": 5}})
    b = protocol_from_dict({"name": "x", "version": 1, "proxy": {"epochs": 10}})
    for name in ("random", "full", "mcs", "dm"):
        assert methods.get(name).protocol_blocks == ()
        assert a.hash_for(name, ()) == b.hash_for(name, ())
    for name in ("grand", "herding", "cal"):
        blocks = methods.get(name).protocol_blocks
        assert blocks == ("proxy",) and a.hash_for(name, blocks) != b.hash_for(name, blocks)


def test_a_methods_record_hash_ignores_other_methods_parameters():
    base = {"name": "x", "version": 1, "methods": {"dm": {"iterations": 10}}}
    a, b = protocol_from_dict(base), protocol_from_dict({**base, "methods": {"dm": {"iterations": 20}}})
    assert a.hash_for("random") == b.hash_for("random")
    assert a.hash_for("dm") != b.hash_for("dm") and a.hash != b.hash


def test_appendix_c_mnist_follows_the_authors_code_where_the_paper_is_silent():
    """v3: [0, 1] inputs, l_inf PGD-20 with step eps from zero and no clip, l_2 PGD-40 with step 0.1, 20 epochs;
    v4: MCS's weighted loss sums over the batch as the authors' code does, the other methods' training is v3's."""
    p = load_protocol("appendix-c-mnist")
    assert p.version == 4 and p.model_params == {"normalize": False} and p.train.epochs == 20
    linf, l2 = p.adversarial.for_norm("linf"), p.adversarial.for_norm("l2")
    assert (linf.steps, linf.step_size, linf.random_start, linf.clip) == (20, 1.0, False, False)
    assert (l2.steps, l2.random_start, l2.clip) == (40, False, True)
    assert l2.step_size * p.eps("mnist", "l2", 784) == pytest.approx(0.1, abs=1e-4)  # Table 2's alpha, absolute
    assert p.train_for("mcs").lr == 0.001 and p.train_for("mcs").adversarial_lr == 0.0001
    assert p.train_for("mcs").weighted_loss == "batch-sum" and p.train_for("random").weighted_loss == "mean"


def test_per_norm_adversarial_settings_are_validated_and_hash_only_when_set():
    base = {"name": "x", "version": 1, "adversarial": {"steps": 10}}
    plain = protocol_from_dict(base)
    assert "clip" not in plain.content()["adversarial"] and "per_norm" not in plain.content()["adversarial"]
    clipped = protocol_from_dict({**base, "adversarial": {"steps": 10, "clip": True}})
    assert clipped.hash == plain.hash  # the default spelled out changes nothing
    over = protocol_from_dict({**base, "adversarial": {"steps": 10, "per_norm": {"l2": {"steps": 40, "step_size": "1/10"}}}})
    assert over.hash != plain.hash
    assert over.adversarial.for_norm("l2").steps == 40 and over.adversarial.for_norm("l2").step_size == 0.1
    assert over.adversarial.for_norm("linf").steps == 10
    for bad, match in [({"l3": {"steps": 1}}, "unknown norm 'l3'"), ({"l2": {"lr": 1}}, "unknown keys"),
                       ({"l2": {"steps": 0}}, "steps: must be at least 1"), ({"l2": {"clip": "no"}}, "true/false"),
                       ({"l2": [1]}, "expected a mapping")]:
        with pytest.raises(ProtocolError, match=match):
            protocol_from_dict({**base, "adversarial": {"per_norm": bad}})


def test_a_version_bump_for_one_method_leaves_the_others_provably_unchanged():
    """hash_for(version=old) is how a bump that changes one method's settings carries the others' records
    (benchmarks/migrations/carry_unchanged_cells.py): equal for the untouched method, not for the changed one."""
    old = protocol_from_dict({"name": "x", "version": 3, "train_overrides": {"mcs": {"lr": 0.001}}})
    new = protocol_from_dict({"name": "x", "version": 4,
                              "train_overrides": {"mcs": {"lr": 0.001, "weighted_loss": "batch-sum"}}})
    assert new.hash_for("random") != old.hash_for("random")  # the version is part of every hash
    assert new.hash_for("random", version=3) == old.hash_for("random")
    assert new.hash_for("mcs", version=3) != old.hash_for("mcs")
