"""Where the gap to the paper's Table 3 comes from: one factor at a time, measured on one cell.

Starts from ``appendix-c-mnist`` as it was at v2 (dcrobench's own choices) and moves one factor at a
time to what the authors' code does (``saintslab/pytoch``, ``src.py``), ending at v3:

1. v2: inputs standardised inside the model, PGD-10 training (random start, clipped);
2. + [0, 1] inputs (``model_params.normalize: false``);
3. + the authors' training attack (l_inf: PGD-20, step eps, zero start, no clip; l_2: PGD-40, step 0.1,
   zero start, clipped) = v3;
4. v3 with the authors' default of 100 epochs instead of the paper's 20 (not adopted);
5.-6. v3 with the l_inf training attack clipped to [0, 1], or started at a random point: which part of
   the authors' training PGD moves the l_inf score.

Each adversarially trained model is attacked by the protocol's evaluation (AutoAttack APGD-CE +
APGD-DLR, then PGD: the robust score) and by the authors' own PGD as ``src.py`` writes it (l_inf:
20 steps of eps from a zero start, x + delta not clipped to [0, 1]; l_2: 40 steps of 0.1, clipped),
plus the same l_inf PGD clipped to [0, 1], the only version that is a valid attack on images.

    python benchmarks/perf/fidelity_factors.py --data-root DIR --out benchmarks/perf/fidelity_factors.md

One seed and one budget per run (defaults: Rand-500, seed 0, the full 10,000-image test set); about
an hour on one CPU thread. Records and models go to ``--results`` (a scratch folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

import dcrobench
from dcrobench.attacks import l2_epsilon, pgd
from dcrobench.datasets import load_dataset
from dcrobench.protocol import load_protocol
from dcrobench.registry import registries

PAPER = {"std": 95.47, "linf": 78.69, "l2": 75.23}  # Table 3, MNIST, Rand-500 (mean of 5)


def variants(base):
    """(label, protocol) from v2's choices to v3, one factor at a time, then the authors' 100-epoch default."""
    v2_attack = dataclasses.replace(base.adversarial, steps=10, step_size=1.0, random_start=True, clip=True, per_norm={})
    steps = [
        ("v2: standardised inputs, PGD-10 random start", {"normalize": True}, base.train, v2_attack),
        ("+ [0, 1] inputs (authors)", {"normalize": False}, base.train, v2_attack),
        ("+ authors' training PGD = v3", {"normalize": False}, base.train, base.adversarial),
        ("v3 + 100 epochs (authors' default, not adopted)", {"normalize": False},
         dataclasses.replace(base.train, epochs=100), base.adversarial),
        ("v3 with the ℓ∞ training PGD clipped to [0, 1]", {"normalize": False}, base.train,
         dataclasses.replace(base.adversarial, clip=True)),
        ("v3 with the ℓ∞ training PGD from a random start", {"normalize": False}, base.train,
         dataclasses.replace(base.adversarial, random_start=True)),
    ]
    for i, (label, model_params, train, adversarial) in enumerate(steps):
        yield label, dataclasses.replace(base, name=f"fidelity-factor-{i}", model_params=model_params, train=train,
                                         adversarial=adversarial)


def authors_pgd(model, x, y, norm, eps, clip, device, batch=1000) -> float:
    """Accuracy under the authors' PGD (src.py's defaults and Table 2's alpha = 0.1)."""
    correct = 0
    for i in range(0, len(y), batch):
        xb, yb = x[i:i + batch].to(device), y[i:i + batch].to(device)
        if norm == "linf":
            adv = pgd(model, xb, yb, norm="linf", eps=eps, steps=20, step_size=0.1 / eps, random_start=False, clip=clip)
        else:
            adv = pgd(model, xb, yb, norm="l2", eps=eps, steps=40, step_size=0.1 / eps, random_start=False, clip=True)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    return 100.0 * correct / len(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=Path("/tmp/dcrobench-fidelity"))
    ap.add_argument("--protocol", default="appendix-c-mnist", help="the v3 end point (a smaller copy for a dry run)")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--method", default="random")
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="markdown table (printed too)")
    args = ap.parse_args()

    base = load_protocol(args.protocol)
    base = dataclasses.replace(base, seeds=(args.seed,))
    spec = registries().datasets.get(args.dataset)
    _, test = load_dataset(spec, args.data_root, False)
    eps_inf = base.eps(args.dataset, "linf", spec.input_dim)
    eps_2 = l2_epsilon(eps_inf, spec.input_dim)
    device = torch.device("cpu")
    lines = [f"Rand-{args.budget}" if args.method == "random" else f"{args.method}-{args.budget}",
             "", "| setting | standard | ℓ∞ AutoAttack (score) | ℓ∞ authors' PGD, unclipped | ℓ∞ authors' PGD, clipped "
             "| ℓ2 AutoAttack (score) | ℓ2 authors' PGD | adv. clean ℓ∞ / ℓ2 | train s |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| paper, Table 3 (5 seeds) | {PAPER['std']} | {PAPER['linf']} | – | – | {PAPER['l2']} | – | – | – |"]
    print("\n".join(lines), flush=True)
    for label, proto in variants(base):
        models_dir = args.results / "models" / proto.name
        t0 = time.time()
        recs = dcrobench.run(args.method, args.dataset, budget=args.budget, protocol=proto, norms=("linf", "l2"), seeds=1,
                             results=args.results, threads=args.threads, data_root=args.data_root,
                             save_models=models_dir, progress=False)
        by_norm = {r.norm: r for r in recs}
        row = {}
        for norm, eps in (("linf", eps_inf), ("l2", eps_2)):
            found = sorted(models_dir.glob(f"*_{norm}_s{args.seed}_*_adversarial.json"))
            model = dcrobench.load_model(found[-1]).eval()
            row[norm] = authors_pgd(model, test.images, test.labels, norm, eps, clip=False, device=device)
            if norm == "linf":
                row["linf_clip"] = authors_pgd(model, test.images, test.labels, norm, eps, clip=True, device=device)
        li, l2 = by_norm["linf"], by_norm["l2"]
        train_s = sum(r.cost["train_s"] for r in recs)
        line = (f"| {label} | {100 * li.scores.standard:.2f} | {100 * li.scores.robust:.2f} | {row['linf']:.2f} | "
                f"{row['linf_clip']:.2f} | {100 * l2.scores.robust:.2f} | {row['l2']:.2f} | "
                f"{100 * li.adversarial.clean_acc:.2f} / {100 * l2.adversarial.clean_acc:.2f} | {train_s:.0f} |")
        lines.append(line)
        print(line, f"({time.time() - t0:.0f} s)", flush=True)
    if args.out:
        args.out.write_text(f"# Fidelity factors, measured {time.strftime('%Y-%m-%d')}\n\n"
                            "`python benchmarks/perf/fidelity_factors.py` (1 thread, full MNIST, full test set)\n\n"
                            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
