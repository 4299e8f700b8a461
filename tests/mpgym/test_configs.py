"""The one rule by which every package reads a dataclass config from JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from agents.common import Schedule
from mpgym.checkpoint import to_jsonable
from mpgym.configs import MAX_INT, MAX_ITEMS, check_types, config_from_dict
from mpgym.errors import MpgymError


@dataclass(frozen=True)
class Inner:
    width: int = 4
    kind_of: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    env_id: str = "CartPole-v1"
    seed: int = 0
    lr: float | None = None
    eps: Schedule = Schedule(1.0, 0.05, 100, "linear")
    net_arch: tuple[int, ...] = (64, 64)
    pair: tuple[float, float] = (0.9, 0.999)
    inner: Inner = Inner()
    out: Path = Path("runs")
    flag: bool = False
    extra: dict | None = None


def test_roundtrip_nested_tuples_paths_and_bookkeeping_keys():
    cfg = Outer(seed=3, lr=1e-3, eps=Schedule(0.5), net_arch=(32,), inner=Inner(8, "b"),
                out=Path("x/y"), flag=True, extra={"k": 1})
    data = to_jsonable(cfg)
    assert data["net_arch"] == [32]
    assert config_from_dict(Outer, {**data, "algo": "dqn", "kind": "dqn"}) == cfg
    assert config_from_dict(Outer, {}) == Outer()  # missing fields take their defaults


def test_whole_numbers_become_floats_for_float_fields():
    cfg = config_from_dict(Outer, {"lr": 1, "pair": [1, 0]})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.pair == (1.0, 0.0) and all(isinstance(v, float) for v in cfg.pair)


def test_unknown_keys_are_refused_naming_the_accepted_ones():
    with pytest.raises(MpgymError, match=r"unknown keys lerning_rate; accepted: env_id, seed"):
        config_from_dict(Outer, {"lerning_rate": 0.1})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"seed": 1.5}, "seed must be a whole number; got 1.5"),
        ({"seed": True}, "seed must be a whole number"),
        ({"seed": MAX_INT}, "seed must be a whole number"),
        ({"lr": float("nan")}, "lr must be a finite number or null"),
        ({"lr": "0.1"}, "lr must be a finite number or null"),
        ({"flag": 1}, "flag must be true or false"),
        ({"net_arch": [1] * (MAX_ITEMS + 1)}, "net_arch must be a list of at most 64"),
        ({"net_arch": [1, "2"]}, "net_arch must be a list"),
        ({"pair": [0.9]}, "pair must be a list of 2 values: a finite number, a finite number"),
        ({"inner": {"kind_of": "c"}}, r"config for Inner: kind_of must be one of 'a', 'b'"),
        ({"inner": {"width": 2, "depth": 3}}, "config for Inner has unknown keys depth"),
        ({"inner": [4]}, "inner must be an object describing a Inner"),
        ({"out": 3}, "out must be a path"),
        ({"extra": {1: 2}}, "extra must be an object or null"),
    ],
)
def test_values_that_do_not_fit_their_field_are_refused(data, message):
    with pytest.raises(MpgymError, match=message):
        config_from_dict(Outer, data)


def test_not_an_object_or_not_a_dataclass():
    with pytest.raises(MpgymError, match="must be a JSON object; got list"):
        config_from_dict(Outer, [1])
    with pytest.raises(TypeError):
        config_from_dict(dict, {})


def test_check_types_on_configs_built_in_python():
    assert check_types(Outer(lr=2)) == Outer(lr=2)
    with pytest.raises(MpgymError, match=r"Outer.seed must be a whole number; got '3'"):
        check_types(Outer(seed="3"))  # type: ignore[arg-type]
    with pytest.raises(MpgymError, match="Inner.width must be a whole number"):
        check_types(Outer(inner=Inner(width=None)))  # type: ignore[arg-type]
