import pickle
import sys
import types

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def model_path():
    from bodies.synthetic import build

    return build()  # cached in ~/.cache/mpgym after the first build


@pytest.fixture(scope="session")
def arrays(model_path):
    return dict(np.load(model_path, allow_pickle=False))


@pytest.fixture(scope="session")
def model64(model_path):
    from bodies.model import BodyModel

    return BodyModel(model_path, dtype=torch.float64)


def _official_style_pickle(arrays, protocol=2):
    """Pickle laid out like the official SMPL files: chumpy arrays, a sparse J_regressor."""
    import scipy.sparse as sp

    mod = types.ModuleType("chumpy.ch")

    class Ch:
        pass

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    mod.Ch = Ch
    sys.modules["chumpy"] = types.ModuleType("chumpy")
    sys.modules["chumpy.ch"] = mod
    try:
        data = {}
        for k, v in arrays.items():
            if k in ("v_template", "shapedirs", "posedirs"):
                c = Ch()
                c.__dict__ = {"x": v, "_depends_on_deps": {}}
                data[k] = c
            elif k != "joint_names":
                data[k] = v
        data["J_regressor"] = sp.csc_matrix(arrays["J_regressor"])
        data["bs_style"] = "lbs"
        return pickle.dumps(data, protocol=protocol)
    finally:
        del sys.modules["chumpy.ch"], sys.modules["chumpy"]


@pytest.fixture(scope="session")
def official_style_pickle():
    """``make(arrays, protocol=2) -> bytes``: a pickle like the official SMPL files (chumpy
    arrays, a sparse J_regressor), made without chumpy installed."""
    return _official_style_pickle
