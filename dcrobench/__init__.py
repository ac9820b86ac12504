"""dcrobench: adversarial robustness of models trained on compressed datasets.

The Python API (the CLI's commands, same names, defaults and errors)::

    import dcrobench
    records = dcrobench.run("random", "mnist5k", protocol="quick", seeds=1)   # list of Record
    dcrobench.compress("herding", "mnist5k", budget=10, out="herding10.pt")  # a CompressedSet
    dcrobench.import_set(["images_best.pt", "labels_best.pt"], fmt="mtt", dataset="cifar10",
                         name="mtt-official", normalized="cifar10", out="mtt.pt")  # a set distilled elsewhere
    dcrobench.sweep("benchmarks/grids/quick.yaml", results="results", workers=2)
    df = dcrobench.load_results("results")                                    # pandas, one row per record
    model = dcrobench.load_model("models/random_mnist5k_b50_mlp_linf_s0_<hash>_adversarial.safetensors")
    images, labels = dcrobench.load_dataset("mnist5k", protocol="quick")     # the test points a run attacks

Importing the package loads nothing heavy: each function imports torch and the plugins when called.
"""

__version__ = "0.1.0"

__all__ = ["run", "compress", "import_set", "sweep", "load_results", "load_model", "load_dataset", "__version__"]


def __getattr__(name: str):
    if name in ("run", "compress", "import_set", "sweep", "load_results", "load_model", "load_dataset"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'dcrobench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
