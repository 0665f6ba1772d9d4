"""What ``jaxvae --help`` and ``--version`` tell a user before any run, and the table ``jaxvae bench`` prints.
(Refusals: tests/test_refusals.py.)"""

import re
import subprocess
import sys
from dataclasses import fields

import pytest

import jaxvae
from jaxvae.run.bench import format_rows
from jaxvae.run.cli import main
from jaxvae.run.config import RunConfig, flag_name


def printed(capsys, monkeypatch, *args, columns: int = 10000) -> str:
    """stdout of ``jaxvae ARGS`` (which argparse ends with exit status 0) on a terminal ``columns`` wide."""
    monkeypatch.setenv("COLUMNS", str(columns))
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_version(capsys, monkeypatch):
    assert printed(capsys, monkeypatch, "--version") == f"jaxvae {jaxvae.__version__}\n"


def test_the_cli_loads_without_posix_only_modules():
    """As on Windows, where Python has no ``resource`` or ``fcntl``: it answers, and ``jaxvae bench`` reports no peak
    memory rather than failing."""
    code = "import sys; sys.modules.update(resource=None, fcntl=None); from jaxvae.run import bench, cli"
    result = subprocess.run([sys.executable, "-c", f"{code}; print(bench.peak_rss_mb()); cli.main(['--version'])"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.stdout == f"None\njaxvae {jaxvae.__version__}\n", result.stderr[-3000:]


def test_help_says_what_jaxvae_is_and_every_default(capsys, monkeypatch):
    assert jaxvae.__doc__.split("\n")[0] in printed(capsys, monkeypatch, "--help")
    text = " ".join(printed(capsys, monkeypatch, "train", "--help").split())  # each help text on one line
    for f in fields(RunConfig):
        assert f"{flag_name(f.name)} {f.name.upper()} {f.metadata['help']}" in text, f.name
    assert text.count("(default: ") >= len(fields(RunConfig)) + 2  # and --out's, --member-group's, ...
    assert "the run's total) (default: 20)" in text and "test images (default: all)" in text  # --epochs, a shown one
    assert "changes the order of float32 sums, so a resumed run keeps it" in text  # --micro-batch: not bit-neutral


@pytest.mark.parametrize("command", ["train", "bench"])
def test_help_never_breaks_a_word_at_its_hyphen(capsys, monkeypatch, command):
    """On an 80-column terminal a flag's name in a help text (``--iw-train-samples``) stays whole."""
    text = printed(capsys, monkeypatch, command, "--help", columns=80)
    assert "--iw-train-samples draws" in " ".join(text.split()) and not re.search(r"\w-\n", text)


def test_the_bench_table_shows_the_runners_its_rows_timed():
    """A column for each runner some row timed (here no autocast, compile or torch.func), then jaxvae's ratio over
    each other one; '-' where a row lacks it; rates to the integer, ratios to 2 places, compile seconds to 1."""
    env = {"jax_device": "cpu:0", "machine": "x86_64", "versions": {"jax": "0.10.2"}}
    shared = dict(batch_size=32, member_group=1, devices=1, objective="elbo", iw_train_samples=1, jax_compile_s=9.06)
    one = dict(members=1, jax_images_per_s=900.4, torch_images_per_s=600.0, ratio_jax_over_torch=1.5007)
    two = dict(members=2, jax_images_per_s=1000.0, jax_single_images_per_s=800.0, torch_images_per_s=500.0)
    two |= dict(ratio_jax_over_jax_single=1.25, ratio_jax_over_torch=2.0)
    *_, header, first, second = format_rows(env, [shared | one, shared | two]).splitlines()
    assert header.split() == "batch K group devices jaxvae single torch /single /torch compile s".split()
    assert first.split() == "32 1 1 1 900 - 600 - 1.50 9.1".split()
    assert second.split() == "32 2 1 1 1000 800 500 1.25 2.00 9.1".split()
