"""At which l_2 radius do our adversarially trained models keep the paper's l_2 robust accuracy?

Table 3's l_2 column is 10 points above ours under every training and attack setting tried
(``fidelity_factors.py``). This measures the other direction: the l_2-trained model of an
``appendix-c-mnist`` cell, attacked by the protocol's own evaluation (AutoAttack APGD-CE + APGD-DLR,
then PGD) at fractions of the paper's eps_2 = sqrt(2n / (pi e)) eps_inf = 1.355 (``evaluation.eps_sweep``).
Where our curve crosses the paper's number says how much smaller a radius the paper's l_2 score
corresponds to on our models. Training is the protocol's (its stages are read from ``--stages``, the
sweep's cache, when present); records go to ``--results``, a scratch folder.

    python benchmarks/perf/l2_radius.py --stages leaderboard/records/_stages --out benchmarks/perf/l2_radius.md
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import dcrobench
from dcrobench.protocol import load_protocol

PAPER_L2 = {"random": 75.23, "full": 83.29, "dm": 35.50}  # Table 3, MNIST, 500 per class (Raw: the full set)
MULTIPLES = (0.5, 0.6, 0.7, 0.8, 0.9)


def crossing(curve: dict[float, float], target: float) -> float | None:
    """The multiple of eps at which the (decreasing) curve falls to ``target`` %, linearly interpolated."""
    points = sorted(curve.items())
    for (m0, a0), (m1, a1) in zip(points, points[1:]):
        if a0 >= target >= a1 and a0 != a1:
            return m0 + (a0 - target) * (m1 - m0) / (a0 - a1)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["random"])
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--seed-count", type=int, default=1, help="the protocol's first N seeds")
    ap.add_argument("--stages", type=Path, default=None, help="a stage cache to read trained models from")
    ap.add_argument("--results", type=Path, default=Path("/tmp/dcrobench-l2-radius"))
    ap.add_argument("--protocol", default="appendix-c-mnist")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    base = load_protocol(args.protocol)
    proto = dataclasses.replace(base, evaluation=dataclasses.replace(base.evaluation, eps_sweep=MULTIPLES))
    args.results.mkdir(parents=True, exist_ok=True)
    if args.stages is not None and not (args.results / "_stages").exists():
        (args.results / "_stages").symlink_to(args.stages.resolve())
    rows = ["| method | seed | ε2 multiple: robust % | ours at 1× | paper | paper's number reached at |",
            "|---|---|---|---|---|---|"]
    for method in args.methods:
        t0 = time.perf_counter()
        records = dcrobench.run(method, args.dataset, budget=None if method == "full" else args.budget,
                                protocol=proto, norms="l2", seeds=args.seed_count, results=args.results,
                                threads=args.threads, progress=False)
        for rec in records:
            curve = {float(p["multiple"]): 100 * p["robust_acc"] for p in rec.adversarial.eps_curve}
            curve[1.0] = 100 * rec.scores.robust
            at = crossing(curve, PAPER_L2[method])
            text = ", ".join(f"{m:g}: {a:.2f}" for m, a in sorted(curve.items()))
            rows.append(f"| {method} | {rec.seed} | {text} | {curve[1.0]:.2f} | {PAPER_L2[method]:.2f} | "
                        + ("beyond the multiples run" if at is None else f"{at:.2f}× (ε2 {at * rec.eps:.2f} of {rec.eps:.3f})")
                        + " |")
        print(f"{method}: {time.perf_counter() - t0:.0f} s", flush=True)
    table = "\n".join(rows)
    print(table)
    if args.out:
        args.out.write_text(f"# l_2 robust accuracy against the radius, measured {time.strftime('%Y-%m-%d')}\n\n"
                            f"`python benchmarks/perf/l2_radius.py` ({args.protocol} v{base.version}, "
                            f"{args.dataset}, full test set, {args.threads} CPU thread(s)).\n\n{table}\n")


if __name__ == "__main__":
    main()
