"""Geometry and multi-view data: meshes, sampling, ground truth, datasets."""
