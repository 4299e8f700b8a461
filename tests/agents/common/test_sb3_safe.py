"""SB3 zips are read without unpickling: same actions as SB3, hostile files refused."""

import base64
import io
import json
import pickle
import struct
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch

from mpgym.cli import main
from mpgym.errors import MpgymError
from mpgym.fuzz import fuzz_cases, fuzz_loader

sb3 = pytest.importorskip("stable_baselines3")
from agents.common.sb3 import MAX_POLICY_BYTES, SB3Policy, load_sb3  # noqa: E402


class _CreatesFile:
    """A pickle payload: unpickling it opens (creates) ``marker`` for writing."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _members(raw: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _saved(model) -> bytes:
    buf = io.BytesIO()
    model.save(buf)
    return buf.getvalue()


def _observations(env_id: str, n: int = 200) -> np.ndarray:
    """Observations from random rollouts plus uniform samples of the space."""
    env = gym.make(env_id)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    seen = []
    while len(seen) < n // 2:
        seen.append(obs)
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
    low = np.maximum(env.observation_space.low, -3.0)
    high = np.minimum(env.observation_space.high, 3.0)
    rng = np.random.default_rng(0)
    seen += list(rng.uniform(low, high, size=(n - len(seen), *low.shape)))
    return np.asarray(seen, dtype=np.float32)


@pytest.fixture(scope="module")
def trained():
    """DQN and PPO on CartPole, trained a few hundred steps (so the weights are not the init)."""
    torch.set_num_threads(1)
    dqn = sb3.DQN("MlpPolicy", "CartPole-v1", seed=0, device="cpu", buffer_size=1000,
                  learning_starts=100, train_freq=4, target_update_interval=50,
                  policy_kwargs=dict(net_arch=[32, 32]))
    dqn.learn(400)
    ppo = sb3.PPO("MlpPolicy", "CartPole-v1", seed=0, device="cpu", n_steps=128, batch_size=64,
                  n_epochs=2)
    ppo.learn(256)
    return {"dqn": dqn, "ppo": ppo}


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_safe_load_acts_like_sb3s_own_predict(algo, trained, tmp_path):
    model = trained[algo]
    path = tmp_path / f"{algo}.zip"
    model.save(path)
    policy = load_sb3(path, algo, "CartPole-v1")
    assert isinstance(policy, SB3Policy)
    obs = _observations("CartPole-v1")
    expected, _ = model.predict(obs, deterministic=True)
    got, _ = policy.predict(obs, deterministic=True)
    assert got.tolist() == expected.tolist()
    x = torch.as_tensor(obs)
    with torch.no_grad():  # the networks themselves agree, not only their argmax
        if algo == "dqn":
            torch.testing.assert_close(policy.policy.q_net(x), model.q_net(x), rtol=0, atol=0)
        else:
            torch.testing.assert_close(policy.policy.get_distribution(x).distribution.probs,
                                       model.policy.get_distribution(x).distribution.probs,
                                       rtol=0, atol=0)
    for o in obs[:20]:  # one observation at a time, as evaluate_policy calls it
        assert policy.predict(o, deterministic=True)[0] == model.predict(o, deterministic=True)[0]


@pytest.mark.parametrize("algo, kwargs", [
    # A2C pickles policy_kwargs (its optimizer class): net_arch and activation come from the
    # JSON hints SB3 writes beside the pickle.
    ("a2c", dict(policy_kwargs=dict(net_arch=dict(pi=[32], vf=[16]),
                                    activation_fn=torch.nn.ReLU))),
    ("ppo", dict(use_sde=True)),
    ("sac", dict(buffer_size=100, policy_kwargs=dict(net_arch=[32, 16], n_critics=3))),
    ("td3", dict(buffer_size=100)),
    ("ddpg", dict(buffer_size=100)),
])
def test_safe_load_rebuilds_each_algorithms_policy(algo, kwargs, tmp_path):
    torch.set_num_threads(1)
    model = getattr(sb3, algo.upper())("MlpPolicy", "Pendulum-v1", seed=1, device="cpu", **kwargs)
    model.save(tmp_path / "m.zip")
    policy = load_sb3(tmp_path / "m.zip", algo, "Pendulum-v1")
    obs = _observations("Pendulum-v1", 64)
    expected, _ = model.predict(obs, deterministic=True)
    got, _ = policy.predict(obs, deterministic=True)
    np.testing.assert_array_equal(got, expected)
    if algo == "a2c":  # the activation is ReLU, not A2C's default Tanh
        assert isinstance(policy.policy.mlp_extractor.policy_net[1], torch.nn.ReLU)


def test_hidden_pickle_in_a_zip_never_runs(trained, tmp_path, capsys, caplog):
    """A zip whose pickled entries create a file: by default nothing runs, and it evaluates."""
    marker = tmp_path / "PWNED"
    members = _members(_saved(trained["dqn"]))
    data = json.loads(members["data"])
    payload = base64.b64encode(pickle.dumps(_CreatesFile(str(marker)))).decode()
    for key in ("policy_class", "observation_space", "action_space", "lr_schedule"):
        data[key][":serialized:"] = payload
    data["policy_kwargs"] = {":type:": "<class 'dict'>", ":serialized:": payload,
                             "net_arch": [32, 32]}
    members["data"] = json.dumps(data).encode()
    evil = tmp_path / "model.zip"
    evil.write_bytes(_zip(members))

    assert main(["eval", str(evil), "--sb3-algo", "dqn", "--env", "CartPole-v1",
                 "--episodes", "2"]) == 0
    assert not marker.exists()
    assert "sb3 dqn on CartPole-v1: return" in capsys.readouterr().out
    policy = load_sb3(evil, "dqn", "CartPole-v1")
    obs = _observations("CartPole-v1", 50)
    assert policy.predict(obs, deterministic=True)[0].tolist() == \
        trained["dqn"].predict(obs, deterministic=True)[0].tolist()
    assert not marker.exists()

    # Only the explicit flag hands the file to SB3's unpickling loader, with a warning.
    caplog.clear()
    code = main(["eval", str(evil), "--sb3-algo", "dqn", "--env", "CartPole-v1",
                 "--episodes", "1", "--trust-pickle"])
    assert marker.exists()  # the flag does what it says: SB3 unpickled the payload
    assert "runs any code" in caplog.text
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err  # SB3 then fails on the junk: one line


def test_trust_pickle_loads_a_genuine_zip_with_sb3(trained, tmp_path):
    trained["ppo"].save(tmp_path / "ppo.zip")
    model = load_sb3(tmp_path / "ppo.zip", "ppo", "CartPole-v1", trust_pickle=True)
    assert type(model).__name__ == "PPO"
    with pytest.raises(MpgymError, match="not a ppo model for Acrobot-v1's spaces"):
        load_sb3(tmp_path / "ppo.zip", "ppo", "Acrobot-v1", trust_pickle=True)


def test_cli_refuses_wrong_algorithm_truncated_zip_and_other_spaces(trained, tmp_path, capsys):
    path = tmp_path / "ppo.zip"
    trained["ppo"].save(path)
    raw = path.read_bytes()
    (tmp_path / "cut.zip").write_bytes(raw[: len(raw) // 2])
    cases = [
        (["eval", str(path), "--sb3-algo", "dqn", "--env", "CartPole-v1"],
         "this zip is not a dqn model for CartPole-v1's spaces: its policy comes from "
         "stable_baselines3.common.policies (a2c/ppo), not dqn."),
        (["eval", str(tmp_path / "cut.zip"), "--sb3-algo", "ppo", "--env", "CartPole-v1"],
         "is not a stable-baselines3 model"),
        (["eval", str(path), "--sb3-algo", "ppo", "--env", "Acrobot-v1"],
         "this zip is not a ppo model for Acrobot-v1's spaces: it was saved for an observation "
         "space with type=Box, shape=[4]"),
        (["eval", str(path), "--sb3-algo", "ppo", "--env", "Pendulum-v1"],
         "this zip is not a ppo model for Pendulum-v1's spaces"),
        (["eval", str(tmp_path / "none.zip"), "--sb3-algo", "ppo", "--env", "CartPole-v1"],
         "no SB3 model at"),
        (["eval", str(path), "--sb3-algo", "ppo", "--env", "NoSuchEnv-v0"],
         "unknown environment id 'NoSuchEnv-v0'"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err


def test_weights_of_another_shape_are_refused_strictly(trained, tmp_path):
    members = _members(_saved(trained["dqn"]))
    state = torch.load(io.BytesIO(members["policy.pth"]), weights_only=True)
    state["q_net.q_net.4.bias"] = torch.zeros(3)  # a 3-action head for a 2-action env
    buf = io.BytesIO()
    torch.save(state, buf)
    members["policy.pth"] = buf.getvalue()
    (tmp_path / "m.zip").write_bytes(_zip(members))
    with pytest.raises(MpgymError, match="not a dqn model for CartPole-v1's spaces: .*size mism"):
        load_sb3(tmp_path / "m.zip", "dqn", "CartPole-v1")


def _set_declared_size(raw: bytes, name: str, size: int) -> bytes:
    """Patch the central directory's uncompressed size of member ``name``."""
    buf = bytearray(raw)
    pos = buf.find(b"PK\x01\x02")
    while pos != -1:
        name_len = struct.unpack_from("<H", buf, pos + 28)[0]
        if bytes(buf[pos + 46: pos + 46 + name_len]) == name.encode():
            struct.pack_into("<I", buf, pos + 24, size)
            return bytes(buf)
        pos = buf.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(f"{name} not found")


def test_zip_bombs_and_foreign_files_are_refused_before_reading(trained, tmp_path):
    members = _members(_saved(trained["dqn"]))
    stored = _zip(members)
    huge = _set_declared_size(stored, "policy.pth", MAX_POLICY_BYTES + 1)
    (tmp_path / "huge.zip").write_bytes(huge)
    with pytest.raises(MpgymError, match="'policy.pth' declares .* over the"):
        load_sb3(tmp_path / "huge.zip", "dqn", "CartPole-v1")
    deflated = _zip(members, zipfile.ZIP_DEFLATED)
    bomb = _set_declared_size(deflated, "data", 60 * 2**20)  # 60 MiB from a few KiB
    (tmp_path / "bomb.zip").write_bytes(bomb)
    with pytest.raises(MpgymError, match="zip bomb"):
        load_sb3(tmp_path / "bomb.zip", "dqn", "CartPole-v1")
    (tmp_path / "nodata.zip").write_bytes(_zip({"policy.pth": members["policy.pth"]}))
    with pytest.raises(MpgymError, match="no 'data' inside"):
        load_sb3(tmp_path / "nodata.zip", "dqn", "CartPole-v1")
    pickled = dict(members, **{"policy.pth": pickle.dumps({"w": np.zeros(3)})})
    (tmp_path / "pickled.zip").write_bytes(_zip(pickled))
    with pytest.raises(MpgymError, match="policy.pth is not a readable PyTorch state dict"):
        load_sb3(tmp_path / "pickled.zip", "dqn", "CartPole-v1")
    with pytest.raises(MpgymError, match="accepted: a2c, ddpg, dqn, ppo, sac, td3"):
        load_sb3(tmp_path / "huge.zip", "her", "CartPole-v1")


@pytest.fixture(scope="module")
def small_dqn_zip() -> bytes:
    torch.set_num_threads(1)
    model = sb3.DQN("MlpPolicy", "CartPole-v1", seed=0, device="cpu", buffer_size=100,
                    policy_kwargs=dict(net_arch=[16]))
    return _saved(model)


def test_fuzz_the_sb3_zip_loader(small_dqn_zip):
    """Mutated archives (headers, sizes, truncation): MpgymError or a load, nothing else."""
    report = fuzz_loader("agents.common.sb3:_fuzz_entry", {"model.zip": small_dqn_zip},
                         cases=fuzz_cases(300))
    report.assert_ok()
    assert report.refused > 0


def test_fuzz_the_sb3_zip_members(small_dqn_zip):
    """Mutated ``data`` JSON and ``policy.pth`` (re-zipped with valid CRCs, so parsing is hit)."""
    members = _members(small_dqn_zip)
    report = fuzz_loader("agents.common.sb3:_fuzz_members",
                         {"data": members["data"], "policy.pth": members["policy.pth"]},
                         entry=".", cases=fuzz_cases(300))
    report.assert_ok()
    assert report.refused > 0 and report.ok > 0
