"""Demo stop: human motion generated on the SMPL body, by motion matching and by diffusion."""

from __future__ import annotations

import time
from pathlib import Path

from mpgym.report import Section


def run(out: Path) -> Section:
    """GenMM (no training) and a small MDM (about half a minute) each make a 4-s walk and run."""
    import numpy as np
    import torch

    from bodies.motion import generator_api
    from bodies.motion.dataset import windows
    from bodies.motion.metrics import foot_skating
    from mpgym.cli.motion import write_gif

    metrics: dict[str, float] = {}
    images = []
    data = windows("train", mirror=False)
    metrics["foot skating, data"] = foot_skating(data.x)
    for name in ("genmm", "mdm"):
        api = generator_api(name)
        train = api.train_presets["tiny"] if api.train_presets is not None else None
        t0 = time.perf_counter()
        model = api.fit(api.presets["tiny"], train=train, seed=0)
        metrics[f"{name} fit seconds"] = time.perf_counter() - t0
        g = torch.Generator().manual_seed(0)
        for label in ("walk", "run"):
            feats = np.asarray(model.generate(1, 4.0, labels=[label], generator=g))[0]
            images.append(write_gif(out / f"{name}-{label}.gif", feats, label, compare=True))
        wins = model.generate_windows(list(data.label_names) * 4, generator=g)
        metrics[f"foot skating, {name}"] = foot_skating(np.asarray(wins))
    return Section(
        title="bodies.motion: generating human motion",
        text="Left: generated on the synthetic SMPL-compatible body; right: the motion-capture "
        "clip of the same label. GenMM matches patches of the example clips (no training); the "
        "motion diffusion model here is the tiny preset trained for seconds (mpgym motion train "
        "mdm trains the full one). Foot skating: fraction of foot-contact frames that slide.",
        images=images,
        metrics=metrics,
    )
