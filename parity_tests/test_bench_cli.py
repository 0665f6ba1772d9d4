"""``jaxvae bench``: every runner timed on the same members' batches, one row per batch size and ensemble size; what
its torch runner trains is torch_ref's step."""

import json

import numpy as np
import pytest
import torch

from jaxvae.run import bench
from jaxvae.run.cli import main
from jaxvae.run.config import RunConfig
from torch_ref import VAE as TorchVAE
from torch_ref.train import train_step


@pytest.mark.long  # ~55 s: every runner of a benchmark row
def test_json_report(capsys, small_run, monkeypatch):  # after small_run, whose compilation of K = 1 it shares
    """Batch 32, 4 steps per dispatch (the suite's training shapes); K = 1 and K = 2 members. Every runner runs; its
    time is then taken as one second, so that each rate is the member-images it trained, by hand."""
    timed = bench.median_seconds
    monkeypatch.setattr(bench, "median_seconds", lambda runners, repeats: dict.fromkeys(timed(runners, repeats), 1.0))
    flags = ["--batch-sizes", "32", "--members", "1,2", "--images", "512", "--repeats", "1"]
    flags += ["--train-examples", "256", "--chunk-steps", "4", "--torch-modes", "eager,autocast"]
    assert main(["bench", *flags, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "torch" in report["environment"]["versions"] and report["environment"]["jax_device"]
    single, pair = report["results"]
    assert (single["members"], pair["members"]) == (1, 2) and single["batch_size"] == pair["batch_size"] == 32
    # 8 steps of 32 images: whole chunks as jaxvae train dispatches them, as many as fit in --images, at most an epoch
    by_hand = {  # members: (member-images per second of each runner, jaxvae's K members over each)
        1: ({"jax": 256, "torch": 256, "torch_autocast": 256}, {"torch": 1.0, "torch_autocast": 1.0}),
        2: (
            {"jax": 512, "jax_single": 256, "torch": 256, "torch_autocast": 256, "torch_func": 512},
            {"jax_single": 2.0, "torch": 2.0, "torch_autocast": 2.0, "torch_func": 1.0},
        ),
    }
    for row in (single, pair):
        rates, ratios = by_hand[row["members"]]
        assert {k.removesuffix("_images_per_s"): v for k, v in row.items() if k.endswith("_images_per_s")} == rates
        assert {k.removeprefix("ratio_jax_over_"): v for k, v in row.items() if k.startswith("ratio_")} == ratios
        assert row["steps_per_repeat"] == 8 and row["steps_per_dispatch"] == 4 and row["jax_compile_s"] > 0
        assert row["conv_impl"] == "matmul" and row["devices"] == 1 and row["peak_rss_mb"] > 0
        warmed = {k.removesuffix("_warmup_s") for k in row if k.endswith("_warmup_s")}  # torch's, timed apart
        assert warmed == rates.keys() - {"jax", "jax_single"}


def test_a_torch_compile_that_cannot_build_here_ends_in_one_line(capsys, small_run, monkeypatch):
    """inductor without a C++ compiler fails at the warm-up, its first call: one line that says what failed and the
    way out, exit 2 (an eager runner's failure is a bug, and raises)."""
    real = bench.torch_runner

    def cannot_build():
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    def runner(*args):
        return cannot_build if args[4] == "compile" else real(*args)

    monkeypatch.setattr(bench, "torch_runner", runner)
    flags = ["--batch-sizes", "32", "--images", "128", "--train-examples", "256", "--chunk-steps", "4"]
    assert main(["bench", *flags, "--torch-modes", "eager,compile"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "jaxvae bench: error: torch.compile failed here (RuntimeError: InvalidCxxCompiler: No working C++ compiler "
        "found); try --torch-compile-backend eager\n"
    )


def test_each_runner_s_median_round(monkeypatch):
    """On a clock only the runners move, each round running them in turn: a takes 4, 1, 2 s; b 10, 40, 20 s."""
    now, costs = [0.0], iter([4, 10, 1, 40, 2, 20])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: now[0])
    tick = lambda: now.__setitem__(0, now[0] + next(costs))  # noqa: E731
    assert bench.median_seconds({"a": tick, "b": tick}, 3) == {"a": 2, "b": 20}


@pytest.mark.parametrize("mode", ["eager", "autocast"])
def test_the_torch_runner_trains_as_torch_ref_does(monkeypatch, mode):
    """Three steps of the torch runner that the benchmark times are three of torch_ref's ``train_step`` (under
    bfloat16 autocast for ``autocast``) on the same noise: the same operations in the same order, so every weight
    agrees bit for bit."""
    torch.manual_seed(0)
    weights = {k: v.numpy() for k, v in TorchVAE(2).state_dict().items()}
    images = np.random.default_rng(0).random((12, 28, 28, 1), np.float32)
    batches = np.arange(12).reshape(1, 3, 4)  # (K, steps, B)
    made, make = [], bench._torch_model
    monkeypatch.setattr(bench, "_torch_model", lambda *a: made.append(make(*a)) or made[-1])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # both sides on the CPU, on a GPU machine too
    run = bench.torch_runner([weights], images, batches, RunConfig(), mode)
    torch.manual_seed(1)
    run()
    # (B, 1, 28, 28) with the runner's strides: torch picks a convolution's kernel, hence its rounding, by them
    model, data = TorchVAE(2), torch.from_numpy(images).permute(0, 3, 1, 2)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    optimizer = torch.optim.Adam(model.parameters(), lr=RunConfig().lr)
    torch.manual_seed(1)
    for rows in batches[0]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast"):
            train_step(model, optimizer, data[rows], torch.randn(4, 1, 2))
    for name, value in model.state_dict().items():
        assert torch.equal(made[0].state_dict()[name], value), name
