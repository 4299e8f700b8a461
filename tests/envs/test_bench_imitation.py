"""benchmarks/imitation.py: a run is continued only with the settings it was trained with;
tuning runs are evaluated on their own starts."""

import dataclasses

import pytest

from agents.deep.ppo import PPO_PRESETS


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("imitation")


def test_config_changes_name_each_differing_field(bench):
    preset = PPO_PRESETS["imitate-walk"]
    assert bench.config_changes(preset, preset) == []
    earlier = dataclasses.replace(preset, desired_kl=None, seed=1)
    assert bench.config_changes(earlier, dataclasses.replace(preset, seed=1)) == [
        "desired_kl: None -> 0.02"]
    assert len(bench.config_changes(earlier, preset)) == 2  # the seed too


def test_only_report_seeds_with_the_preset_see_the_held_out_starts(bench):
    assert bench.evaluation_starts(1, {}) == bench.EVAL_SEED
    for seed, overrides in ((0, {}), (1, {"desired_kl": 0.01}), (7, {})):
        assert bench.evaluation_starts(seed, overrides) == bench.TUNE_EVAL_SEED
    held_out = set(range(bench.EVAL_SEED, bench.EVAL_SEED + bench.EVAL_EPISODES))
    tuning = set(range(bench.TUNE_EVAL_SEED, bench.TUNE_EVAL_SEED + bench.EVAL_EPISODES))
    assert not held_out & tuning
