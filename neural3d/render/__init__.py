"""Renderers: volume rendering (NeRF), differentiable volumetric rendering (DVR)."""
