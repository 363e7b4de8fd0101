"""Random values of a BoxSpace on its own backend (functional RNG, no host round trip)."""

from __future__ import annotations

import numpy as np

from unibatch._typing import RNG, Array
from unibatch.spaces.box import BoxSpace


def sample_box(space: BoxSpace, rng: RNG) -> tuple[RNG, Array]:
    """A random value of ``space``; returns ``(new_rng, value)``.

    Floats: uniform where both bounds are finite, ``low + Exp(1)`` / ``high - Exp(1)`` where one
    is, standard normal where none is. Integers: uniform on ``[low, high]`` inclusive.
    """
    backend, xp = space.backend, space.backend.xp
    name = backend.dtype_name(space.dtype)
    if name.startswith(("int", "uint")):
        return _sample_integers(space, rng)
    work = backend.as_dtype("float64" if name == "float64" else "float32")
    shape = space.shape
    low_np, high_np = space.host_bounds()
    low_finite, high_finite = np.isfinite(low_np), np.isfinite(high_np)
    low = backend.from_numpy(np.where(low_finite, low_np, 0).astype(np.float64), dtype=work, device=space.device)
    high = backend.from_numpy(np.where(high_finite, high_np, 0).astype(np.float64), dtype=work, device=space.device)
    rng, uniform = backend.random_uniform(shape, rng=rng, dtype=work, device=space.device)
    value = low + uniform * (high - low)
    if not (low_finite.all() and high_finite.all()):
        rng, exponential = backend.random_exponential(shape, rng=rng, dtype=work, device=space.device)
        rng, normal = backend.random_normal(shape, rng=rng, dtype=work, device=space.device)
        has_low = backend.from_numpy(np.broadcast_to(low_finite, low_np.shape).copy(), device=space.device)
        has_high = backend.from_numpy(np.broadcast_to(high_finite, high_np.shape).copy(), device=space.device)
        value = xp.where(
            has_low & has_high,
            value,
            xp.where(has_low, low + exponential, xp.where(has_high, high - exponential, normal)),
        )
    value = xp.clip(xp.astype(value, space.dtype), *space.abbreviated_bounds())
    return rng, backend.asarray(xp.broadcast_to(value, shape) if tuple(value.shape) != shape else value)


def _sample_integers(space: BoxSpace, rng: RNG) -> tuple[RNG, Array]:
    """``floor(low + u * (high - low + 1))`` in floating point, kept inside the dtype's range."""
    backend, xp = space.backend, space.backend.xp
    work_name = "float32" if backend.simplified_name == "jax" else "float64"
    work = backend.as_dtype(work_name)
    low_np, high_np = space.host_bounds()
    low_f = low_np.astype(np.float64)
    span = high_np.astype(np.float64) - low_f + 1
    info = np.iinfo(backend.numpy_dtype(space.dtype))
    largest = np.nextafter(np.array(info.max, dtype=work_name), 0)
    low = backend.from_numpy(low_f, dtype=work, device=space.device)
    span_b = backend.from_numpy(span, dtype=work, device=space.device)
    rng, uniform = backend.random_uniform(space.shape, rng=rng, dtype=work, device=space.device)
    value = xp.clip(xp.floor(low + uniform * span_b), float(info.min), float(largest))
    value = xp.clip(xp.astype(value, space.dtype), *space.abbreviated_bounds())
    return rng, backend.asarray(value)
