"""dcrobench's attack engine against a direct pyautoattack call, and ART against pyautoattack.

Trains the quick protocol's MLP adversarially on a random 50-per-class subset of mnist5k, then, on
the same test points and in one process, times:

* a direct ``pyautoattack.AutoAttack`` call (APGD-CE then APGD-DLR, version 'custom', APGD built
  with the protocol's iterations and restarts);
* dcrobench's ``evaluate_robustness`` with the ``paper`` set and the same settings (cascade);
* ART's APGD-CE + APGD-DLR (``pip install 'dcrobench[art]'``) in the same cascade.

It uses all 1,000 test images by default (``--test-points``). It prints accuracies, seconds and the ratios dcrobench / pyautoattack (goal <= 1.05) and
ART / pyautoattack, and whether dcrobench's flags equal AutoAttack's point for point. Each engine
runs ``--repeats`` times; the median is reported.

    python benchmarks/perf/attack_engine.py --threads 1 [--norm l2] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--norm", choices=["linf", "l2"], default="linf")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--test-points", type=int, default=1000, help="stratified subset of mnist5k's 1,000 test images")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack

    from dcrobench.attacks import configure_attacks, decode_flags, evaluate_robustness
    from dcrobench.datasets import load_dataset, stratified_subset
    from dcrobench_plugins.datasets import BUILTIN_DATASETS
    from dcrobench.device import resolve_device
    from dcrobench_plugins.models import build_mlp
    from dcrobench.protocol import load_protocol
    from dcrobench.registry import registries
    from dcrobench.train import AdversarialTarget, train
    from dcrobench_plugins.baselines import Random

    device = resolve_device(args.device)
    p = load_protocol("quick")
    spec = next(d for d in BUILTIN_DATASETS if d.name == "mnist5k")
    tr, te = load_dataset(spec, None, False)
    te = stratified_subset(te, args.test_points)
    comp = Random().run(tr, 50, 0, device)
    eps = p.eps("mnist5k", args.norm, spec.input_dim)
    torch.manual_seed(0)
    model = build_mlp(1, 28, 10, spec.mean, spec.std).to(device)
    train(model, comp.images, comp.labels, p.train, seed=0, device=device, progress=False,
          adversarial=AdversarialTarget(args.norm, torch.full((len(comp),), eps), p.adversarial))
    model.eval()
    x, y = te.images.to(device), te.labels.to(device)
    bs = p.evaluation.batch_size
    ce = p.attacks["apgd-ce"]
    norm_name = {"linf": "Linf", "l2": "L2"}[args.norm]

    def direct():
        aa = AutoAttack(model, attacks=["apgd-ce", "apgd-dlr"], device=device, eps=eps, norm=norm_name, seed=0,
                        version="custom")
        aa.verbose = False
        aa.apgd = APGDAttack(model, n_iter=ce["iterations"], n_restarts=ce["restarts"], eps=eps, norm=norm_name,
                             seed=0, device=device, eot_iter=1, rho=0.75, logger=aa.logger)
        _, y_adv = aa.run_standard_evaluation(x, y, batch_size=bs)
        return (y_adv == y).cpu()

    lookup = registries().attacks.get

    def ours(names, blocks):
        attacks = configure_attacks(names, blocks, lookup)
        res = evaluate_robustness(model, x, y, norm=args.norm, eps=eps, attacks=attacks, batch_size=bs, seed=0,
                                  device=device, progress=False)
        return decode_flags(res["flags"][attacks[-1].name], res["n"])

    engines = {
        "pyautoattack (direct)": direct,
        "dcrobench (paper set)": lambda: ours(("paper",), {k: p.attacks[k] for k in ("apgd-ce", "apgd-dlr")}),
    }
    if "art-apgd-ce" in registries().attacks:
        art = {"iterations": ce["iterations"], "restarts": ce["restarts"]}
        engines["ART (art-apgd-ce + art-apgd-dlr)"] = lambda: ours(("art-apgd-ce", "art-apgd-dlr"),
                                                                   {"art-apgd-ce": art, "art-apgd-dlr": art})
    times: dict[str, list[float]] = {name: [] for name in engines}
    flags = {}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits every engine alike
        for name, fn in engines.items():
            start = time.process_time() if device.type == "cpu" else time.perf_counter()
            flags[name] = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.process_time() if device.type == "cpu" else time.perf_counter()) - start)
    base = statistics.median(times["pyautoattack (direct)"])
    clock = "CPU" if device.type == "cpu" else "wall"
    print(f"quick protocol, mnist5k, MLP adversarially trained ({args.norm}, eps {eps:.4g}), {len(y)} test points, "
          f"APGD {ce['iterations']} iterations x {ce['restarts']} restart(s), {device}, {args.threads} thread(s), "
          f"median of {args.repeats} ({clock} seconds)")
    print(f"{'engine':36s} {'robust acc':>10s} {'seconds':>9s} {'/ pyautoattack':>15s}")
    for name in engines:
        s = statistics.median(times[name])
        print(f"{name:36s} {flags[name].float().mean().item():10.3f} {s:9.2f} {s / base:15.2f}")
    same = torch.equal(flags["dcrobench (paper set)"], flags["pyautoattack (direct)"])
    print(f"dcrobench flags equal AutoAttack's point for point: {same}")


if __name__ == "__main__":
    main()
