"""Selection time of every proxy-based coreset method vs the proxy training it depends on.

For each method (the gradient family and, when registered, herding / kcenter / submod-*), on
mnist5k's 4,000 training images at a budget of 50 per class:

1. ``cold``: ``method.run`` with an empty cache (trains every proxy it needs, then selects);
2. ``warm``: ``method.run`` again (proxies come from the cache: selection only);

``proxy s = cold - warm`` is the proxy training the method depends on (GraNd: ``repeats`` proxies),
``select s = warm``, and the goal is ``select s <= 10 x proxy s``. Proxy settings come from the
protocol's ``proxy:`` block and method parameters from its ``methods:`` block.

    python benchmarks/perf/coreset_selection_time.py [--protocol quick] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

DEFAULT_METHODS = ["forgetting", "grand", "craig", "gradmatch", "glister", "herding", "kcenter", "submod-gc",
                   "submod-fl"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", default="quick")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", nargs="*", default=DEFAULT_METHODS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["DCROBENCH_CACHE"] = tempfile.mkdtemp(prefix="dcrobench-perf-")  # every method starts cold

    from dcrobench.datasets import load_dataset
    from dcrobench.protocol import load_protocol
    from dcrobench.registry import registries

    proto = load_protocol(args.protocol)
    regs = registries()
    data, _test = load_dataset(regs.datasets.get(args.dataset), None, False)
    device = torch.device(args.device)
    print(f"{args.dataset}: {len(data)} train images, budget {args.budget}/class, device {device}, "
          f"threads {args.threads}, proxy {proto.proxy}")

    rows = []
    for name in args.methods:
        if name not in regs.methods:
            print(f"skip {name}: not registered")
            continue
        cls = regs.methods.get(name)
        params = proto.method_params(name, cls.default_params)
        method = cls(**params)
        sub = os.path.join(os.environ["DCROBENCH_CACHE"], name)
        os.environ["DCROBENCH_CACHE"] = sub  # a fresh cache per method: its own cold start
        t0 = time.perf_counter()
        method.run(data, args.budget, args.seed, device)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = method.run(data, args.budget, args.seed, device)
        warm = time.perf_counter() - t0
        os.environ["DCROBENCH_CACHE"] = os.path.dirname(sub)
        proxy_s = max(cold - warm, 1e-9)
        rows.append((name, proxy_s, warm, warm / proxy_s, out.per_class_counts(data.num_classes) == [args.budget] * data.num_classes))

    print()
    print("| method | proxy training s | selection s | selection / proxy | exact budget |")
    print("|---|---:|---:|---:|---|")
    for name, p, s, r, ok in rows:
        print(f"| {name} | {p:.2f} | {s:.2f} | {r:.2f} | {'yes' if ok else 'NO'} |")
    worst = max((r for _, _, _, r, _ in rows), default=0.0)
    print(f"\nworst selection/proxy ratio {worst:.2f} (goal <= 10)")


if __name__ == "__main__":
    main()
