"""benchmarks/imitation.py: a run is continued only with the settings it was trained with;
tuning runs are evaluated on their own starts."""

import dataclasses
import importlib.util
import os
from pathlib import Path

import pytest

from agents.deep.ppo import PPO_PRESETS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    """The benchmark module (its import pins thread variables; they are put back after)."""
    saved = dict(os.environ)
    spec = importlib.util.spec_from_file_location("imitation_bench",
                                                  ROOT / "benchmarks" / "imitation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.environ.clear()
    os.environ.update(saved)
    return module


def test_config_changes_name_each_differing_field(bench):
    preset = PPO_PRESETS["imitate-walk"]
    assert bench.config_changes(preset, preset) == []
    earlier = dataclasses.replace(preset, desired_kl=None, seed=1)
    assert bench.config_changes(earlier, dataclasses.replace(preset, seed=1)) == [
        "desired_kl: None -> 0.02"]
    assert len(bench.config_changes(earlier, preset)) == 2  # the seed too


def test_tuning_and_report_starts_are_disjoint(bench):
    held_out = set(range(bench.EVAL_SEED, bench.EVAL_SEED + bench.EVAL_EPISODES))
    tuning = set(range(bench.TUNE_EVAL_SEED, bench.TUNE_EVAL_SEED + bench.EVAL_EPISODES))
    assert not held_out & tuning and 0 not in bench.TRAIN_SEEDS
