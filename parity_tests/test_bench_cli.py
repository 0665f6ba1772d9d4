"""``jaxvae bench``: every runner timed on the same members' batches, one row per batch size and ensemble size."""

import json

import pytest
import torch

from jaxvae.run import bench
from jaxvae.run.cli import main


@pytest.mark.long  # ~55 s: every runner of a benchmark row
def test_json_report(capsys, small_run, monkeypatch):  # after small_run, whose compilation of K = 1 it shares
    """Batch 32, 4 steps per dispatch (the suite's training shapes); K = 1 and K = 2 members. Every runner runs; its
    time is then taken as one second, so that each rate is the member-images it trained, by hand."""
    timed = bench.median_seconds
    monkeypatch.setattr(bench, "median_seconds", lambda runners, repeats: dict.fromkeys(timed(runners, repeats), 1.0))
    made, make = [], bench._torch_model  # each torch model with its first weight as it began
    monkeypatch.setattr(bench, "_torch_model", lambda *a: made.append((m := make(*a), m.z_mean.weight.clone())) or m)
    flags = ["--batch-sizes", "32", "--members", "1,2", "--images", "512", "--repeats", "1"]
    flags += ["--train-examples", "256", "--chunk-steps", "4"]
    assert main(["bench", *flags, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "torch" in report["environment"]["versions"] and report["environment"]["jax_device"]
    single, pair = report["results"]
    assert (single["members"], pair["members"]) == (1, 2) and single["batch_size"] == pair["batch_size"] == 32
    # 8 steps of 32 images: whole chunks as jaxvae train dispatches them, as many as fit in --images, at most an epoch
    by_hand = {  # members: (member-images per second of each runner, jaxvae's K members over each)
        1: ({"jax": 256, "torch": 256}, {"torch": 1.0}),
        2: (
            {"jax": 512, "jax_single": 256, "torch": 256, "torch_func": 512},
            {"jax_single": 2.0, "torch": 2.0, "torch_func": 1.0},
        ),
    }
    assert sum(not torch.equal(m.z_mean.weight, w) for m, w in made) == 2  # eager's; torch.func trains stacked copies
    for row in (single, pair):
        rates, ratios = by_hand[row["members"]]
        assert {k.removesuffix("_images_per_s"): v for k, v in row.items() if k.endswith("_images_per_s")} == rates
        assert {k.removeprefix("ratio_jax_over_"): v for k, v in row.items() if k.startswith("ratio_")} == ratios
        assert row["steps_per_repeat"] == 8 and row["steps_per_dispatch"] == 4 and row["jax_compile_s"] > 0
        assert row["conv_impl"] == "matmul" and row["devices"] == 1 and row["peak_rss_mb"] > 0


def test_each_runner_s_median_round(monkeypatch):
    """On a clock only the runners move, each round running them in turn: a takes 4, 1, 2 s; b 10, 40, 20 s."""
    now, costs = [0.0], iter([4, 10, 1, 40, 2, 20])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: now[0])
    tick = lambda: now.__setitem__(0, now[0] + next(costs))  # noqa: E731
    assert bench.median_seconds({"a": tick, "b": tick}, 3) == {"a": 2, "b": 20}
