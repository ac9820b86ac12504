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
    with pytest.raises(ProtocolError):
        protocol_from_dict({"name": "x", "version": 1, "train_overrides": {"mcs": {"learning_rate": 1}}})


def test_a_methods_record_hash_ignores_other_methods_parameters():
    base = {"name": "x", "version": 1, "methods": {"dm": {"iterations": 10}}}
    a, b = protocol_from_dict(base), protocol_from_dict({**base, "methods": {"dm": {"iterations": 20}}})
    assert a.hash_for("random") == b.hash_for("random")
    assert a.hash_for("dm") != b.hash_for("dm") and a.hash != b.hash
