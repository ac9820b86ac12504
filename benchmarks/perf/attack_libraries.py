"""Compare APGD-CE / APGD-DLR from ART (the dependency) and torchattacks on the quick protocol.

Trains the quick protocol's model adversarially on a random 50-per-class subset of mnist5k, then
runs both libraries' APGD-CE and APGD-DLR with the same eps, iterations and restarts on the same
test points, and prints robust accuracy and wall time. torchattacks is not a dependency (3.5.1
pins requests~=2.25.1); install it in a scratch folder to include it:

    pip install --no-deps --target /tmp/ta torchattacks==3.5.1
    python benchmarks/perf/attack_libraries.py --torchattacks-path /tmp/ta
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--torchattacks-path", default=None)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.torchattacks_path:
        sys.path.insert(0, args.torchattacks_path)

    from dcrobench.attacks import BUILTIN_ATTACKS
    from dcrobench.datasets import BUILTIN_DATASETS, load_dataset, stratified_subset
    from dcrobench.models import build_mlp
    from dcrobench.protocol import load_protocol
    from dcrobench.train import AdversarialTarget, train
    from dcrobench_plugins.baselines import Random

    p = load_protocol("quick")
    spec = next(d for d in BUILTIN_DATASETS if d.name == "mnist5k")
    tr, te = load_dataset(spec, None, False)
    te = stratified_subset(te, args.n)
    comp = Random().run(tr, 50, 0, torch.device("cpu"))
    eps = p.eps("mnist5k", "linf", spec.input_dim)
    torch.manual_seed(0)
    model = build_mlp(1, 28, 10, spec.mean, spec.std)
    train(model, comp.images, comp.labels, p.train, adversarial=AdversarialTarget("linf", torch.full((len(comp),), eps), p.adversarial),
          seed=0, device=torch.device("cpu"), progress=False)
    model.eval()
    x, y = te.images, te.labels
    iters, s = p.evaluation.apgd_iterations, p.evaluation
    rows = []

    def measure(lib: str, name: str, fn) -> None:
        t = time.perf_counter()
        adv = fn()
        dt = time.perf_counter() - t
        with torch.no_grad():
            acc = (model(adv).argmax(1) == y).float().mean().item()
        rows.append((lib, name, acc, dt))

    by_name = {a.name: a for a in BUILTIN_ATTACKS}
    for name in ("apgd-ce", "apgd-dlr"):
        measure("ART", name, lambda: by_name[name].run(model, x, y, norm="linf", eps=eps, settings=s, seed=0))
    try:
        import torchattacks

        for name, loss in (("apgd-ce", "ce"), ("apgd-dlr", "dlr")):
            atk = torchattacks.APGD(model, norm="Linf", eps=eps, steps=iters, n_restarts=s.apgd_restarts, loss=loss, seed=0)
            measure(f"torchattacks {torchattacks.__version__}", name, lambda: atk(x, y))
    except ImportError:
        print("torchattacks not importable: pass --torchattacks-path", file=sys.stderr)

    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    print(f"clean accuracy {clean:.4f}; eps {eps}; {iters} iterations; {len(y)} points; {args.threads} thread(s)")
    print(f"{'library':<22}{'attack':<10}{'robust acc':>12}{'seconds':>10}")
    for lib, name, acc, dt in rows:
        print(f"{lib:<22}{name:<10}{acc:>12.4f}{dt:>10.2f}")
    art = {n: t for lib, n, _, t in rows if lib == "ART"}
    for lib, n, _, t in rows:
        if lib != "ART":
            print(f"ART / {lib} time ratio, {n}: {art[n] / t:.2f}")


if __name__ == "__main__":
    main()
