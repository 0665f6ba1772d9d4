"""``jaxvae bench``: both frameworks timed on the same batches, the ratio their quotient; one-line errors."""

import json
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "jaxvae.cli", "bench", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def test_json_report():
    result = run("--batch-sizes", "32,256", "--images", "256", "--repeats", "2", "--chunk-steps", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "torch" in report["environment"]["versions"] and report["environment"]["jax_device"]
    assert [r["batch_size"] for r in report["results"]] == [32, 256]
    for r in report["results"]:
        assert r["jax_images_per_s"] > 0 and r["torch_images_per_s"] > 0 and r["jax_compile_s"] > 0
        assert r["ratio_jax_over_torch"] == pytest.approx(r["jax_images_per_s"] / r["torch_images_per_s"], rel=1e-12)
        # whole chunks as jaxvae train dispatches them: as many as fit in --images, at least one
        steps, chunk = r["steps_per_repeat"], r["steps_per_dispatch"]
        assert steps % chunk == 0 and (steps == chunk or steps * r["batch_size"] <= 256)
        assert r["conv_impl"] in ("xla", "matmul") and r["peak_rss_mb"] > 0


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch-sizes", "8,x"], "--batch-sizes must be comma-separated integers"),
        (["--batch-sizes", "0"], "must be positive"),
        (["--repeats", "0"], "must be positive"),
        (["--batch-sizes", "5000"], "larger than the training split"),
        (["--conv-impl", "cudnn"], "--conv-impl must be one of"),
        (["--micro-batch", "-2"], "--micro-batch must be >= 0"),
    ],
)
def test_bad_flags_are_one_line(flags, message):
    result = run(*flags)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
