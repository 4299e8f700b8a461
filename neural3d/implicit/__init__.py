"""Implicit shapes learned by networks: IGR (SDF from points), Occupancy Networks, DeepSDF.

One file per method (``igr.py``, ``occnet.py``, ``deepsdf.py``), shared networks in
``networks.py``, loss terms as pure functions in ``losses.py``, multi-shape samples in
``data.py``, the optimisation loop and the field of one shape's code in ``training.py``.
Modules are imported on demand, so ``import neural3d.implicit`` stays cheap.
"""
