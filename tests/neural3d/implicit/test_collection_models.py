"""Conditional OccNet and DeepSDF on a small pybullet collection (fixed budgets, held out)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from mpgym import MpgymError, RunDir
from neural3d.data.collections import CollectionConfig, ShapeCollection, prepare_collection
from neural3d.implicit import collection as C
from neural3d.implicit.networks import CBatchNormDecoder, ResnetPointNetEncoder


@pytest.fixture(scope="module")
def coll(tmp_path_factory):
    small = CollectionConfig(n_surface=2000, n_sdf=4000, n_occupancy=4000)
    return prepare_collection(
        "pybullet", small, limit=20, progress_bar=False, cache_dir=tmp_path_factory.mktemp("shapes")
    )


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("batch", [1, 3])
def test_resnet_pointnet_shapes_and_permutation_invariance(batch):
    torch.manual_seed(0)
    enc = ResnetPointNetEncoder(c_dim=16, hidden=8)
    assert len(enc.blocks) == 5  # OccNet's ResnetPointnet: block_0 .. block_4
    pts = torch.randn(batch, 50, 3)
    code = enc(pts)
    assert code.shape == (batch, 16)
    perm = torch.randperm(50)
    torch.testing.assert_close(enc(pts[:, perm]), code)


def test_cbn_decoder_shapes_and_independent_shapes_in_eval():
    torch.manual_seed(0)
    dec = CBatchNormDecoder(c_dim=8, hidden=16, blocks=2)
    x, c = torch.rand(3, 40, 3), torch.randn(3, 8)
    assert dec(x, c).shape == (3, 40)
    dec.eval()
    torch.testing.assert_close(dec(x, c)[1:2], dec(x[1:2], c[1:2]))


def test_pure_function_examples():
    iou = C.occupancy_iou(torch.tensor([[3.0, 3.0, -3.0]]), torch.tensor([[True, False, False]]))
    torch.testing.assert_close(iou, torch.tensor([0.5]))
    # sigmoid(-1) = 0.27 >= 0.2: inside at OccNet's threshold, outside at 0.5
    assert C.occupancy_iou(torch.tensor([[-1.0]]), torch.tensor([[True]]), 0.2).item() == 1.0
    assert C.occupancy_iou(torch.tensor([[-1.0]]), torch.tensor([[True]]), 0.5).item() == 0.0
    cd = C.deepsdf_chamfer(np.zeros((1, 3)), np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]))
    assert cd == pytest.approx(6.0)  # (1 + 9) / 2 + 1: sum of the two means of squares


def test_visible_surface_sees_the_near_half_of_a_sphere():
    rng = np.random.default_rng(0)
    n = rng.normal(size=(4000, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    seen = C.visible_surface(0.4 * n, n, np.array([0.0, -1.0, 0.0]))
    assert (n[seen, 1] > 0).all()  # looking along -y, the camera sees the +y side
    assert 0.35 < seen.mean() <= 0.5


def test_occnet_trains_and_beats_a_constant_on_heldout_shapes(coll, tmp_path):
    cfg = replace(C.OCCNET_PRESETS["tiny"], iterations=200)
    res = C.train_occnet_collection(coll, cfg, run=RunDir(tmp_path / "run"), progress_bar=False)
    assert len(res.names) == 16
    assert np.mean(res.losses[-20:]) < 0.7 * np.mean(res.losses[:5])
    held = C.eval_occnet_heldout(res.model, coll, cfg, split="test")
    bank = C.load_bank(coll, "test", fields=("occupancy",))
    constant = bank.occupancy.float().mean(-1)  # IoU of "all inside", the best constant
    assert set(held.ious) == set(bank.names)
    assert held.mean > float(constant.mean()) + 0.1
    model, cfg2, meta = C.load_occnet_collection(tmp_path / "run")
    assert cfg2 == cfg and meta["shapes"] == 16
    again = C.eval_occnet_heldout(model, coll, cfg2, split="test")
    assert again.ious == pytest.approx(held.ious)


def test_deepsdf_latent_optimisation_recovers_a_training_code(coll, tmp_path):
    cfg = C.DEEPSDF_PRESETS["tiny"]
    res = C.train_deepsdf_collection(
        coll, cfg, run=RunDir(tmp_path / "run"), limit=8, progress_bar=False
    )
    assert np.mean(res.losses[-20:]) < np.mean(res.losses[:5])
    bank = C.load_bank(coll, "train", fields=("sdf",), limit=8)
    x, s = bank.sdf_points[:1], bank.sdf[:1]
    gen = torch.Generator().manual_seed(1)
    z = C.infer_codes(res.decoder, x, s, cfg, gen=gen)
    rand = (
        torch.randn(1, cfg.latent_dim, generator=gen)
        * res.codes.norm(dim=1).mean()
        / cfg.latent_dim**0.5
    )

    def err(code):
        with torch.no_grad():
            return C.clamped_l1(res.decoder(x, code), s, cfg.clamp).item()

    assert err(z) < 0.8 * err(rand)
    assert (z - res.codes[:1]).norm() < (rand - res.codes[:1]).norm()
    decoder, codes, cfg2, meta = C.load_deepsdf_collection(tmp_path / "run")
    torch.testing.assert_close(codes, res.codes)
    assert cfg2 == cfg and len(meta["names"]) == 8
    rec = C.reconstruct_heldout(decoder, coll, cfg, split="val", view="partial", limit=1)
    assert len(rec.chamfer) == 1 and rec.codes.shape == (1, cfg.latent_dim)


def test_bad_input_is_one_clear_error(coll):
    cfg = C.DEEPSDF_PRESETS["tiny"]
    decoder = C.build_sdf_decoder(cfg)
    with pytest.raises(MpgymError, match=r"accepted: \[8\]"):
        C.mesh_of_code(decoder, torch.zeros(5))
    with pytest.raises(MpgymError, match="do not fit"):
        C.infer_codes(
            decoder, torch.zeros(1, 10, 3), torch.zeros(1, 10), cfg, init=torch.zeros(1, 9)
        )
    with pytest.raises(MpgymError, match="points"):
        C.infer_codes(decoder, torch.zeros(10, 3), torch.zeros(10), cfg)
    only_train = ShapeCollection(coll.source, coll.root, coll.config, tuple(coll.split("train")))
    with pytest.raises(MpgymError, match="test split .* holds no shapes"):
        C.eval_occnet_heldout(C.ConditionalOccNet(C.OCCNET_PRESETS["tiny"]), only_train)
    with pytest.raises(MpgymError, match="limit"):
        C.load_bank(coll, "train", limit=0)
    with pytest.raises(MpgymError, match="view"):
        C.reconstruct_heldout(decoder, coll, cfg, view="side")  # type: ignore[arg-type]
    with pytest.raises(MpgymError, match="batch-shapes"):
        C.train_occnet_collection(coll, replace(C.OCCNET_PRESETS["tiny"], batch_shapes=0))
