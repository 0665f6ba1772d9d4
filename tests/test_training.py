"""``jaxvae train`` end to end on a small slice of the embedded data: what a run and an ensemble write, its
documented keys, that a member is its single run and a resumed run the one never stopped (bit for bit), the loop's
traffic with the host, non-finite losses, and the commands on a finished run. Refusals are in tests/test_refusals.py."""

import dataclasses
import fcntl
import json
import shutil
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ENSEMBLE_LISTS, SMALL_RUN, records, train_small
from jaxvae import open_run
from jaxvae.devices import first_local_device
from jaxvae.diagnostics import mutual_information
from jaxvae.errors import UserError
from jaxvae.inference import encode_posterior
from jaxvae.model import VAE
from jaxvae.run import checkpoint, training
from jaxvae.run import files as run_files
from jaxvae.run.cli import main
from jaxvae.run.config import RunConfig, chunk_length
from jaxvae.run.engine import Trainer
from jaxvae.run.members import member_grid, member_name
from jaxvae.run.report import interpolation_pairs, summarize_settings
from jaxvae.run.training import NonFiniteLoss, train, train_ensemble, unfinished_run
from jaxvae.train_step import abstract_state, init_state, make_loss_fn, make_optimizer

PNG = b"\x89PNG\r\n\x1a\n"
PICTURES = "training_loss reconstructions latent_interpolations latent_space prior_samples latent_usage".split()
NAMES = [f"seed{s}_lr{lr}_rw{w}" for s in (123, 7) for lr in ("0.0005", "0.001") for w in ("1", "0.5")]
SMALL = dict(batch_size=32, train_examples=256, test_examples=100, chunk_steps=4)  # SMALL_RUN as a RunConfig


def test_the_run_folder(small_run, mnist5k):
    summary = json.loads((small_run / "summary.json").read_text())
    assert summary["epochs_completed"] == 2 and summary["steps"] == 16
    assert summary["data"] == {"source": summary["data"]["source"], "train_images": 256, "test_images": 100}
    assert summary["traces"] == {"train_chunk": 1, "evaluate": 1}  # compiled once for the whole run
    span = (small_run / "summary.json").stat().st_mtime - (small_run / "config.json").stat().st_mtime
    timed = [summary[k] for k in ("compile_seconds", "train_seconds", "eval_seconds")]  # parts of the run's span
    assert min(timed) > 0 and sum(timed) < span  # config.json is written before compiling, summary.json last
    assert summary["images_per_second"] == pytest.approx(16 * 32 / summary["train_seconds"])  # 16 steps of 32
    assert {"jax", "flax", "optax"} <= summary["versions"].keys() and summary["devices"]["count"] == 1
    steps = records(small_run)
    assert [r["step"] for r in steps] == list(range(1, 17)) and [r["epoch"] for r in steps] == [1] * 8 + [2] * 8
    assert set(steps[0]) == {"step", "epoch", "loss", "reconstruction", "kl"}
    tests = records(small_run, "test")
    last = {k: tests[-1][k] for k in ("loss", "reconstruction", "kl")}
    assert [r["epoch"] for r in tests] == [1, 2] and summary["final_test"] == last
    epoch_2 = {k: np.mean([r[k] for r in steps[8:]]) for k in ("loss", "reconstruction", "kl")}  # its steps' means
    assert summary["final_train"] == pytest.approx(epoch_2, rel=1e-12)
    latent = summary["latent"]  # of the test split; by hand in tests/test_diagnostics.py
    assert len(latent["kl_per_dim"]) == len(latent["activity_per_dim"]) == 2 and 0 <= latent["active_units"] <= 2
    run = open_run(small_run)  # the same program on the same parameters and images: the same posteriors, bit for bit
    posteriors = encode_posterior(run.model, run.params, mnist5k.test.images[:100])
    assert latent["mutual_information_nats"] == mutual_information(*posteriors, seed=123)  # the run's seed draws z
    for name in PICTURES:
        png = small_run / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    assert (small_run / "plots" / "latent_manifold.png").is_file()
    assert checkpoint.latest_epoch(small_run / "checkpoints") == 2


def test_the_steps_and_the_last_evaluation_follow_the_documented_keys(small_run, mnist5k):
    """``jaxvae.run.engine``'s key schedule, by hand: keys ``split(PRNGKey(seed), 4)`` (init, data, train, eval),
    epoch e's batches ``permutation(fold_in(data_key, e))`` of the training images, step s's noise ``normal(fold_in(
    train_key, s - 1))``, the test split's after epoch 2 ``normal(fold_in(eval_key, 2))``. Checked at step 1 (from the
    initialisation), step 9 (the first of epoch 2, from epoch 1's checkpoint) and that evaluation: the run's float32
    losses are the float64 losses within 1e-5 relative: float32's rounding is ~1e-7 (5e-8 measured), and another
    batch or other noise moves them by 6e-4 to 3e-2 (measured: step 1 at seeds 0-3, step 9 on epoch 1's shuffle, the
    evaluation with the noise of epochs 0, 1 and 3)."""
    init_key, data_key, train_key, eval_key = jax.random.split(jax.random.PRNGKey(123), 4)
    model, optimizer = VAE(2), make_optimizer(5e-4)
    with checkpoint.Checkpoints(small_run / "checkpoints") as saved:
        like = abstract_state(model, optimizer, first_local_device())
        after_epoch_1 = saved.restore(1, like).params
    cases = []  # (params, images, noise, the run's loss)
    for epoch, params, step in ((1, init_state(model, optimizer, init_key).params, 1), (2, after_epoch_1, 9)):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, epoch), 256))
        batch = mnist5k.train.images[:256][order[:32]]  # (32, 28, 28, 1): the epoch's first
        eps = jax.random.normal(jax.random.fold_in(train_key, step - 1), (32, 1, 2))
        cases.append((params, batch, eps, records(small_run)[step - 1]["loss"]))
    test_eps = jax.random.normal(jax.random.fold_in(eval_key, 2), (100, 1, 2))
    cases.append(
        (open_run(small_run).params, mnist5k.test.images[:100], test_eps, records(small_run, "test")[-1]["loss"])
    )
    loss_fn = jax.jit(make_loss_fn(model, 1.0))  # jitted: op by op, each op compiles alone
    with jax.enable_x64(True):
        for params, images, noise, logged in cases:
            arrays = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), (params, images, noise))
            assert logged == pytest.approx(float(loss_fn(*arrays)[0]), rel=1e-5, abs=0)


@pytest.fixture(scope="session")
def seed7_run(tmp_path_factory):
    """The single run of member seed7_lr0.001_rw0.5, whose every per-member value differs from small_run's."""
    out = tmp_path_factory.mktemp("single") / "seed7"
    return train_small(out, "--seed", "7", "--lr", "1e-3", "--reconstruction-weight", "0.5")


def test_each_member_is_its_single_run(ensemble_run, small_run, seed7_run):
    """The ensemble's members run one at a time: each member's records are its own single run's, byte for byte (the
    same operations on the same values), and so are its last checkpoint's parameters and the latent diagnostics of its
    report (each sliced from the members' state)."""
    assert sorted(p.name for p in (ensemble_run / "members").iterdir()) == sorted(NAMES)
    for name, single in (("seed123_lr0.0005_rw1", small_run), ("seed7_lr0.001_rw0.5", seed7_run)):
        member = ensemble_run / "members" / name
        assert (member / "metrics.jsonl").read_bytes() == (single / "metrics.jsonl").read_bytes(), name
        assert (member / "config.json").read_text() == (single / "config.json").read_text()
        ours, theirs = (json.loads((f / "summary.json").read_text()) for f in (member, single))
        assert (ours["final_test"], ours["latent"]) == (theirs["final_test"], theirs["latent"])
        ours, theirs = (open_run(str(f)).params for f in (member, single))  # the API takes a str or a Path
        assert all(np.array_equal(a, b) for a, b in zip(*map(jax.tree_util.tree_leaves, (ours, theirs)))), name


def test_the_ensemble_folder(ensemble_run):
    assert json.loads((ensemble_run / "ensemble.json").read_text()) == {
        "members": NAMES,
        "lists": {"seed": [123, 7], "lr": [0.0005, 0.001], "reconstruction_weight": [1.0, 0.5]},
        "member_group": 1,
    }
    summary = json.loads((ensemble_run / "summary.json").read_text())
    assert [m["name"] for m in summary["members"]] == NAMES and summary["steps"] == 16
    assert summary["member_images_per_second"] == pytest.approx(8 * 16 * 32 / summary["train_seconds"])
    assert summary["traces"] == {"train_chunk": 1, "evaluate": 1}
    assert "seed" not in summary["config"] and summary["config"]["batch_size"] == 32
    finals = {}
    for member in summary["members"]:
        own = json.loads((ensemble_run / member["folder"] / "summary.json").read_text())
        assert member["final_test"] == own["final_test"] and member["final_train"] == own["final_train"]
        assert own["steps"] == 16 and own["config"]["seed"] == member["seed"]
        finals[member["name"]] = own["final_test"]
    assert [(s["lr"], s["reconstruction_weight"], s["seeds"]) for s in summary["settings"]] == [
        (lr, w, [123, 7]) for lr in (0.0005, 0.001) for w in (1.0, 0.5)
    ]
    setting = summary["settings"][3]  # lr 1e-3, weight 0.5
    values = [finals[f"seed{s}_lr0.001_rw0.5"]["kl"] for s in (123, 7)]
    assert setting["final_test"]["kl"] == {"mean": np.mean(values), "sd": np.std(values, ddof=1), "n": 2}
    assert summary["plots"] == ["plots/losses.png", "plots/latent_usage.png", "plots/rate_distortion.png"]
    assert setting["latent"]["active_units"]["n"] == 2
    for plot in summary["plots"]:
        assert (ensemble_run / plot).read_bytes()[:8] == PNG and (ensemble_run / plot).stat().st_size > 5000


def test_a_run_resumed_with_other_chunks_is_the_run_never_stopped(small_run, tmp_path):
    """How steps are chunked changes no bit, so it is not a run's identity: resumed with other --chunk-steps, a run is
    the one never stopped. (An ensemble resumed with another --member-group: tests/test_devices.py.)"""
    out = tmp_path / "rechunked"
    assert main(["train", "--out", str(out), "--epochs", "1", *SMALL_RUN]) == 0
    assert main(["train", "--out", str(out), "--epochs", "2", "--resume", *SMALL_RUN[:-1], "8"]) == 0
    assert (out / "metrics.jsonl").read_bytes() == (small_run / "metrics.jsonl").read_bytes()


def test_members_a_stop_left_an_epoch_apart_resume_from_the_last_epoch_they_all_have(ensemble_run, tmp_path, capsys):
    """The members' checkpoints of an epoch are written one after another: a stop between them leaves the last ones
    an epoch behind: the hint and --resume continue every member from the last epoch all have, each the run never
    stopped. A member's log that lost its first lines by hand is said so, and keeps the rest; the ensemble's report
    (its plots from the steps every member logged) is written. The epoch's line gives the members' lowest and highest
    test loss; the command ends with each member's test loss, then where the ensemble is."""
    out = shutil.copytree(ensemble_run, tmp_path / "uneven")
    first, *_, last = sorted((out / "members").iterdir())
    shutil.rmtree(last / "checkpoints" / "2")
    assert "the last complete checkpoint (epoch 1) is in every member's folder" in training.resume_hint(out)
    lines = (first / "metrics.jsonl").read_text().splitlines(keepends=True)
    (first / "metrics.jsonl").write_text("".join(lines[3:]))
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", *SMALL_RUN, *ENSEMBLE_LISTS]) == 0
    for member in (ensemble_run / "members").iterdir():
        logged = (member / "metrics.jsonl").read_text().splitlines(keepends=True)
        expected = "".join(logged[3:] if member.name == first.name else logged)
        assert (out / "members" / member.name / "metrics.jsonl").read_text() == expected
    said = f"--resume: {first / 'metrics.jsonl'} holds the records of 5 of the 8 steps trained (lines removed?)"
    written = capsys.readouterr()
    assert said in written.err
    *members, done = written.out.splitlines()
    summary = json.loads((out / "summary.json").read_text())
    assert members == [f"{m['name']}: test loss {m['final_test']['loss']:.4f}" for m in summary["members"]]
    losses = [m["final_test"]["loss"] for m in summary["members"]]
    (epoch_line,) = [line for line in written.err.splitlines() if line.startswith("epoch 2/2: test loss ")]
    assert " over 8 members (" in epoch_line and epoch_line.endswith(f"; min {min(losses):.4f}, max {max(losses):.4f})")
    assert done.startswith(f"done: {out} (8 members, ")
    assert done.endswith(f" member-images/s); plots in {out / 'plots'}, each member's run in {out / 'members'}")


def test_the_steps_per_dispatch_by_hand():
    """The largest divisor of the epoch's steps up to the steps asked for, by default 2,048 images' worth."""
    assert chunk_length(100, 32) == 50 and chunk_length(1875, 32) == 25  # 64 steps asked for
    assert chunk_length(234, 256) == 6 and chunk_length(13, 4096) == 1  # 8 asked for; at least one
    assert chunk_length(8, 32, 4) == 4 and chunk_length(8, 32, 3) == 2 and chunk_length(7, 32, 100) == 7


def test_the_digits_interpolated_by_hand():
    """The first test digit of each label 2i with the first of 2i + 1; then pairs of consecutive images."""
    labels = np.array([3, 0, 1, 2, 5, 4, 7, 6, 9, 8, 0])
    assert interpolation_pairs(labels) == [(1, 2), (3, 0), (5, 4), (7, 6), (9, 8)]
    assert interpolation_pairs(np.array([3, 0, 1, 1, 3, 3])) == [(1, 2), (0, 1), (2, 3), (4, 5)]
    assert interpolation_pairs(np.array([4])) == [(0, 0)]


def test_a_setting_s_figures_by_hand():
    """Mean and sample sd over a setting's seeds (losses 1 and 3: mean 2, sd sqrt(2)); a null value makes its figure
    null; a section that a seed lacks is left out of its setting, not averaged over the seeds that have it; a setting
    of one seed has no sd."""
    members = member_grid(RunConfig(), {"seed": (1, 2), "lr": (1e-3, 2e-3)})  # (seed, lr): (1, 1e-3), (1, 2e-3), ...
    results = [
        {"final_test": {"loss": 1.0}, "final_train": {"loss": 5.0}},
        {"final_test": {"loss": 4.0}, "final_train": None},
        {"final_test": {"loss": 3.0}, "final_train": {"loss": 7.0}},
        {"final_test": {"loss": None}, "final_train": {"loss": 6.0}},
    ]
    first, second = summarize_settings(members, results, ("loss",))
    assert first == {
        "lr": 1e-3,
        "reconstruction_weight": 1.0,
        "seeds": [1, 2],
        "final_test": {"loss": {"mean": 2.0, "sd": 2**0.5, "n": 2}},
        "final_train": {"loss": {"mean": 6.0, "sd": 2**0.5, "n": 2}},
    }
    assert second == {
        "lr": 2e-3,
        "reconstruction_weight": 1.0,
        "seeds": [1, 2],
        "final_test": {"loss": {"mean": None, "sd": None, "n": 2}},
    }
    (alone,) = summarize_settings(member_grid(RunConfig(), {"lr": (1e-3,)}), results[:1], ("loss",))  # one seed: no sd
    assert alone["seeds"] == [123] and alone["final_test"] == {"loss": {"mean": 1.0, "sd": None, "n": 1}}


def test_eval_every_and_the_checkpoints_kept(tmp_path):
    """Test records after every 2nd epoch and after the last; the final test metrics are the last epoch's. Of three
    epochs' checkpoints, the last two are kept."""
    config = RunConfig(epochs=3, eval_every=2, **{**SMALL, "train_examples": 128})
    summary = train(config, str(tmp_path / "sparse"))  # the API takes a str or a Path
    tests = records(tmp_path / "sparse", "test")
    assert [r["epoch"] for r in tests] == [2, 3]
    assert sorted(p.name for p in (tmp_path / "sparse" / "checkpoints").iterdir()) == ["2", "3"]
    assert summary["final_test"] == {k: tests[-1][k] for k in ("loss", "reconstruction", "kl")}


def _unfinished_copy(trained, folder):
    """A run folder as a first epoch that never finished leaves it: its settings and some step records, one of
    them garbled (a fresh start keeps none of them, whatever they hold) and the last torn by a kill, a rewrite of
    the records the kill cut short, and epoch 1's checkpoint cut short (Orbax's temporary folder)."""
    (folder / "checkpoints" / "1.orbax-checkpoint-tmp-1").mkdir(parents=True)
    (folder / "config.json").write_bytes((trained / "config.json").read_bytes())
    (folder / "metrics.jsonl.tmp").write_text('{"step"')
    lines = (trained / "metrics.jsonl").read_text().splitlines(keepends=True)
    (folder / "metrics.jsonl").write_text("".join(lines[:2]) + "garbled\n" + lines[2] + lines[3][:20])
    return folder


@pytest.mark.parametrize("resume", [False, True], ids=["same command", "resume"])
def test_a_first_epoch_that_never_finished_is_started_afresh(small_run, tmp_path, resume):
    out = _unfinished_copy(small_run, tmp_path / "unfinished")
    settingless = shutil.copytree(out, tmp_path / "records", ignore=shutil.ignore_patterns("config.json"))
    assert unfinished_run(out) and not unfinished_run(settingless)  # step records without their settings: not a run
    assert main(["train", "--epochs", "2", "--out", str(out), *SMALL_RUN, *(["--resume"] if resume else [])]) == 0
    assert (out / "metrics.jsonl").read_bytes() == (small_run / "metrics.jsonl").read_bytes()


def test_a_step_record_torn_by_a_kill_is_written_again(small_run, tmp_path):
    """A kill mid-write leaves the last line of metrics.jsonl torn, after the last checkpoint's records: --resume
    drops it and writes it whole, no step logged twice (a damaged line elsewhere: a row of tests/test_refusals.py)."""
    out = tmp_path / "torn"
    shutil.copytree(small_run, out)
    shutil.rmtree(out / "checkpoints" / "2")  # killed in epoch 2, while writing step 12's record
    lines = (out / "metrics.jsonl").read_text().splitlines(keepends=True)
    (out / "metrics.jsonl").write_text("".join(lines[:12]) + lines[12][:30])  # 8 steps, a test record, 3 steps
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", *SMALL_RUN]) == 0
    assert (out / "metrics.jsonl").read_bytes() == (small_run / "metrics.jsonl").read_bytes()


def test_a_checkpoint_holding_non_finite_values_is_refused(small_run, tmp_path):
    out = shutil.copytree(small_run, tmp_path / "nonfinite")
    run = open_run(out)
    like = abstract_state(run.model, make_optimizer(run.config.lr), first_local_device())
    with checkpoint.Checkpoints(out / "checkpoints") as saved:
        state, meta = saved.restore(2, like), saved.read_meta(2)
    shutil.rmtree(out / "checkpoints" / "2")
    with checkpoint.Checkpoints(out / "checkpoints") as saved:
        saved.save(2, state._replace(params=jax.tree_util.tree_map(lambda a: a * np.nan, state.params)), meta)
    assert saved._manager is None  # Orbax's manager is closed with the block
    with pytest.raises(UserError, match=r"checkpoint .*2 holds non-finite values; to continue from epoch 1's"):
        open_run(out)
    shutil.rmtree(out / "checkpoints" / "1")
    with pytest.raises(UserError, match=r"checkpoint .*2 holds non-finite values, and no earlier one is left; start a"):
        open_run(out)


def poison(monkeypatch, after_step: int, member=slice(None)):
    """Every chunk that ends after ``after_step`` reports a NaN loss for ``member``(s), as a diverged run would."""
    real = Trainer.compile.__func__

    def compile(cls, *args):
        trainer = real(cls, *args)

        def chunk(state, batches, keys, constants):
            state, metrics = trainer.chunk(state, batches, keys, constants)
            late = int(np.asarray(state.step)[0]) > after_step
            return state, metrics.at[member].set(np.nan) if late else metrics

        return dataclasses.replace(trainer, chunk=chunk)

    monkeypatch.setattr(Trainer, "compile", classmethod(compile))


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    poison(monkeypatch, after_step=8)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLoss, match=r"non-finite at step 9 \(epoch 2\).*last good checkpoint \(epoch 1\)"):
        train(RunConfig(epochs=3, **SMALL), out)
    assert checkpoint.latest_epoch(out / "checkpoints") == 1
    lines = run_files.MetricsLog(out / "metrics.jsonl").read()
    assert lines[-1]["step"] == 9 and lines[-1]["loss"] is None


def test_a_non_finite_loss_in_the_first_epoch_leaves_an_unfinished_run(tmp_path, monkeypatch):
    """No checkpoint exists, so the message names none; the same command starts the folder afresh."""
    poison(monkeypatch, after_step=0)
    out = tmp_path / "nan"
    with pytest.raises(
        NonFiniteLoss, match=r"non-finite at step 1 \(epoch 1\).*no checkpoint; the same command starts"
    ):
        train(RunConfig(epochs=1, **SMALL), out)
    assert unfinished_run(out)


def test_a_member_whose_loss_turns_nan_stops_the_ensemble(tmp_path, monkeypatch):
    """Member 2's loss turns NaN in epoch 2: one error names it; every member keeps epoch 1's checkpoint and its
    records up to that step."""
    poison(monkeypatch, after_step=4, member=2)
    lists = {"seed": (123, 7), "lr": (5e-4, 1e-3), "reconstruction_weight": (1.0, 0.5)}
    members = member_grid(RunConfig(epochs=2, **{**SMALL, "train_examples": 128}), lists)
    with pytest.raises(NonFiniteLoss, match=r"member seed123_lr0.001_rw1 became non-finite at step 5 \(epoch 2\)"):
        train_ensemble(members, lists, tmp_path / "nan", member_group=1)
    for m in members:
        assert [r["step"] for r in records(tmp_path / "nan" / "members" / m.name)] == [1, 2, 3, 4, 5]
        assert checkpoint.latest_epoch(tmp_path / "nan" / "members" / m.name / "checkpoints") == 1


def test_the_loop_copies_nothing_but_the_metrics(tmp_path, monkeypatch):
    """Inside the epoch loop the state, the batches and the keys stay on the devices: under JAX's transfer guard no
    implicit copy happens (the only copies to the devices are each epoch's number, explicit), and the only copies to
    the host are each chunk's and each evaluation's metrics. (On a CPU the guard sees only copies to the devices:
    there the copies to the host are counted.)"""
    real_loop, real_fetch, fetched = training.run_epochs, training.to_host, []

    def guarded(*args):
        with jax.transfer_guard("disallow"):
            return real_loop(*args)

    monkeypatch.setattr(training, "run_epochs", guarded)
    monkeypatch.setattr(training, "to_host", lambda a: fetched.append(a.shape) or real_fetch(a))
    train(RunConfig(epochs=2, **SMALL), tmp_path / "guarded")
    assert fetched == [(1, 4, 3), (1, 4, 3), (1, 3)] * 2  # 2 epochs of 2 chunks and an evaluation


def test_evaluate_sample_export(small_run, tmp_path, capsys):
    assert main(["evaluate", "--run", str(small_run), "--iw-samples", "20"]) == 0
    result = json.loads(capsys.readouterr().out)  # the IWAE fields are tested in tests/test_evaluate.py
    logged = records(small_run, "test")[-1]
    assert result["epoch"] == 2 and result["test_images"] == 100
    # the same compiled function of the same checkpoint, images and noise key as the run's last test record
    assert {k: result[k] for k in ("loss", "reconstruction", "kl")} == {
        k: logged[k] for k in ("loss", "reconstruction", "kl")
    }
    png = tmp_path / "samples.PNG"  # the suffix in any case
    assert main(["sample", "--run", str(small_run), "-n", "3", "--out", str(png)]) == 0
    picture = png.read_bytes()
    assert picture[:8] == PNG
    width, height = struct.unpack(">II", picture[16:24])  # the PNG's header
    assert width < 4 * height  # one row of 3 images (about 2.4:1), not a row of 8 cells with 5 blank (5.7:1)
    torch = pytest.importorskip("torch", reason="export needs torch: pip install -e '.[dev]'")
    from torch_ref import VAE as TorchVAE

    pt = tmp_path / "weights.pt"
    assert main(["export", "--run", str(small_run), "--to", str(pt)]) == 0
    TorchVAE(2).load_state_dict(torch.load(pt, weights_only=True), strict=True)


@pytest.mark.parametrize("primary", [True, False], ids=["process 0", "process 1"])
def test_out_is_read_by_every_process_before_process_0_probes_it(tmp_path, monkeypatch, primary):
    """Over several processes a probe file or a folder made by process 0 while another reads ``--out`` would look
    like another run there; so every process reads, then a barrier, then process 0 alone probes, then a barrier."""
    events = []
    monkeypatch.setattr(training, "is_primary", lambda: primary)
    monkeypatch.setattr(training, "barrier", lambda name: events.append("barrier"))
    real_probe = run_files.check_writable
    monkeypatch.setattr(run_files, "check_writable", lambda *a, **k: (events.append("probe"), real_probe(*a, **k)))
    with training.claim_out_dir(tmp_path / "new", resume=False):
        assert events == (["barrier", "probe", "barrier"] if primary else ["barrier", "barrier"])
        assert (tmp_path / "new" / run_files.LOCK).is_file() == primary  # process 0 holds it
    assert not (tmp_path / "new").exists()  # nothing was written into it: nothing is left behind


def test_every_process_looks_at_the_lock_without_refusing_the_others(tmp_path):
    """Every process of a run looks at ``--out``'s lock at once: a look is a shared lock, which another process's
    look does not block (an exclusive one would refuse, by chance, the run as in use by its own other process);
    a writer's lock refuses it."""
    (tmp_path / run_files.LOCK).write_text("jaxvae train (pid 1)\n")
    with (tmp_path / run_files.LOCK).open() as other:  # another process of the run, looking at the same time
        fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
        run_files.refuse_held(tmp_path)
    with run_files.hold(tmp_path), pytest.raises(UserError, match="is in use by jaxvae train"):
        run_files.refuse_held(tmp_path)


def test_a_lock_held_by_another_program_is_named_whatever_it_holds(tmp_path):
    """The lock file's words are only for the message: bytes that are no text still make the one line."""
    (tmp_path / run_files.LOCK).write_bytes(b"\xff\xfe another program")
    with (tmp_path / run_files.LOCK).open("rb") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for claim in (run_files.refuse_held, lambda out: run_files.hold(out).__enter__()):
            with pytest.raises(UserError, match="is in use by .* another program; wait"):
                claim(tmp_path)


def test_a_run_without_out_gets_a_new_folder_even_within_the_same_second(tmp_path, monkeypatch):
    monkeypatch.setattr(run_files.time, "strftime", lambda form: "20260101-000000")
    for expected in ("20260101-000000", "20260101-000000-2", "20260101-000000-3"):
        assert run_files.new_run_dir(tmp_path) == tmp_path / expected
        (tmp_path / expected).mkdir()  # a run started there


def test_member_names_say_their_values():
    assert member_name(RunConfig(seed=4, lr=1e-5, reconstruction_weight=2.0)) == "seed4_lr1e-05_rw2"
    grid = member_grid(RunConfig(), {"seed": (1, 2), "lr": (1e-3,), "reconstruction_weight": (0.5, 1.0, 2.0)})
    assert len(grid) == 6 and len({m.name for m in grid}) == 6
    assert [(m.config.seed, m.config.reconstruction_weight) for m in grid[:3]] == [(1, 0.5), (1, 1.0), (1, 2.0)]
