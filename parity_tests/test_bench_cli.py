"""``jaxvae bench``: every runner timed on the same members' batches, one row per batch size and ensemble size."""

import json

import pytest

from jaxvae.run.cli import main


@pytest.mark.long  # ~55 s: every runner of a benchmark row
def test_json_report(capsys, small_run):  # after small_run, whose compilation of K = 1 it shares
    """Batch 32, 4 steps per dispatch (the suite's training shapes); K = 1 and K = 2 members."""
    flags = ["--batch-sizes", "32", "--members", "1,2", "--images", "128", "--repeats", "1"]
    flags += ["--train-examples", "256", "--chunk-steps", "4"]
    assert main(["bench", *flags, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "torch" in report["environment"]["versions"] and report["environment"]["jax_device"]
    single, pair = report["results"]
    assert (single["members"], pair["members"]) == (1, 2) and single["batch_size"] == pair["batch_size"] == 32
    for row, runners in ((single, {"jax", "torch"}), (pair, {"jax", "jax_single", "torch", "torch_func"})):
        assert {k.removesuffix("_images_per_s") for k in row if k.endswith("_images_per_s")} == runners
        assert {k.removeprefix("ratio_jax_over_") for k in row if k.startswith("ratio_")} == runners - {"jax"}
        assert all(row[f"{name}_images_per_s"] > 0 for name in runners) and row["jax_compile_s"] > 0
        # whole chunks as jaxvae train dispatches them, as many as fit in --images
        assert row["steps_per_repeat"] == 4 and row["steps_per_dispatch"] == 4
        assert row["conv_impl"] == "matmul" and row["devices"] == 1 and row["peak_rss_mb"] > 0
