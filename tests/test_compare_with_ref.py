"""``scripts/compare_with_ref.py``'s verdicts, on step and test records written by hand: training rows byte for byte,
test rows within 1e-6 relative, a resumed folder held to the test record its first part wrote."""

import json
import runpy
from pathlib import Path

import numpy as np

compare = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "compare_with_ref.py"))  # its functions

STEPS = [{"step": s, "epoch": (s + 1) // 2, "loss": 1 / s, "reconstruction": 1 / s, "kl": 0.0} for s in (1, 2, 3, 4)]


def evaluated(epoch: int, loss: float) -> dict:
    return {"split": "test", "epoch": epoch, "loss": loss}


TWO = [*STEPS[:2], evaluated(1, 5.0), *STEPS[2:], evaluated(2, 4.0)]  # the reference's 2-epoch run
ONE = [*STEPS[:2], evaluated(1, 5.001)]  # its 1-epoch run, whose evaluation rounds otherwise
RESUMED = [*ONE, *STEPS[2:], evaluated(2, 4.0)]  # the 1-epoch run resumed: it keeps its first part's test record


def verdicts(tmp_path, ref_two=TWO, ref_one=ONE, new_two=TWO, resumed=RESUMED) -> dict:
    for name, rows in (("ref_two", ref_two), ("ref_one", ref_one), ("new_two", new_two), ("resumed", resumed)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return compare["same_rows"](*(tmp_path / name for name in ("ref_two", "ref_one", "new_two", "resumed")))


def test_the_verdicts_by_hand(tmp_path):
    assert all(verdicts(tmp_path).values())
    bit = [*STEPS[:2], {**STEPS[2], "loss": np.nextafter(1 / 3, 1.0)}, STEPS[3]]  # a loss one bit off
    off = [*bit[:2], evaluated(1, 5.0), *bit[2:], evaluated(2, 4.0)]
    assert verdicts(tmp_path, new_two=off) == {**verdicts(tmp_path), "train_rows_identical": False}
    assert verdicts(tmp_path, resumed=[*ONE, *bit[2:], TWO[-1]])["resumed_train_rows_identical"] is False
    assert verdicts(tmp_path, new_two=[*TWO[:-1], evaluated(2, 4 * (1 + 5e-7))])["test_rows_close"]
    assert not verdicts(tmp_path, new_two=[*TWO[:-1], evaluated(2, 4 * (1 + 2e-6))])["test_rows_close"]
    assert not verdicts(tmp_path, resumed=TWO)["resumed_test_rows_close"]  # not the record its first part wrote
    every_2nd = [*STEPS, evaluated(2, 4.0)]  # --eval-every 2: the 2-epoch runs evaluate epoch 2 only
    assert all(verdicts(tmp_path, ref_two=every_2nd, new_two=every_2nd).values())
    assert not verdicts(tmp_path, [], [], [], [])["train_rows_identical"]  # no rows: no case passes
    ensemble = {"members": {"a": {"loss": 1.0, "log_px_nats": -90.0}}}
    assert compare["close"]({"members": {"a": {"loss": 1 + 5e-7, "log_px_nats": -90.0}}}, ensemble)
    assert not compare["close"]({"members": {"b": {"loss": 1.0, "log_px_nats": -90.0}}}, ensemble)
    assert not compare["close"]({"members": {"a": {"loss": 1.0, "log_px_nats": -90.001}}}, ensemble)
