"""neural3d: shapes and scenes as functions, learned by networks, turned into meshes and images.

Implicit shapes:

- :mod:`neural3d.shapes` -- analytic SDFs (sphere, box, torus, capsule, cylinder,
  superquadric) and CSG, ``SHAPES`` library inside ``[-0.5, 0.5]^3``; negative inside.
- :mod:`neural3d.data` -- ``meshes`` (load/normalise/watertight/repair), ``sampling``
  (uniform + near-surface, surface points with normals), ``ground_truth`` (Open3D SDF and
  occupancy, trimesh fallback).
- :mod:`neural3d.implicit` -- IGR (``igr.fit_igr``), Occupancy Networks
  (``occnet.train_occnet``), DeepSDF (``deepsdf.train_deepsdf``, ``deepsdf.infer_code``).
- :mod:`neural3d.mesh` -- ``extract_mesh(fn, bounds, resolution, level, hierarchical=True)``.
- :mod:`neural3d.metrics` -- Chamfer-L1/L2, normal consistency, F-score, volumetric IoU.
- :mod:`neural3d.render.dvr` -- Differentiable Volumetric Rendering.

Radiance fields: :mod:`neural3d.encodings`, :mod:`neural3d.cameras`,
:mod:`neural3d.nerf`, :mod:`neural3d.data.multiview`.

Submodules are imported on demand (``import neural3d`` stays cheap).
"""
