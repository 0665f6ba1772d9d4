"""Ensembles (``jaxvae train`` with lists): each member follows its single run, writes a run folder that every
command takes, resumes exactly; the ensemble's summary, plots and vmapped evaluation.

The suite's ensemble (``ensemble_run``, tests/conftest.py) is small_run's flags with ``--seed 123,7
--reconstruction-weight 1,0.5``; its member ``seed123_lr0.0005_rw1`` has small_run's very values.
"""

import json
import shutil

import jax
import numpy as np
import pytest

from conftest import ENSEMBLE_LISTS, SMALL_RUN
from jaxvae.cli import main
from jaxvae.errors import UserError
from jaxvae.run import checkpoint
from jaxvae.run.config import RunConfig
from jaxvae.run.ensemble import EnsembleSetup
from jaxvae.run.members import member_grid, member_name
from jaxvae.run.trainer import RunKeys, RunSetup

NAMES = ["seed123_lr0.0005_rw1", "seed123_lr0.0005_rw0.5", "seed7_lr0.0005_rw1", "seed7_lr0.0005_rw0.5"]
PNG = b"\x89PNG\r\n\x1a\n"


def _records(folder, split=None) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("split") == split]


def _losses(folder) -> np.ndarray:
    return np.array([r["loss"] for r in _records(folder)])


def _follows(got: np.ndarray, want: np.ndarray) -> None:
    """A member against its single run: the first step's loss to 1e-5 relative, the first 10 to 1e-4, the mean of
    the last 10 to 1 %. Members vmapped together batch each convolution and matmul, which may sum in another order
    (measured <= 1.1e-6 relative over 16 steps); one at a time, CPU's default, they were bitwise equal here."""
    assert len(got) == len(want)
    assert abs(got[0] - want[0]) <= 1e-5 * abs(want[0])
    np.testing.assert_allclose(got[:10], want[:10], rtol=1e-4)
    assert abs(got[-10:].mean() - want[-10:].mean()) <= 0.01 * abs(want[-10:].mean())


@pytest.fixture(scope="module")
def seed7_run(tmp_path_factory):
    """The single run of member seed7_lr0.0005_rw0.5: every per-member value but lr differs from member 0's."""
    out = tmp_path_factory.mktemp("single") / "seed7"
    flags = ["--epochs", "2", "--seed", "7", "--reconstruction-weight", "0.5", *SMALL_RUN]
    assert main(["train", "--out", str(out), *flags]) == 0
    return out


def test_members_follow_their_single_runs(ensemble_run, small_run, seed7_run):
    members = ensemble_run / "members"
    assert sorted(p.name for p in members.iterdir()) == sorted(NAMES)
    for name, single in (("seed123_lr0.0005_rw1", small_run), ("seed7_lr0.0005_rw0.5", seed7_run)):
        _follows(_losses(members / name), _losses(single))
        assert (members / name / "config.json").read_text() == (single / "config.json").read_text()
        got, want = _records(members / name, "test"), _records(single, "test")
        np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=1e-4)


def test_members_with_their_own_learning_rates_follow_their_single_steps(mnist5k):
    """The ensemble's chunk against each member's own compiled chunk, members differing in seed, lr and weight:
    8 steps from each member's own initialisation and shuffle, within ``_follows``'s first-10 bound, whether the
    members run one at a time (CPU's default) or all vmapped (elsewhere's default)."""
    base = RunConfig(batch_size=16, train_examples=128, chunk_steps=8)
    lists = {"seed": (3, 4), "lr": (5e-4, 4e-3), "reconstruction_weight": (1.0, 0.25)}
    chosen = {(3, 5e-4, 1.0), (3, 4e-3, 0.25), (4, 4e-3, 1.0)}
    members = [m for m in member_grid(base, lists) if tuple(m.values().values()) in chosen]
    assert len(members) == 3
    images = mnist5k.train.images[:128]
    wanted = []
    for member in members:
        single, own = RunSetup.build(member.config), RunKeys.from_seed(member.config.seed)
        batches = images[np.asarray(single.epoch_order(128)(own.data, 1))]  # (8, 16, 28, 28, 1)
        wanted.append(jax.jit(single.train_chunk(8))(single.fresh_state(own.init), batches, 0, own.train)[1])
    for group in (1, 0):
        ensemble = EnsembleSetup.build(members, member_group=group)
        keys = ensemble.member_keys()
        epoch = images[np.asarray(ensemble.epoch_order(128)(keys.data, 1))]  # (K, 8, 16, 28, 28, 1)
        chunk = jax.jit(ensemble.train_chunk(8))
        _, got = chunk(ensemble.fresh_state(keys), epoch, 0, ensemble.step_constants(keys))
        for k, (member, want) in enumerate(zip(members, wanted)):
            assert abs(got[k, 0, 0] - want[0, 0]) <= 1e-5 * want[0, 0], (group, member.name)
            np.testing.assert_allclose(got[k], want, rtol=1e-4, err_msg=f"group {group}, {member.name}")


def test_the_ensemble_folder(ensemble_run):
    assert json.loads((ensemble_run / "ensemble.json").read_text()) == {
        "members": NAMES,
        "lists": {"seed": [123, 7], "lr": [0.0005], "reconstruction_weight": [1.0, 0.5]},
        "member_group": 1,
    }
    summary = json.loads((ensemble_run / "summary.json").read_text())
    assert [m["name"] for m in summary["members"]] == NAMES and summary["steps"] == 16
    assert summary["member_images_per_second"] > 0 and summary["traces"] == {"train_chunk": 1, "evaluate": 1}
    assert "seed" not in summary["config"] and summary["config"]["batch_size"] == 32
    finals = {}
    for member in summary["members"]:
        own = json.loads((ensemble_run / member["folder"] / "summary.json").read_text())
        assert member["final_test"] == own["final_test"] and member["final_train"] == own["final_train"]
        assert own["steps"] == 16 and own["config"]["seed"] == member["seed"]
        finals[member["seed"], member["reconstruction_weight"]] = own["final_test"]
    assert [(s["lr"], s["reconstruction_weight"], s["seeds"]) for s in summary["settings"]] == [
        (0.0005, 1.0, [123, 7]),
        (0.0005, 0.5, [123, 7]),
    ]
    for setting in summary["settings"]:
        weight = setting["reconstruction_weight"]
        for key in ("loss", "reconstruction", "kl"):
            values = [finals[seed, weight][key] for seed in (123, 7)]
            assert setting["final_test"][key]["mean"] == pytest.approx(np.mean(values), rel=1e-12)
            assert setting["final_test"][key]["sd"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    for name in ("losses", "rate_distortion"):
        png = ensemble_run / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    assert summary["plots"] == ["plots/losses.png", "plots/rate_distortion.png"]


def test_a_member_folder_through_every_command_and_the_ensemble_evaluated_at_once(ensemble_run, tmp_path, capsys):
    import torch

    from torch_ref import VAE as TorchVAE

    member = ensemble_run / "members" / "seed7_lr0.0005_rw0.5"
    flags = ["--iw-samples", "10", "--test-examples", "40"]
    assert main(["evaluate", "--run", str(member), *flags]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--run", str(ensemble_run), *flags]) == 0
    together = json.loads(capsys.readouterr().out)
    assert list(together["members"]) == NAMES
    mine = together["members"]["seed7_lr0.0005_rw0.5"]
    assert mine.keys() == alone.keys() and mine["epoch"] == alone["epoch"] == 2
    for key in ("loss", "reconstruction", "kl", "reconstruction_at_mean", "elbo_nats", "log_px_nats"):
        # the same functions of the same weights, images and keys, vmapped: float32 sums in another order
        assert mine[key] == pytest.approx(alone[key], rel=1e-5), key
    setting = next(s for s in together["settings"] if s["reconstruction_weight"] == 0.5)
    values = [together["members"][f"seed{s}_lr0.0005_rw0.5"]["log_px_nats"] for s in (123, 7)]
    assert setting["evaluation"]["log_px_nats"]["mean"] == pytest.approx(np.mean(values), rel=1e-12)
    png, pt = tmp_path / "samples.png", tmp_path / "weights.pt"
    assert main(["sample", "--run", str(member), "-n", "4", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG
    assert main(["export", "--run", str(member), "--to", str(pt)]) == 0
    TorchVAE(2).load_state_dict(torch.load(pt, weights_only=True), strict=True)


def test_an_ensemble_resumed_equals_one_never_stopped(ensemble_run, tmp_path):
    """Two of the suite ensemble's members (weight 0.5), stopped after epoch 1 and resumed: byte for byte those
    members of the ensemble that was never stopped (with --member-group 1 a member runs its own run's operations,
    so the other members do not change its trajectory)."""
    out = tmp_path / "resumed"
    lists = ["--seed", "123,7", "--reconstruction-weight", "0.5", "--member-group", "1"]
    flags = ["train", "--out", str(out), *SMALL_RUN, *lists]
    assert main([*flags, "--epochs", "1"]) == 0
    assert main([*flags, "--epochs", "2", "--resume"]) == 0
    names = ["seed123_lr0.0005_rw0.5", "seed7_lr0.0005_rw0.5"]
    for name in names:
        got, want = out / "members" / name, ensemble_run / "members" / name
        assert (got / "metrics.jsonl").read_text() == (want / "metrics.jsonl").read_text(), name
    summary = json.loads((out / "summary.json").read_text())
    never_stopped = json.loads((ensemble_run / "summary.json").read_text())["members"]
    assert summary["members"] == [m for m in never_stopped if m["name"] in names]


def test_a_resume_with_other_lists_changes_nothing(ensemble_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(ensemble_run, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    flags = ["train", "--out", str(copy), "--resume", "--epochs", "3", *SMALL_RUN]
    assert main([*flags, "--seed", "123,8", "--reconstruction-weight", "1,0.5", "--member-group", "1"]) == 2
    assert main([*flags, "--member-group", "1"]) == 2  # no lists: still this ensemble, with other members
    assert main([*flags, *ENSEMBLE_LISTS[:-1], "2"]) == 2  # the same lists, members grouped otherwise
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all("--resume: this ensemble was trained with --" in line for line in lines)
    assert "--seed 123,7" in lines[0] and "--seed 123,7" in lines[1] and "--member-group 1, not 2" in lines[2]
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


def test_member_names_say_their_values():
    config = RunConfig(seed=4, lr=1e-5, reconstruction_weight=2.0)
    assert member_name(config) == "seed4_lr1e-05_rw2"
    grid = member_grid(RunConfig(), {"seed": (1, 2), "lr": (1e-3,), "reconstruction_weight": (0.5, 1.0, 2.0)})
    assert len(grid) == 6 and len({m.name for m in grid}) == 6
    assert [(m.config.seed, m.config.reconstruction_weight) for m in grid[:3]] == [(1, 0.5), (1, 1.0), (1, 2.0)]


def test_binarize_sample_with_several_seeds_is_refused(tmp_path):
    members = member_grid(RunConfig(likelihood="bernoulli", binarize="sample"), {"seed": (1, 2)})
    from jaxvae.run.ensemble_training import train_ensemble

    with pytest.raises(UserError, match="--binarize sample draws each member's test split"):
        train_ensemble(members, {"seed": (1, 2)}, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_a_member_whose_loss_turns_nan_stops_the_ensemble(tmp_path, monkeypatch):
    """Member 2's loss turns NaN in epoch 2: the ensemble stops in one error that names it; every member keeps
    epoch 1's checkpoint and its records up to that step."""
    from jaxvae.run.ensemble_training import train_ensemble
    from jaxvae.run.trainer import Trainer
    from jaxvae.run.training import NonFiniteLoss

    real = Trainer.run_chunk

    def poisoned(self, state, epoch, first, keys):
        state, metrics = real(self, state, epoch, first, keys)
        if int(np.asarray(state.step)[0]) > 4:
            metrics = metrics.at[1].set(np.nan)
        return state, metrics

    lists = {"seed": (1, 2)}
    members = member_grid(
        RunConfig(epochs=2, batch_size=32, train_examples=128, test_examples=50, chunk_steps=4), lists
    )
    out = tmp_path / "nan"
    monkeypatch.setattr(Trainer, "run_chunk", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"member seed2_lr0.0005_rw1 became non-finite at step 5 \(epoch 2\)"):
        train_ensemble(members, lists, out)
    first, second = (_records(out / "members" / m.name) for m in members)
    assert [r["step"] for r in first] == [r["step"] for r in second] == [1, 2, 3, 4, 5]
    assert second[-1]["loss"] is None and first[-1]["loss"] is not None
    assert [checkpoint.latest_epoch(out / "members" / m.name / "checkpoints") for m in members] == [1, 1]
