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


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (frozen) dataclass config from JSON, turning lists back into tuples."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise MpgymError(f"config for {cls.__name__} has unknown fields {sorted(unknown)}.")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


def build_model(name: str, config: Any = None):
    """Instantiate a registered model from a config object, a dict, or its defaults."""
    model_cls, cfg_cls = model_classes(name)
    if config is None:
        config = cfg_cls()
    elif isinstance(config, dict):
        config = config_from_dict(cfg_cls, config)
    return model_cls(config)


def load_model(path, *, expected: str | tuple[str, ...] | None = None):
    """Load ``(name, model)`` from a run directory or ``checkpoint.safetensors``.

    Raises:
        MpgymError: no checkpoint, or a checkpoint of another kind than ``expected``.
    """
    import torch

    from mpgym import load_checkpoint

    ckpt = load_checkpoint(path, expected_kind=expected)
    if ckpt.kind not in MODELS:
        raise MpgymError(
            f"{ckpt.path} holds a {ckpt.kind!r} checkpoint, not a generative model "
            f"({', '.join(MODELS)})."
        )
    model = build_model(ckpt.kind, ckpt.config)
    with torch.no_grad():
        missing, unexpected = model.load_state_dict(ckpt.state_dict, strict=False)
    if missing or unexpected:
        raise MpgymError(
            f"{ckpt.path}: weights do not match a {ckpt.kind!r} model with its stored config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})."
        )
    model.eval()
    return ckpt.kind, model


__all__ = ["MODELS", "build_model", "config_from_dict", "load_model", "model_classes"]
