"""The weight bridge between ``torch_ref.VAE`` state dicts and ``jaxvae.model.VAE`` variables.

The layers and their shapes are ``jaxvae.architecture``'s table. torch keeps Conv2d weights as
``(out, in, kh, kw)``, ConvTranspose2d weights as ``(in, out, kh, kw)`` and Linear weights as ``(out, in)``;
jaxvae keeps all conv kernels as ``(kh, kw, in, out)`` and dense kernels as ``(in, out)``. Flatten order needs
no permutation: the Flax model flattens in torch's NCHW order. Both directions check every key and shape,
name the first that is wrong (a key, a shape, values that are no floating point), and copy values exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from jaxvae.architecture import FLAT, LAYERS

# torch weight axes -> jaxvae kernel axes, and its inverse.
TO_JAX = {"conv": (2, 3, 1, 0), "conv_transpose": (2, 3, 0, 1), "linear": (1, 0)}
TO_TORCH = {kind: tuple(np.argsort(axes)) for kind, axes in TO_JAX.items()}


class WeightMismatchError(ValueError):
    """A state dict or variables tree that does not fit the seed's VAE; the message names the entry."""


def _numpy(value) -> np.ndarray:
    """A copy: the result must not share memory with a torch tensor that an optimiser updates in place. A torch
    float narrower than float32 (bfloat16, which numpy cannot hold) is widened to float32, exactly."""
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu()
        value = (value.float() if value.is_floating_point() and value.element_size() < 4 else value).numpy()
    return np.array(value, copy=True)


def torch_shapes(latent_dim: int) -> dict[str, tuple[int, ...]]:
    """Every key of the seed's state dict with its shape, for this latent size."""
    shapes = {}
    for layer in LAYERS:
        shapes[f"{layer.name}.weight"] = layer.torch_weight_shape(latent_dim)
        shapes[f"{layer.name}.bias"] = (layer.sizes(latent_dim)[1],)
    return shapes


def infer_latent_dim(state_dict: Mapping) -> int:
    """The latent size of a seed-style state dict, read off ``z_mean.weight``."""
    if "z_mean.weight" not in state_dict:
        raise WeightMismatchError("missing key 'z_mean.weight': not a state dict of the seed's VAE")
    shape = _numpy(state_dict["z_mean.weight"]).shape
    if len(shape) != 2 or shape[0] < 1 or shape[1] != FLAT:
        raise WeightMismatchError(f"'z_mean.weight' has shape {shape}, expected (latent_dim, {FLAT})")
    return shape[0]


def _check_keys_and_shapes(arrays: Mapping[str, np.ndarray], expected: Mapping[str, tuple]) -> None:
    missing = [k for k in expected if k not in arrays]
    extra = [k for k in arrays if k not in expected]
    if missing:
        raise WeightMismatchError(f"missing key {missing[0]!r} ({len(missing)} missing in all)")
    if extra:
        raise WeightMismatchError(f"unexpected key {extra[0]!r} ({len(extra)} unexpected in all)")
    for key, shape in expected.items():
        if arrays[key].shape != tuple(shape):
            raise WeightMismatchError(f"{key!r} has shape {arrays[key].shape}, expected {tuple(shape)}")
        if not jnp.issubdtype(arrays[key].dtype, jnp.floating):  # an integer, bool or complex tensor: no weights
            raise WeightMismatchError(f"{key!r} holds {arrays[key].dtype} values, expected floating point")


def params_from_torch(state_dict: Mapping, dtype=np.float32) -> dict:
    """Flax variables ``{"params": ...}`` for ``VAE(latent_dim).apply`` from a seed-style state dict.

    Accepts torch tensors or numpy arrays; the latent size is inferred. Values are copied exactly as
    ``dtype`` (float32 by default; float64 for a double-precision comparison under ``jax.enable_x64``).
    """
    latent_dim = infer_latent_dim(state_dict)
    arrays = {k: _numpy(v) for k, v in state_dict.items()}
    _check_keys_and_shapes(arrays, torch_shapes(latent_dim))
    params = {}
    for layer in LAYERS:
        kernel = arrays[f"{layer.name}.weight"].transpose(TO_JAX[layer.kind])
        params[layer.flax_name] = {
            "kernel": np.ascontiguousarray(kernel, dtype=dtype),
            "bias": np.asarray(arrays[f"{layer.name}.bias"], dtype=dtype),
        }
    return {"params": params}


def _flatten_params(variables: Mapping) -> dict[str, np.ndarray]:
    params = variables.get("params", variables)
    flat = {}
    for layer, leaves in params.items():
        if not isinstance(leaves, Mapping):
            raise WeightMismatchError(f"unexpected parameter {layer!r}: not a layer of the seed's VAE")
        for leaf, value in leaves.items():
            flat[f"{layer}.{leaf}"] = _numpy(value)
    return flat


def params_to_torch(variables: Mapping) -> dict[str, np.ndarray]:
    """A mapping with the seed's state-dict keys (numpy, in the parameters' dtype) from jaxvae variables or params.

    ``torch_ref.VAE(latent_dim).load_state_dict({k: torch.from_numpy(v) ...}, strict=True)`` loads it.
    """
    flat = _flatten_params(variables)
    if "z_mean.kernel" not in flat:
        raise WeightMismatchError("missing parameter 'z_mean.kernel': not the variables of jaxvae's VAE")
    latent_dim = flat["z_mean.kernel"].shape[-1]
    expected = {}
    for layer in LAYERS:
        torch_weight = layer.torch_weight_shape(latent_dim)
        expected[f"{layer.flax_name}.kernel"] = tuple(torch_weight[a] for a in TO_JAX[layer.kind])
        expected[f"{layer.flax_name}.bias"] = (layer.sizes(latent_dim)[1],)
    _check_keys_and_shapes(flat, expected)
    state = {}
    for layer in LAYERS:
        kernel = flat[f"{layer.flax_name}.kernel"].transpose(TO_TORCH[layer.kind])
        state[f"{layer.name}.weight"] = np.ascontiguousarray(kernel)
        state[f"{layer.name}.bias"] = flat[f"{layer.flax_name}.bias"]
    return state
