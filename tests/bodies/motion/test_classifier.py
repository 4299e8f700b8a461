"""The motion classifier: learning, determinism, save/load round trip, bad input."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest
import torch

from bodies.motion import dataset
from bodies.motion.classifier import MotionClassifier, MotionClassifierConfig, train_classifier
from mpgym.errors import MpgymError

TINY = MotionClassifierConfig(channels=32, steps=150)


@functools.lru_cache(maxsize=1)
def _data():
    return dataset.windows("fit"), dataset.windows("val")


@functools.lru_cache(maxsize=1)
def _trained() -> MotionClassifier:
    fit, _ = _data()
    return train_classifier(fit, config=TINY, seed=0)


def test_learns_the_training_windows():
    fit, val = _data()
    clf = _trained()
    assert clf.accuracy(fit) > 0.9
    assert clf.accuracy(val) > 3 / len(fit.label_names)  # well above chance on unseen frames
    emb = clf.embed(fit.x[:5])
    assert emb.shape == (5, TINY.embed_dim) and emb.dtype == np.float32
    assert (emb >= 0).all()  # after the ReLU
    assert clf.predict(fit.x[:5]).dtype == np.int64


def test_deterministic_given_the_seed():
    fit, _ = _data()
    cfg = dataclasses.replace(TINY, steps=5)
    a = train_classifier(fit, config=cfg, seed=3)
    b = train_classifier(fit, config=cfg, seed=3)
    c = train_classifier(fit, config=cfg, seed=4)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.net.head[1].weight, c.net.head[1].weight)


def test_training_leaves_global_rng_and_threads_alone():
    fit, _ = _data()
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_classifier(fit, config=dataclasses.replace(TINY, steps=2), seed=0)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_gru_variant_trains():
    fit, _ = _data()
    clf = train_classifier(fit, config=dataclasses.replace(TINY, arch="gru", steps=3), seed=0)
    assert clf.embed(fit.x[:2]).shape == (2, TINY.embed_dim)


def test_save_load_round_trip(tmp_path):
    fit, _ = _data()
    clf = _trained()
    path = clf.save(tmp_path / "clf.safetensors")
    back = MotionClassifier.load(path)
    assert back.config == clf.config and back.label_names == clf.label_names
    np.testing.assert_array_equal(back.embed(fit.x[:20]), clf.embed(fit.x[:20]))
    np.testing.assert_array_equal(back.normalizer.std, clf.normalizer.std)


def _rewrite(path, out, *, config=None, drop=None, reshape=None):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        state = {k: f.get_tensor(k) for k in f.keys()}
    if config is not None:
        meta["config"] = json.dumps(config)
    if drop:
        del state[drop]
    if reshape:
        state[reshape] = state[reshape][..., :-1].contiguous()
    save_file(state, str(out), metadata=meta)
    return out


def test_load_refuses_mismatched_files(tmp_path):
    clf = _trained()
    path = clf.save(tmp_path / "clf.safetensors")
    cfg = dataclasses.asdict(clf.config)
    with pytest.raises(MpgymError, match="config keys"):
        MotionClassifier.load(_rewrite(path, tmp_path / "a.safetensors", config={**cfg, "x": 1}))
    with pytest.raises(MpgymError, match="missing or unexpected"):
        MotionClassifier.load(_rewrite(path, tmp_path / "b.safetensors", drop="net.head.1.bias"))
    with pytest.raises(MpgymError, match="net.embed.1.weight"):
        MotionClassifier.load(
            _rewrite(path, tmp_path / "c.safetensors", config={**cfg, "embed_dim": 16})
        )
    with pytest.raises(MpgymError, match="normaliser"):
        MotionClassifier.load(_rewrite(path, tmp_path / "d.safetensors", reshape="normalizer.std"))
    with pytest.raises(MpgymError, match="expected 'motion-classifier'"):
        from mpgym.checkpoint import save_checkpoint

        MotionClassifier.load(save_checkpoint(tmp_path / "e.safetensors", {}, kind="dqn"))


def test_bad_input():
    clf = _trained()
    with pytest.raises(MpgymError, match=r"\(N, W, 224\)"):
        clf.embed(np.zeros((2, 12, 5)))
    bad = np.zeros((1, 12, 224))
    bad[0, 0, 0] = np.nan
    with pytest.raises(MpgymError, match="NaN"):
        clf.predict(bad)
    with pytest.raises(MpgymError, match="unknown motion labels \\['moonwalk'\\]; accepted: "):
        clf.label_ids(["walk", "moonwalk"])
    assert clf.label_ids(["walk", "backflip"]).tolist() == [14, 0]
    fit, _ = _data()
    with pytest.raises(MpgymError, match="min_crop"):
        train_classifier(fit, config=dataclasses.replace(TINY, min_crop=13))
    with pytest.raises(MpgymError, match="odd"):
        train_classifier(fit, config=dataclasses.replace(TINY, kernel=4))
