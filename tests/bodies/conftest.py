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
