"""The bad-input catalogue: what a user gets wrong, refused with one line and nothing recorded or lost.

Every case runs the CLI against a copy of a results folder that already holds a finished run,
and asserts: a non-zero exit code, exactly one ``error:`` line that says what is wrong, no
traceback, and every file of the results folder byte-for-byte unchanged.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

import dcrobench.registry
from dcrobench.cli import main
from dcrobench.hookspecs import hookimpl
from dcrobench.methods import CompressedSet, CompressionMethod
from dcrobench.protocol import load_protocol
from dcrobench.registry import build_registries
from dcrobench.results import record_paths
from tests.helpers import TINY_PROTOCOL

RUN = ["run", "-d", "digits", "--no-progress", "--threads", "1", "--seeds", "1"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A results folder with one finished run, and a saved compressed set (random, 7 per class)."""
    root = tmp_path_factory.mktemp("base")
    runner = CliRunner()
    res = runner.invoke(main, [*RUN, "-m", "random", "-p", TINY_PROTOCOL, "--results", str(root / "results")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["compress", "-m", "random", "-d", "digits", "-b", "7", "-p", TINY_PROTOCOL,
                               "-o", str(root / "set.pt")])
    assert res.exit_code == 0, res.output
    assert len(record_paths(root / "results")) == 1
    return root


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- builders of bad inputs: each gets the case folder and returns the CLI arguments ----------
def protocol_with(**changes) -> Callable[[Path], list[str]]:
    """The tiny protocol with ``changes`` applied ("train.epochs": 0, or a top-level key)."""

    def build(tmp: Path) -> list[str]:
        data = yaml.safe_load(Path(TINY_PROTOCOL).read_text())
        for dotted, value in changes.items():
            *parents, leaf = dotted.split(".")
            node = data
            for part in parents:
                node = node[part]
            if value is DELETE:
                node.pop(leaf)
            else:
                node[leaf] = value
        path = tmp / "protocol.yaml"
        path.write_text(yaml.safe_dump(data))
        return [*RUN, "-m", "random", "-p", str(path)]

    return build


DELETE = object()


def protocol_text(text: str | bytes) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        (tmp / "protocol.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
        return [*RUN, "-m", "random", "-p", str(tmp / "protocol.yaml")]

    return build


TINY_TEXT = Path(TINY_PROTOCOL).read_text()
#: 1.4 KB that safe_load expands to 10**9 values under methods.random (minutes, then MemoryError)
BILLION_LAUGHS = TINY_TEXT.replace("methods: {}\n", "methods:\n  random:\n    l0: &l0 [" + ", ".join(["lol"] * 10) + "]\n"
                                   + "".join(f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n"
                                             for i in range(1, 9)))


def grid_text(text: str | bytes) -> Callable[[Path], list[str]]:
    """``dcrobench status`` of a grid file (the tiny protocol, digits) with ``text`` after its first lines."""

    def build(tmp: Path) -> list[str]:
        head = f"name: bad\nprotocol: {TINY_PROTOCOL}\ndatasets: [digits]\n".encode()
        (tmp / "grid.yaml").write_bytes(head + (text if isinstance(text, bytes) else text.encode()))
        return ["status", str(tmp / "grid.yaml"), "--results", str(tmp.parent / "results")]

    return build


def run_args(*args: str) -> Callable[[Path], list[str]]:
    return lambda tmp: [*RUN, "-p", TINY_PROTOCOL, *args]


def saved_set(change: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    """The base saved set with its payload changed by ``change`` (a dict of tensors + meta dict)."""

    def build(tmp: Path) -> list[str]:
        payload = torch.load(tmp.parent / "base_set.pt", weights_only=True)
        payload["meta"] = json.loads(payload.pop("meta_json"))
        change(payload)
        if payload.get("meta") is DELETE:
            del payload["meta"]
        if "meta" in payload:
            payload["meta_json"] = json.dumps(payload.pop("meta"))
        torch.save(payload, tmp / "set.pt")
        return [*RUN, "-p", TINY_PROTOCOL, "--compressed", str(tmp / "set.pt")]

    return build


def file_bytes(data: bytes) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        (tmp / "set.pt").write_bytes(data)
        return [*RUN, "-p", TINY_PROTOCOL, "--compressed", str(tmp / "set.pt")]

    return build


def truncated_set(tmp: Path) -> list[str]:
    data = (tmp.parent / "base_set.pt").read_bytes()
    (tmp / "set.pt").write_bytes(data[: len(data) // 2])
    return [*RUN, "-p", TINY_PROTOCOL, "--compressed", str(tmp / "set.pt")]


def pickled_object_set(tmp: Path) -> list[str]:
    payload = torch.load(tmp.parent / "base_set.pt", weights_only=True)
    payload["images"] = datetime.datetime(2026, 1, 1)  # an object weights_only refuses to unpickle
    torch.save(payload, tmp / "set.pt")
    return [*RUN, "-p", TINY_PROTOCOL, "--compressed", str(tmp / "set.pt")]


def put(key: str, value) -> Callable[[dict], None]:
    def change(p: dict) -> None:
        p[key] = value(p) if callable(value) else value

    return change


def meta(**changes) -> Callable[[dict], None]:
    def change(p: dict) -> None:
        for k, v in changes.items():
            if v is DELETE:
                p["meta"].pop(k, None)
            else:
                p["meta"][k] = v

    return change


def results_under_a_file(tmp: Path) -> list[str]:
    (tmp / "plain-file").write_text("x")
    return [*RUN, "-m", "random", "-p", TINY_PROTOCOL, "--results", str(tmp / "plain-file" / "results"), "--seeds", "2"]


def results_is_a_file(tmp: Path) -> list[str]:
    (tmp / "plain-file").write_text("x")
    return [*RUN, "-m", "random", "-p", TINY_PROTOCOL, "--results", str(tmp / "plain-file"), "--seeds", "2"]


def compress_out_under_a_file(tmp: Path) -> list[str]:
    (tmp / "plain-file").write_text("x")
    return ["compress", "-m", "random", "-d", "digits", "-b", "3", "-p", TINY_PROTOCOL,
            "-o", str(tmp / "plain-file" / "set.pt")]


def compress_out_exists(tmp: Path) -> list[str]:
    (tmp / "set.pt").write_bytes(b"precious")
    return ["compress", "-m", "random", "-d", "digits", "-b", "3", "-p", TINY_PROTOCOL, "-o", str(tmp / "set.pt")]


def import_set_args(tmp: Path, *extra: str) -> list[str]:
    return ["import-set", str(tmp / "images.pt"), "--from", "tensors", "-d", "digits", "--name", "imported", *extra]


def import_out_exists(tmp: Path) -> list[str]:
    (tmp / "set.pt").write_bytes(b"precious")
    return import_set_args(tmp, "--out", str(tmp / "set.pt"))


def write_import_tensors(tmp: Path) -> None:
    torch.save({"images": torch.rand(20, 1, 8, 8), "labels": torch.arange(20) % 10}, tmp / "images.pt")


def import_npz_object_array(tmp: Path) -> list[str]:
    np.savez(tmp / "images.npz", images=np.array([{"x": 1}, 2], dtype=object), labels=np.arange(2))
    return ["import-set", str(tmp / "images.npz"), "--from", "tensors", "-d", "digits", "--name", "x",
            "--out", str(tmp / "set.pt")]


def import_npz_strings(tmp: Path) -> list[str]:
    np.savez(tmp / "images.npz", images=np.array(["a", "b"]), labels=np.arange(2))
    return ["import-set", str(tmp / "images.npz"), "--from", "tensors", "-d", "digits", "--name", "x",
            "--out", str(tmp / "set.pt")]


def record_of_another_cell(tmp: Path) -> list[str]:
    (seed0,) = record_paths(tmp.parent / "results")
    seed0.with_name(seed0.name.replace("_s0_", "_s1_")).write_bytes(seed0.read_bytes())
    return [*RUN[:-1], "2", "-m", "random", "-p", TINY_PROTOCOL]


def record_invalid_at_cell(tmp: Path) -> list[str]:
    (seed0,) = record_paths(tmp.parent / "results")
    seed0.with_name(seed0.name.replace("_s0_", "_s1_")).write_text("{}\n")
    return [*RUN[:-1], "2", "-m", "random", "-p", TINY_PROTOCOL]


def render_over_a_record(tmp: Path) -> list[str]:
    results = tmp.parent / "results"
    return ["leaderboard", "render", "--results", str(results), "--out", str(record_paths(results)[0])]


def publish_into_the_results(tmp: Path) -> list[str]:
    results = tmp.parent / "results"
    return ["leaderboard", "publish", "--results", str(results), "--out", str(results)]


def save_models_over_a_file(tmp: Path) -> list[str]:
    """A file of the user's where the standard model of the base run's cell would be exported."""
    name = f"random_digits_b10_mlp_s0_{load_protocol(TINY_PROTOCOL).hash_for('random')}_standard.safetensors"
    (tmp / "models").mkdir()
    (tmp / "models" / name).write_bytes(b"precious")
    return run_args("-m", "random", "--save-models", str(tmp / "models"))(tmp)


# --- plugins that break the method contract ---------------------------------------------------
class _Bad(CompressionMethod):
    kind = "selection"

    def compress(self, data, budget, seed, device):
        return self.make(data, budget)


def _method(name: str, make) -> type[CompressionMethod]:
    return type(f"M_{name}", (_Bad,), {"name": name, "make": staticmethod(make)})


BAD_METHODS = [
    _method("too-many", lambda d, b: CompressedSet(d.images, d.labels)),  # the whole set at any budget
    _method("nan-pixels", lambda d, b: CompressedSet(torch.full_like(d.images[:20], float("nan")), d.labels[:20])),
    _method("raises", lambda d, b: 1 / 0),
    _method("not-a-set", lambda d, b: (d.images, d.labels)),
    _method("empty", lambda d, b: CompressedSet(d.images[:0], d.labels[:0])),
    _method("sigterm", lambda d, b: os.kill(os.getpid(), signal.SIGTERM)),
]


class _BadPlugin:
    @staticmethod
    @hookimpl
    def register_methods():
        return BAD_METHODS


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], list[str]]
    message: str
    env: tuple[tuple[str, str], ...] = ()


CASES = [
    # names and command-line values
    Case("unknown-method", run_args("-m", "randm"), "unknown method 'randm'. Did you mean: random"),
    Case("unknown-dataset", lambda t: ["run", "-d", "mnist55k", "-m", "random", "-p", TINY_PROTOCOL], "Did you mean: mnist5k"),
    Case("unknown-model", run_args("-m", "random", "--model", "resnet19"), "Did you mean: resnet18"),
    Case("unknown-protocol", lambda t: [*RUN, "-m", "random", "-p", "quik"], "unknown protocol 'quik'. Did you mean: quick"),
    Case("missing-protocol-file", lambda t: [*RUN, "-m", "random", "-p", str(t / "nope.yaml")], "protocol file not found"),
    Case("budget-over-class", run_args("-m", "random", "--budget", "500"), "budget 500 images per class is larger than class"),
    Case("budget-zero", run_args("-m", "random", "--budget", "0"), "budget must be at least 1"),
    Case("seeds-zero", lambda t: ["run", "-d", "digits", "-m", "random", "-p", TINY_PROTOCOL, "--seeds", "0"], "--seeds must be at least 1"),
    Case("threads-zero", lambda t: ["run", "-d", "digits", "-m", "random", "-p", TINY_PROTOCOL, "--threads", "0"], "--threads must be at least 1"),
    Case("threads-negative", lambda t: ["run", "-d", "digits", "-m", "random", "-p", TINY_PROTOCOL, "--threads", "-1"], "--threads must be at least 1"),
    Case("method-and-file", run_args("-m", "random", "--compressed", "x.pt"), "exactly one of --method or --compressed"),
    Case("neither-method-nor-file", run_args(), "exactly one of --method or --compressed"),
    Case("unknown-device", run_args("-m", "random", "--device", "tpu"), "unknown device 'tpu'"),
    Case("cuda-missing", run_args("-m", "random", "--device", "cuda:7"), "CUDA is not available"),
    # protocol values, refused when loaded (before any data is read)
    Case("epochs-zero", protocol_with(**{"train.epochs": 0}), "train.epochs: must be at least 1, got 0"),
    Case("lr-negative", protocol_with(**{"train.lr": -0.1}), "train.lr: must be greater than 0"),
    Case("momentum-one", protocol_with(**{"train.momentum": 1.0}), "train.momentum: must be below 1"),
    Case("adv-steps-zero", protocol_with(**{"adversarial.steps": 0}), "adversarial.steps: must be at least 1"),
    Case("eps-zero", protocol_with(**{"epsilon_linf.default": 0}), "epsilon_linf.default: must be greater than 0"),
    Case("eps-negative", protocol_with(**{"epsilon_linf.default": "-8/255"}), "epsilon_linf.default: must be greater than 0"),
    Case("eps-nan", protocol_text(Path(TINY_PROTOCOL).read_text().replace("default: 0.1", "default: .nan")),
         "epsilon_linf.default: expected a finite number"),
    Case("seeds-not-integers", protocol_with(seeds=["a"]), "seeds: expected a list of integers"),
    Case("seeds-repeat", protocol_with(seeds=[1, 1]), "seeds repeat"),
    Case("methods-not-mapping", protocol_with(methods=5), "methods: expected a mapping, got 5"),
    Case("method-params-not-mapping", protocol_with(methods={"random": 3}), "methods.random: expected a mapping"),
    Case("eval-batch-zero", protocol_with(**{"evaluation.batch_size": 0}), "evaluation.batch_size: must be at least 1"),
    Case("apgd-iterations-zero", protocol_with(**{"attacks.apgd-ce.iterations": 0}), "attacks.apgd-ce.iterations: expected an integer of at least 1"),
    Case("attack-setting-misspelled", protocol_with(**{"attacks.apgd-ce.iteration": 5}), "Did you mean: iterations"),
    Case("standard-set-overridden", protocol_with(**{"evaluation.attacks": ["standard"]}), "runs apgd-ce with its own fixed settings"),
    Case("eval-mode-unknown", protocol_with(**{"evaluation.mode": "parallel"}), "evaluation.mode must be one of cascade, independent"),
    Case("no-attacks", protocol_with(**{"evaluation.attacks": []}), "evaluation.attacks: name at least one"),
    Case("test-subset-negative", protocol_with(**{"evaluation.test_subset": -5}), "evaluation.test_subset: must be at least 0"),
    Case("unknown-attack", protocol_with(**{"evaluation.attacks": ["apgd-cee"]}), "unknown attack 'apgd-cee'. Did you mean: apgd-ce"),
    Case("misspelled-key", protocol_with(**{"train.epoch": 3}), "unknown key 'epoch'. Did you mean: epochs"),
    Case("missing-version", protocol_with(version=DELETE), "missing required key 'version'"),
    Case("override-lr-zero", protocol_with(train_overrides={"random": {"lr": 0}}), "train_overrides.random.lr: must be greater than 0"),
    Case("protocol-not-yaml", protocol_text("name: [unclosed\n"), "is not valid YAML"),
    Case("protocol-a-list", protocol_text("- 1\n- 2\n"), "must be a YAML mapping"),
    # saved compressed sets: read safely, validated before training
    Case("set-missing", lambda t: [*RUN, "-p", TINY_PROTOCOL, "--compressed", str(t / "none.pt")], "compressed-set file not found"),
    Case("set-not-torch", file_bytes(b"definitely not a tensor file\n"), "cannot read compressed-set file"),
    Case("set-truncated", truncated_set, "cannot read compressed-set file"),
    Case("set-pickled-object", pickled_object_set, "cannot read compressed-set file"),
    Case("set-not-mapping", lambda t: (torch.save(torch.zeros(3), t / "set.pt"),
                                       [*RUN, "-p", TINY_PROTOCOL, "--compressed", str(t / "set.pt")])[1],
         "expected a mapping of tensors"),
    Case("set-meta-not-json", saved_set(lambda p: p.update(meta_json="{not json", meta=DELETE)), "metadata is not JSON"),
    Case("set-meta-not-object", saved_set(lambda p: p.update(meta=[1, 2])), "metadata is not a JSON object"),
    Case("set-pixels-above-one", saved_set(put("images", lambda p: p["images"] * 3)), "pixels must lie in [0, 1]"),
    Case("set-nan-pixels", saved_set(put("images", lambda p: p["images"].index_fill(0, torch.tensor([0]), float("nan")))),
         "NaN or infinite pixels"),
    Case("set-labels-short", saved_set(put("labels", lambda p: p["labels"][:-3])), "70 images but 67 labels"),
    Case("set-labels-out-of-range", saved_set(put("labels", lambda p: p["labels"] + 5)), "labels must lie in 0..9"),
    Case("set-float-labels", saved_set(put("labels", lambda p: p["labels"].float())), "labels must be integers"),
    Case("set-empty", saved_set(lambda p: p.update(images=p["images"][:0], labels=p["labels"][:0])), "the set is empty"),
    Case("set-wrong-shape", saved_set(put("images", lambda p: torch.zeros(len(p["labels"]), 1, 28, 28))),
         "images have shape [70, 1, 28, 28], expected [N, 1, 8, 8]"),
    Case("set-negative-weights", saved_set(put("weights", lambda p: -torch.ones(len(p["labels"])))), "weights must be non-negative"),
    Case("set-zero-weights", saved_set(put("weights", lambda p: torch.zeros(len(p["labels"])))), "weights are all zero"),
    Case("set-weights-wrong-length", saved_set(put("weights", torch.ones(3))), "weights must be one number per image"),
    Case("set-stripped-metadata", saved_set(lambda p: p.update(meta={})), "metadata lacks method, dataset, data_fingerprint"),
    Case("set-other-dataset", saved_set(meta(dataset="mnist5k")), "made from dataset 'mnist5k', not 'digits'"),
    Case("set-over-its-budget", saved_set(meta(budget=5)), "class 0 has 7 images, more than the budget of 5"),
    Case("set-other-training-set", saved_set(meta(data_fingerprint="0" * 16)), "made from a different training set"),
    # methods that break the contract
    Case("method-over-budget", run_args("-m", "too-many", "--budget", "5"), "more than the budget of 5 per class"),
    Case("method-nan-pixels", run_args("-m", "nan-pixels"), "NaN or infinite pixels"),
    Case("method-raises", run_args("-m", "raises"), "method 'raises' failed: ZeroDivisionError"),
    Case("method-not-a-set", run_args("-m", "not-a-set"), "returned a tuple, not a CompressedSet"),
    Case("method-empty", run_args("-m", "empty"), "the set is empty"),
    # folders that cannot be written: refused before any stage is computed
    Case("results-under-a-file", results_under_a_file, "is not a writable folder"),
    Case("results-is-a-file", results_is_a_file, "is not a writable folder"),
    Case("cache-under-a-file", lambda t: ((t / "f").write_text("x"), run_args("-m", "random", "--seeds", "2")(t))[1],
         "cache folder (DCROBENCH_CACHE)", env=(("DCROBENCH_CACHE", "{tmp}/f/cache"),)),
    Case("compress-out-under-a-file", compress_out_under_a_file, "output folder"),
    Case("compress-out-exists", compress_out_exists, "refusing to overwrite"),
    # no command overwrites a file it did not create
    Case("import-set-out-exists", import_out_exists, "refusing to overwrite"),
    Case("render-over-a-record", render_over_a_record, "refusing to overwrite"),
    Case("publish-into-the-results", publish_into_the_results, "refusing to publish into"),
    Case("save-models-over-a-file", save_models_over_a_file, "refusing to overwrite"),
    # hostile or malformed YAML: refused while reading, naming the file
    Case("protocol-billion-laughs", protocol_text(BILLION_LAUGHS), "aliases expand it to more than"),
    Case("protocol-recursive-alias", protocol_text("name: x\nversion: 1\nmethods: &m {random: *m}\n"),
         "the alias *m is inside the value it names"),
    Case("protocol-duplicate-key", protocol_text(TINY_TEXT + "budget: 3\n"), "key 'budget' appears twice"),
    Case("protocol-not-utf8", protocol_text(TINY_TEXT.replace("test-suite", "caf\xe9").encode("latin-1")),
         "is not UTF-8 text (byte"),
    Case("grid-not-utf8", grid_text(b"methods: [caf\xe9]\n"), "is not UTF-8 text (byte"),
    Case("grid-duplicate-key", grid_text("methods: [random]\nmethods: [herding]\n"), "key 'methods' appears twice"),
    # grid axes of the wrong type, or empty
    Case("grid-budgets-not-integers", grid_text("methods: [random]\nbudgets: fifty\n"),
         "budgets: expected a list of positive integers, got ['fifty']"),
    Case("grid-seeds-not-integers", grid_text("methods: [random]\nseeds: [a]\n"), "seeds: expected a list of integers"),
    Case("grid-seeds-float", grid_text("methods: [random]\nseeds: [1.5]\n"), "seeds: expected a list of integers"),
    Case("grid-models-not-names", grid_text("methods: [random]\nmodels: {mlp: 1}\n"), "models: expected a list of names"),
    Case("grid-methods-empty", grid_text("methods: []\n"), "'methods' is empty"),
    Case("grid-norms-empty", grid_text("methods: [random]\nnorms: []\n"), "'norms' is empty"),
    # values that used to end in a traceback
    Case("protocol-name-too-long", protocol_with(name="x" * 300), "protocol.name: must have 1 to 100 characters, got 300"),
    Case("model-params-unknown", protocol_with(model_params={"hiden": 64}),
         "model_params of model 'mlp': unknown parameter 'hiden'. Did you mean: hidden?"),
    Case("seed-too-large", protocol_with(seeds=[2**64]), "protocol.seeds: seeds must lie in 0..4294967295"),
    Case("seed-negative", protocol_with(seeds=[-1]), "protocol.seeds: seeds must lie in 0..4294967295"),
    Case("seed-float", protocol_with(seeds=[0.5]), "protocol.seeds: expected a list of integers"),
    Case("seed-bool", protocol_with(seeds=[True]), "protocol.seeds: expected a list of integers"),
    Case("seeds-count-huge", lambda t: ["run", "-d", "digits", "-m", "random", "-p", TINY_PROTOCOL, "--seeds", str(10**12)],
         "--seeds must be at most 1000"),
    Case("compress-seed-too-large", lambda t: ["compress", "-m", "random", "-d", "digits", "-p", TINY_PROTOCOL,
                                               "--seed", str(2**64), "-o", str(t / "set.pt")],
         "--seed: seeds must lie in 0..4294967295"),
    Case("attack-repeated", protocol_with(**{"evaluation.attacks": ["paper", "pgd", "pgd"]}),
         "evaluation.attacks: names repeat: ['paper', 'pgd', 'pgd']"),
    Case("eps-above-one", protocol_with(**{"epsilon_linf.default": 2}), "epsilon_linf.default: must be at most 1"),
    Case("budget-with-compressed", lambda t: [*RUN, "-p", TINY_PROTOCOL, "--compressed", str(t.parent / "base_set.pt"),
                                              "--budget", "3"], "--budget goes with --method only"),
    Case("normalized-infinite", lambda t: import_set_args(t, "--normalized", "0,inf", "--out", str(t / "set.pt")),
         "--normalized '0,inf': means and stds must be finite"),
    # saved-set metadata and entries, refused before any compute (before: recorded as they were, or after training)
    Case("set-budget-null-but-partial", saved_set(meta(budget=None)),
         "metadata budget null says it is the full training set, but it holds 70 of its 1438 images"),
    Case("set-cost-absurd", saved_set(meta(compress_s=1e300)), "metadata compress_s must be seconds between 0 and 1e+08"),
    Case("set-cost-negative", saved_set(meta(compress_s=-1.0)), "metadata compress_s must be seconds between 0 and 1e+08"),
    Case("set-proxy-above-compress", saved_set(meta(compress_s=1.0, proxy_s=5.0)), "proxy_s (5.0) is part of compress_s (1.0)"),
    Case("set-seed-string", saved_set(meta(seed="zero")), "metadata seed must be a non-negative integer or null, got 'zero'"),
    Case("set-budget-string", saved_set(meta(budget="7")), "metadata budget must be a positive integer or null, got '7'"),
    Case("set-counts-not-its-own", saved_set(meta(per_class_counts=[1] * 10)), "are not the set's own [7, 7, 7"),
    Case("set-params-not-mapping", saved_set(meta(params=[1])), "metadata params must be a mapping, got list"),
    Case("set-unknown-entry", saved_set(put("labelz", torch.zeros(3))), "unknown entry 'labelz'"),
    Case("set-extra-radius-norm-unknown", saved_set(lambda p: p.update(extra_radius=torch.ones(len(p["labels"])),
                                                                       extra_radius_norm="l3")),
         "extra_radius_norm must name the norm of extra_radius, got 'l3'"),
    Case("set-extra-radius-negative", saved_set(lambda p: p.update(extra_radius=-torch.ones(len(p["labels"])),
                                                                   extra_radius_norm="linf")),
         "extra_radius must be finite and non-negative"),
    # files that import-set reads
    Case("import-npz-object-array", import_npz_object_array, "not readable by numpy without unpickling"),
    Case("import-npz-strings", import_npz_strings, "holds an array that is not numbers"),
    # a record at a cell's path must be that cell's
    Case("record-of-another-cell", record_of_another_cell, "is not this cell's record (seed 0 instead of 1)"),
    Case("record-invalid-at-cell", record_invalid_at_cell, "is invalid (schema_version: missing"),
    # bad caches for every command that writes one
    Case("compress-cache-under-a-file", lambda t: ((t / "f").write_text("x"),
                                                   ["compress", "-m", "random", "-d", "digits", "-b", "3", "-p",
                                                    TINY_PROTOCOL, "-o", str(t / "set.pt")])[1],
         "cache folder (DCROBENCH_CACHE)", env=(("DCROBENCH_CACHE", "{tmp}/f/cache"),)),
    Case("import-set-cache-under-a-file", lambda t: ((t / "f").write_text("x"), write_import_tensors(t),
                                                     import_set_args(t, "--out", str(t / "set.pt")))[2],
         "cache folder (DCROBENCH_CACHE)", env=(("DCROBENCH_CACHE", "{tmp}/f/cache"),)),
    # values a careful user might still get wrong
    Case("threads-not-a-number", run_args("-m", "random", "--threads", "many"), "--threads must be a number, 'auto' or 'torch'"),
    Case("budget-negative", run_args("-m", "random", "--budget", "-3"), "budget must be at least 1"),
    Case("seeds-beyond-max-seed", lambda t: [*protocol_with(seeds=[2**32 - 1])(t), "--seeds", "2"], "pass 4294967295"),
    # Click's own usage errors: one `error:` line too
    Case("usage-unknown-option", lambda t: ["run", "--bogus"], "No such option '--bogus'"),
    Case("usage-not-an-integer", lambda t: ["run", "-d", "digits", "--seeds", "many"], "'many' is not a valid integer"),
    Case("usage-missing-option", lambda t: ["run", "-m", "random"], "Missing option '--dataset'"),
]


@pytest.fixture
def case_dir(base, tmp_path, monkeypatch):
    shutil.copy(base / "set.pt", tmp_path / "base_set.pt")
    shutil.copytree(base / "results", tmp_path / "results")
    work = tmp_path / "case"
    work.mkdir()
    regs = build_registries(extra_plugins={"bad_methods": _BadPlugin()})
    monkeypatch.setattr(dcrobench.registry, "registries", lambda: regs)
    monkeypatch.chdir(work)
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_one_line_and_nothing_changes(case, case_dir, monkeypatch):
    work, results = case_dir / "case", case_dir / "results"
    for name, value in case.env:
        monkeypatch.setenv(name, value.format(tmp=work))
    args = case.build(work)
    if args[0] == "run" and "--results" not in args:
        args = [*args, "--results", str(results)]
    before = {**checksums(results), **checksums(work)}
    res = CliRunner().invoke(main, args)
    assert res.exit_code not in (0, None), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    assert case.message in errors[0], res.output
    assert {**checksums(results), **checksums(work)} == before  # nothing recorded, nothing lost


def test_usage_errors_keep_click_exit_code_2(case_dir):
    res = CliRunner().invoke(main, ["run", "--bogus"])
    assert res.exit_code == 2 and "Usage:" not in res.output and "Error:" not in res.output, res.output


def test_sigterm_stops_a_run_like_ctrl_c_and_says_what_is_kept(case_dir):
    """Before: SIGTERM ended a run without a word (a guard handler stands in for the default, which kills pytest)."""
    def no_handler(signum, frame):
        raise RuntimeError("dcrobench installed no SIGTERM handler")

    previous = signal.signal(signal.SIGTERM, no_handler)
    try:
        results = case_dir / "results"
        before = checksums(results)
        res = CliRunner().invoke(main, [*RUN, "-m", "sigterm", "-p", TINY_PROTOCOL, "--results", str(results)])
        assert signal.getsignal(signal.SIGTERM) is no_handler  # the command's handler is gone with it
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert res.exit_code == 128 + signal.SIGTERM, res.output
    assert "Traceback" not in res.output and "error:" not in res.output
    assert "interrupted (SIGTERM): finished records and stages are kept" in res.output
    assert checksums(results) == before


def test_the_catalogue_is_big_enough():
    assert len(CASES) >= 120 and len({c.id for c in CASES}) == len(CASES)
