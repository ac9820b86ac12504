"""Time PGD adversarial training through the harness against a bare PyTorch loop doing the same work.

Same model, data, batch order, PGD (steps, step size, random start) and optimizer; the bare loop
is the textbook Madry et al. loop written inline. Runs alternate (harness, bare, harness, ...) and
the minimum of each is compared, so a noisy shared machine affects both alike. Goal: ratio <= 1.10.

    python benchmarks/perf/adv_training_overhead.py [--threads 1] [--model mlp|convnet] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def bare_loop(model, images, labels, *, epochs, batch_size, lr, eps, steps, step_size, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    n = labels.shape[0]
    alpha = step_size * eps
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            b = perm[start:start + batch_size]
            x, y = images[b], labels[b]
            model.eval()
            x_adv = (x + (torch.rand_like(x) * 2 - 1) * eps).clamp(0, 1)
            for _ in range(steps):
                x_adv.requires_grad_(True)
                loss = F.cross_entropy(model(x_adv), y, reduction="sum")
                (g,) = torch.autograd.grad(loss, x_adv)
                with torch.no_grad():
                    x_adv = torch.min(torch.max(x_adv + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
            model.train()
            loss = F.cross_entropy(model(x_adv.detach()), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="mlp", choices=["mlp", "convnet"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from dcrobench.datasets import load_dataset
    from dcrobench_plugins.datasets import BUILTIN_DATASETS
    from dcrobench.device import resolve_device
    from dcrobench_plugins.models import build_convnet, build_mlp
    from dcrobench.protocol import AdversarialSettings, TrainSettings
    from dcrobench.train import AdversarialTarget, train

    device = resolve_device(None)
    spec = next(d for d in BUILTIN_DATASETS if d.name == "mnist5k")
    tr, _ = load_dataset(spec, None, False)
    images, labels = tr.images[: args.n].to(device), tr.labels[: args.n].to(device)
    build = build_mlp if args.model == "mlp" else (lambda *a: build_convnet(*a, width=32))
    eps, steps, step_size, bs, lr = 0.1, 10, 0.25, 64, 0.01
    settings = TrainSettings(epochs=args.epochs, batch_size=bs, lr=lr, schedule="constant")
    adv = AdversarialSettings(steps=steps, step_size=step_size, random_start=True)

    def harness():
        torch.manual_seed(0)
        m = build(1, 28, 10, spec.mean, spec.std).to(device)
        train(m, images, labels, settings, adversarial=AdversarialTarget("linf", torch.full((len(labels),), eps), adv),
              seed=0, device=device, progress=False)

    def bare():
        torch.manual_seed(0)
        m = build(1, 28, 10, spec.mean, spec.std).to(device)
        bare_loop(m, images, labels, epochs=args.epochs, batch_size=bs, lr=lr, eps=eps, steps=steps,
                  step_size=step_size, seed=0)

    times = {"harness": [], "bare": []}
    for _ in range(args.repeats):
        for name, fn in (("harness", harness), ("bare", bare)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    h, b = min(times["harness"]), min(times["bare"])
    print(f"device {device}, {args.threads} thread(s), model {args.model}, {args.n} images, {args.epochs} epochs, PGD-{steps}")
    print(f"harness {h:.2f} s  bare loop {b:.2f} s  ratio {h / b:.3f} (goal <= 1.10)")
    print(f"all runs: harness {[round(x, 2) for x in times['harness']]}, bare {[round(x, 2) for x in times['bare']]}")


if __name__ == "__main__":
    main()
