"""3D Gaussian splatting (Kerbl et al. 2023): a scene as anisotropic Gaussians, rasterized.

Modules, bottom to top (submodules are imported on demand; ``import neural3d.splat`` is cheap):

- :mod:`neural3d.splat.sh` -- real spherical harmonics up to degree 3 for view-dependent
  colour (``eval_sh``, ``rgb_to_sh``, ``sh_to_rgb``), the 3DGS reference's constants and signs.
- :mod:`neural3d.splat.model` -- ``GaussianModel``: the parameters in an ``nn.ParameterDict``
  and their activations; initialisation from points, random points in a box, mesh samples or a
  trained NeRF; ``to_tensors`` / ``from_tensors`` for checkpoints.
- :mod:`neural3d.splat.ply` -- ``save_ply`` / ``load_ply``: the standard 3DGS ``.ply`` that
  splat viewers open (62 float32 properties per Gaussian at SH degree 3).
- :mod:`neural3d.splat.project` -- ``project_gaussians``: world to screen, EWA 2D
  covariances, conics, radii and frustum culling, as pure differentiable torch.
- :mod:`neural3d.splat.rasterize` -- ``rasterize_gaussians``: 16x16-tile sorted front-to-back
  alpha compositing; a numba CPU kernel, a pure-PyTorch reference (``_reference``), gsplat on
  CUDA.
- :mod:`neural3d.splat.render` -- ``render(model, c2w, intr)`` -> image, alpha, depth.
- :mod:`neural3d.splat.strategy` -- adaptive density control (clone, split, prune, opacity
  reset) as an object the trainer calls, not flags inside the loop.
- :mod:`neural3d.splat.presets`, :mod:`neural3d.splat.trainer` -- ``SplatConfig`` with 3DGS's
  defaults, named presets, and the training loop; the CLI is ``mpgym splat``.

Conventions (those of :mod:`neural3d.cameras`, plus):

- Poses are camera-to-world ``c2w [4, 4]`` in OpenGL axes (the camera looks down ``-z``);
  pixel ``(i, j)`` has its centre at ``(i + 0.5, j + 0.5)``.
- Parameters are stored before activation, as in the 3DGS ``.ply``: means ``[N, 3]``,
  log-scales ``[N, 3]`` (``exp``), quaternions ``[N, 4]`` ordered ``(w, x, y, z)`` and
  unnormalised, opacity logits ``[N]`` (``sigmoid``), SH coefficients ``[N, K, 3]`` split into
  ``sh_dc [N, 1, 3]`` and ``sh_rest [N, K-1, 3]``, ``K = (max_sh_degree + 1)^2``.
- Colour from direction ``d = mean - camera centre`` is ``max(sum_k sh_k Y_k(d) + 0.5, 0)``.
- ``N`` is never cached: density control replaces the tensors in ``model.params``.
"""
