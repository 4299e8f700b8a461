"""generative: VAE, autoregressive models, normalizing flows, GANs and diffusion.

Reusable building blocks (pure functions, then ``nn.Module`` s, then :mod:`generative.trainer`)
proved on scikit-learn's 8x8 digits (17 levels, Tomczak's 1000/350/447 split) and 2D densities.
Importing this package is light: models load on first use through :data:`MODELS`.

Example:
    >>> from generative import build_model  # doctest: +SKIP
    >>> model = build_model("made")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from mpgym.configs import config_from_dict
from mpgym.errors import MpgymError

# registry name -> (module, model class, config class, what it is)
MODELS: dict[str, tuple[str, str, str, str]] = {
    "fvsbn": (
        "generative.autoregressive",
        "FVSBN",
        "FVSBNConfig",
        "fully visible softmax belief net",
    ),
    "nade": (
        "generative.autoregressive",
        "NADE",
        "NADEConfig",
        "neural autoregressive density estimator",
    ),
    "made": (
        "generative.autoregressive",
        "MADE",
        "MADEConfig",
        "masked autoencoder (exact likelihood)",
    ),
    "pixelcnn": ("generative.autoregressive", "PixelCNN", "PixelCNNConfig", "gated PixelCNN"),
    "wavenet": (
        "generative.autoregressive",
        "CausalConvAR",
        "CausalConvConfig",
        "dilated causal convolutions",
    ),
    "transformer": (
        "generative.autoregressive",
        "CausalTransformer",
        "TransformerConfig",
        "causal Transformer",
    ),
    "glow": (
        "generative.flows",
        "Glow",
        "GlowConfig",
        "multi-scale flow (ActNorm, 1x1 conv, coupling)",
    ),
    "realnvp2d": ("generative.flows", "RealNVP2D", "RealNVP2DConfig", "RealNVP for 2D densities"),
    "vae": ("generative.autoencoders", "VAE", "VAEConfig", "variational autoencoder"),
    "vqvae": ("generative.autoencoders", "VQVAE", "VQVAEConfig", "vector-quantised autoencoder"),
    "vqprior": (
        "generative.token_prior",
        "TokenPrior",
        "TokenPriorConfig",
        "VQ-VAE with an autoregressive prior over its tokens",
    ),
    "gan": ("generative.gans", "GAN", "GANConfig", "generative adversarial network"),
    "ddpm": ("generative.diffusion", "DDPM", "DDPMConfig", "denoising diffusion (DDPM / DDIM)"),
}


def model_classes(name: str) -> tuple[type, type]:
    """``(ModelClass, ConfigClass)`` of a registered model."""
    if name not in MODELS:
        raise MpgymError(f"unknown model {name!r}; accepted: {', '.join(MODELS)}.")
    module, cls, cfg, _ = MODELS[name]
    mod = importlib.import_module(module)
    return getattr(mod, cls), getattr(mod, cfg)


MAX_SIZE = 2**24
"""Whole-number config fields other than ``seed`` stay below this magnitude (sizes, steps: at
T = 2^24 diffusion steps one schedule array is already 128 MB)."""


def _check_sizes(config: Any) -> Any:
    """Refuse a whole-number field (other than ``seed``) of magnitude above :data:`MAX_SIZE`."""
    for f in dataclasses.fields(config):
        values = getattr(config, f.name)
        for v in values if isinstance(values, tuple) else (values,):
            if f.name != "seed" and isinstance(v, int) and not isinstance(v, bool) \
                    and abs(v) > MAX_SIZE:
                raise MpgymError(f"config for {type(config).__name__}: {f.name} must be a "
                                 f"whole number of magnitude <= 2^24; got {values!r:.60}.")
    return config


def build_model(name: str, config: Any = None):
    """Instantiate a registered model from a config object, a dict, or its defaults.

    Raises:
        MpgymError: the config does not describe a model that can be built (negative or huge
            sizes, wrong types).
    """
    model_cls, cfg_cls = model_classes(name)
    if config is None:
        config = cfg_cls()
    elif isinstance(config, dict):
        config = _check_sizes(config_from_dict(cfg_cls, config))
    try:
        return model_cls(config)
    except MpgymError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, ZeroDivisionError) as exc:
        raise MpgymError(f"{name}: its config does not build a model ({exc}).") from None
    except (MemoryError, OverflowError):
        raise MpgymError(f"{name}: its config asks for a model too large to build.") from None


@dataclasses.dataclass
class LoadedRun:
    """What :func:`load_run` returns."""

    name: str
    """Registry name of the model (``made``, ``ddpm``...)."""
    model: Any
    """The model with its trained weights, in eval mode."""
    data: str
    """Dataset it was trained on (``digits``, ``moons``...), from the run's ``config.json``."""


DATASETS = ("digits", "digits_binary", "moons", "gaussians8", "checkerboard", "spirals")
"""Dataset names a generative run may record."""


def load_model(path, *, expected: str | tuple[str, ...] | None = None):
    """Load ``(name, model)`` from a run directory or ``checkpoint.safetensors``.

    The stored config is type-checked, the model is first built without memory (on PyTorch's
    ``meta`` device) to compare every weight's shape and dtype with the file, and the weights
    must be finite.

    Raises:
        MpgymError: no checkpoint, a corrupt one, one of another kind than ``expected``, or
            weights that do not fit their config.
    """
    import torch

    from mpgym import load_checkpoint

    try:
        ckpt = load_checkpoint(path, expected_kind=expected)
    except (MemoryError, OverflowError):
        raise MpgymError(f"{path}: the checkpoint declares sizes too large to load.") from None
    if ckpt.kind not in MODELS:
        raise MpgymError(
            f"{ckpt.path} holds a {ckpt.kind!r} checkpoint, not a generative model "
            f"({', '.join(MODELS)})."
        )
    where = f"{ckpt.path} ({ckpt.kind})"
    try:
        with torch.device("meta"):
            shapes = build_model(ckpt.kind, ckpt.config).state_dict()
    except MpgymError as exc:
        raise MpgymError(f"{where}: {exc}") from None
    _check_weights(where, shapes, ckpt.state_dict)
    model = build_model(ckpt.kind, ckpt.config)
    with torch.no_grad():
        model.load_state_dict(ckpt.state_dict, strict=True)
    model.eval()
    return ckpt.kind, model


def _check_weights(where: str, expected: dict[str, Any], got: dict[str, Any]) -> None:
    """Same names, shapes and dtypes as the model built from the config; finite floats."""
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unexpected:
        raise MpgymError(
            f"{where}: weights do not match the model its config describes "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})."
        )
    for key, ref in expected.items():
        t = got[key]
        if tuple(t.shape) != tuple(ref.shape) or t.dtype != ref.dtype:
            raise MpgymError(
                f"{where}: weight {key!r} is {t.dtype} {tuple(t.shape)}; the config describes "
                f"{ref.dtype} {tuple(ref.shape)}."
            )
        if t.dtype.is_floating_point and not bool(t.isfinite().all()):
            raise MpgymError(f"{where}: weight {key!r} contains NaN or infinity.")


def load_run(path) -> LoadedRun:
    """Load a run written by ``mpgym gen train`` (its directory or its checkpoint file).

    Raises:
        MpgymError: the checkpoint or the run's ``config.json`` is missing, corrupt or does not
            fit (see :func:`load_model`).
    """
    import json
    from pathlib import Path

    path = Path(path)
    name, model = load_model(path)
    cfg_path = (path if path.is_dir() else path.parent) / "config.json"
    data = "digits"
    if cfg_path.exists():
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise MpgymError(f"{cfg_path} is not valid JSON ({exc}).") from None
        if not isinstance(cfg, dict):
            raise MpgymError(f"{cfg_path} must hold a JSON object.")
        data = cfg.get("data", "digits")
        if data not in DATASETS:
            raise MpgymError(
                f"{cfg_path}: data must be one of {', '.join(DATASETS)}; got {data!r:.60}."
            )
    return LoadedRun(name, model, data)


__all__ = [
    "DATASETS",
    "MODELS",
    "LoadedRun",
    "build_model",
    "load_model",
    "load_run",
    "model_classes",
]
