"""The parity method's own parts: the comparison, the kink zone and branch matching, TF32 off on GPUs."""

import numpy as np
import pytest
import torch

from jaxvae.parity.capture import KINKS, LAYER_INPUTS, Capture
from jaxvae.parity.check import parity_inputs, parity_weights
from jaxvae.parity.method import EXACT, FLOAT32, Tolerances, compare, compare_captures, objective_tolerances
from jaxvae.parity.torch_side import float32_without_tf32, torch_capture


def test_compare_is_relative_to_the_reference_and_fails_shape_and_nan():
    want = np.array([2.0, -4.0])
    assert compare("t", [2.0, -4.0 + 2**-20], want, 2**-22).passed  # |difference| 2^-20 over max |want| 4
    assert not compare("t", [2.0, -4.0 + 2**-19], want, 2**-22).passed
    assert not compare("t", [2.0], want, 1.0).passed
    assert compare("t", [np.nan, -4.0], want, 1.0).rel == np.inf  # above any finite error in a sweep's worst
    assert compare("t", [0.0], [0.0], 0.0).passed and not compare("t", [1e-30], [0.0], 1.0).passed
    one = {"w": np.ones(1)}
    rows = compare_captures(Capture({}, 1.0, one), Capture({"encoder.0": np.ones(2)}, 1.0, one), EXACT)
    assert [(r.name, r.passed) for r in rows] == [("encoder.0", False), ("loss", True), ("grad w", True)]


def test_a_layer_s_input_is_the_previous_child_s_output():
    """What the bfloat16 reference rounds: the images, encoder.5, the flatten, the latent sample, decoder.7."""
    inputs = [LAYER_INPUTS[k] for k in ("encoder.0", "encoder.6", "z_mean", "decoder.0", "decoder.8")]
    assert inputs == ["x", "encoder.5", "encoder.7", "z", "decoder.7"]


def test_the_importance_weighted_bound_widens_float32_gradients_only():
    """By hand, objective_tolerances' figure: 4 x 2e-6 x 50 nats = 4e-4 more for a loss of -50; float64's stays."""
    assert objective_tolerances(FLOAT32, "iwae", -50.0).grads == pytest.approx(FLOAT32.grads + 4e-4, rel=1e-12)
    assert objective_tolerances(EXACT, "iwae", -50.0) == EXACT
    assert objective_tolerances(FLOAT32, "elbo", 50.0) == FLOAT32


@pytest.fixture(scope="session")
def natural():
    """torch_ref in float64 at seed 3, and the pre-activation element nearest its kink."""
    state = parity_weights(None, 2, 3)
    x, eps = parity_inputs(8, 2, 3)
    capture = torch_capture(state, x, eps, torch.float64)
    pre = "decoder.4"
    values = capture.activations[pre]
    index = np.unravel_index(np.argmin(np.abs(values)), values.shape)
    assert abs(values[index]) <= FLOAT32.activations * np.abs(values).max()  # inside the float32 zone
    return state, x, eps, capture, pre, index


def run_that_took_the_other_branch(natural):
    """A float64 run that took the other branch at one element inside the float32 zone: what rounding may do."""
    state, x, eps, capture, pre, index = natural
    flipped = {k: v.copy() for k, v in capture.activations.items()}
    flipped[pre][index] = -flipped[pre][index] if flipped[pre][index] != 0 else 1e-300
    follow = type(capture)(flipped, capture.loss, capture.grads)
    other = torch_capture(state, x, eps, torch.float64, follow=follow, zone=FLOAT32.activations)
    other.activations[pre] = flipped[pre]  # a run's branch is the sign of its own pre-activation
    return other


def test_a_kink_flip_fails_an_unmatched_comparison(natural):
    """The flaw the method removes: one flipped element (computed on the other branch) moves a gradient far beyond
    float32's bound."""
    other, (capture, pre, index) = run_that_took_the_other_branch(natural), natural[3:]
    assert other.kinks.flips == {**{k: 0 for k in KINKS.values()}, pre: 1}
    leaky, v = next(name for name, its_input in KINKS.items() if its_input == pre), capture.activations[pre][index]
    assert v > 0 and other.activations[leaky][index] == 0.01 * v  # the other branch: torch_ref's slope times v
    rows = compare_captures(other, capture, FLOAT32)
    assert not all(r.passed for r in rows if r.name.startswith("grad"))


def test_the_reference_follows_a_flip_inside_the_zone_only(natural):
    """Matched to the flipped run, the reference agrees with it exactly; with a zone too narrow to hold the
    element, it does not follow, and the flip shows as a failure."""
    state, x, eps, capture, pre, index = natural
    other = run_that_took_the_other_branch(natural)
    matched = torch_capture(state, x, eps, torch.float64, follow=other, zone=FLOAT32.activations)
    assert matched.kinks.flips[pre] == 1 and matched.kinks.near[pre] >= 1
    # the recorded pre-activation differs by 2|v| (inside the zone); the loss and gradients are exact again
    assert all(
        r.passed for r in compare_captures(other, matched, Tolerances(FLOAT32.activations, EXACT.loss, EXACT.grads))
    )
    narrow = abs(capture.activations[pre][index]) / np.abs(capture.activations[pre]).max() * 0.99  # just short of it
    unmatched = torch_capture(state, x, eps, torch.float64, follow=other, zone=narrow)
    assert unmatched.kinks.flips[pre] == 0
    assert not all(r.passed for r in compare_captures(other, unmatched, EXACT))


def test_float32_without_tf32_sets_and_restores_torch_flags():
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
    torch.set_float32_matmul_precision("medium")
    try:
        with float32_without_tf32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
        torch.set_float32_matmul_precision("highest")
