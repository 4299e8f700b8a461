"""Demo stop: three quick generative models on the 8x8 digits, sample grids next to real digits."""

from __future__ import annotations

import time
from pathlib import Path

from mpgym.report import Section

# (model, config overrides, steps, lr): budgets for about a minute on 2 idle cores
QUICK = (("vae", {"dropout": 0.2}, 1000, 1e-3), ("made", {}, 600, 1e-3), ("nade", {}, 400, 3e-3))


def run(out: Path) -> Section:
    """Train a VAE, a MADE and a NADE briefly; save real digits and samples; report test NLLs."""
    import dataclasses

    import torch

    from generative import build_model, model_classes
    from generative.data import categorical_baseline_nll, load_digits_split
    from generative.evaluation import evaluate
    from generative.trainer import TrainConfig, train
    from generative.visuals import save_digit_grid, save_interpolation

    torch.manual_seed(0)
    split = load_digits_split()
    images = [save_digit_grid(out / "real_digits.png", split.x_test[:64])]
    metrics: dict[str, float | str] = {
        "independent categorical NLL (nats)": round(
            categorical_baseline_nll(split.x_train, split.x_test), 2
        )
    }
    for name, overrides, steps, lr in QUICK:
        t0 = time.perf_counter()
        cfg = dataclasses.replace(model_classes(name)[1](), **overrides)
        model = build_model(name, cfg)
        train(
            model,
            split.x_train,
            split.x_val,
            TrainConfig(steps=steps, lr=lr, eval_every=250, progress=False),
            kind=name,
            model_config=cfg,
        )
        ev = evaluate(name, model, split, n_samples=64, quick=True)
        images.append(save_digit_grid(out / f"{name}_samples.png", ev.samples))
        if name == "vae":
            images.append(
                save_interpolation(
                    out / "vae_interpolation.png", model, split.x_test[:5], split.x_test[5:10]
                )
            )
        metrics[f"{name} test NLL (nats, {ev.bound})"] = round(ev.nll_nats, 2)
        metrics[f"{name} train+eval seconds"] = round(time.perf_counter() - t0, 1)
    return Section(
        title="Generative models on 8x8 digits",
        text="Real test digits, then samples of a VAE (with a latent interpolation), a MADE and "
        "a NADE, "
        "each trained for about a minute on 1,000 images; NLLs are nats per image over 17 levels "
        "(lower is better; independent pixels score 106.5).",
        images=images,
        metrics=metrics,
    )
