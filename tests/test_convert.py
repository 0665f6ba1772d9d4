"""The weight bridge's checks, on numpy arrays alone (the torch side is in parity_tests/)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.convert import WeightMismatchError, params_from_torch, params_to_torch, torch_shapes


def state_dict(latent_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in torch_shapes(latent_dim).items()}


@pytest.mark.parametrize("latent_dim", [1, 2, 16])
def test_infers_latent_size_and_round_trips(latent_dim):
    sd = state_dict(latent_dim)
    variables = params_from_torch(sd)
    assert variables["params"]["z_mean"]["kernel"].shape == (3136, latent_dim)
    assert variables["params"]["decoder_6"]["kernel"].shape == (3, 3, 64, 32)
    back = params_to_torch(variables)
    assert back.keys() == sd.keys()
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])


@pytest.mark.parametrize("key, named", [("decoder.4.bias", "missing key"), ("decoder.10.weight", "unexpected key")])
def test_names_a_missing_or_unexpected_key(key, named):
    sd = {k: v for k, v in state_dict().items() if k != key} if named == "missing key" else {**state_dict(), key: 0}
    with pytest.raises(WeightMismatchError, match=f"{named} '{key}'"):
        params_from_torch(sd)


def test_names_misshaped_entry():
    sd = state_dict()
    sd["encoder.2.weight"] = np.zeros((64, 16, 3, 3), np.float32)
    with pytest.raises(WeightMismatchError, match=r"encoder.2.weight.*\(64, 32, 3, 3\)"):
        params_from_torch(sd)


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.complex64])
def test_names_an_entry_that_holds_no_floating_point(dtype):
    sd = state_dict()
    sd["encoder.2.weight"] = sd["encoder.2.weight"].astype(dtype)
    with pytest.raises(WeightMismatchError, match=f"'encoder.2.weight' holds {np.dtype(dtype)} values, expected float"):
        params_from_torch(sd)


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16, np.float64])
def test_weights_of_any_floating_point_precision_are_taken_exactly(dtype):
    sd = {k: v.astype(dtype) for k, v in state_dict().items()}
    back = params_to_torch(params_from_torch(sd, np.float64))
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k].astype(np.float64))


def test_to_torch_names_misshaped_parameter():
    variables = params_from_torch(state_dict())
    variables["params"]["decoder_8"]["kernel"] = np.zeros((3, 3, 32, 2), np.float32)
    with pytest.raises(WeightMismatchError, match="decoder_8.kernel"):
        params_to_torch(variables)


def test_not_a_seed_state_dict():
    with pytest.raises(WeightMismatchError, match="z_mean.weight"):
        params_from_torch({"fc.weight": np.zeros((2, 2))})
    with pytest.raises(WeightMismatchError, match=r"\(3136, 2\), expected \(latent_dim, 3136\)"):  # transposed
        params_from_torch({**state_dict(), "z_mean.weight": np.zeros((3136, 2))})


def test_params_do_not_alias_the_source():
    """Training the source model in place afterwards must not change the converted weights."""
    sd = state_dict()
    variables = params_from_torch(sd)
    before = variables["params"]["decoder_8"]["bias"].copy()
    sd["decoder.8.bias"] += 1.0
    np.testing.assert_array_equal(variables["params"]["decoder_8"]["bias"], before)
