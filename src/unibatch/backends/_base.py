"""The ComputeBackend contract: an array-API namespace plus the few extras unibatch needs.

A backend is a stateless singleton object (``NumpyComputeBackend``, ``PyTorchComputeBackend``,
``JaxComputeBackend``). Array-API functions (``zeros``, ``stack``, ``concat``, ``take``...) are
reached through :attr:`ComputeBackend.xp` or directly as attributes of the backend, which
forwards unknown names to ``xp``. The extras are enumerated here: functional RNG, ``at[].set``,
dtype and device (de)serialization by name, and NumPy/DLPack conversion.
"""

from __future__ import annotations

import contextlib
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic

import numpy as np
from typing_extensions import TypeVar

from unibatch._typing import Array
from unibatch.errors import SpaceMismatchError, UnknownNameError

ArrayT = TypeVar("ArrayT", default=Any)
DeviceT = TypeVar("DeviceT", default=Any)
DTypeT = TypeVar("DTypeT", default=Any)
RNGT = TypeVar("RNGT", default=Any)

Shape = Sequence[int]

DTYPE_NAMES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
"""Every dtype name unibatch can serialize; a backend supports a subset of them."""


class ComputeBackend(ABC, Generic[ArrayT, DeviceT, DTypeT, RNGT]):
    """One array library seen through the array API, plus unibatch's enumerated extras.

    Unknown attributes are looked up on :attr:`xp`, so ``backend.zeros((2, 3))`` is
    ``backend.xp.zeros((2, 3))``.
    """

    simplified_name: str
    """``"numpy"``, ``"pytorch"`` or ``"jax"``: the name persisted in metadata."""
    arrays_are_mutable: bool = True
    """Whether ``array[i] = value`` writes in place (False for JAX: ``at[].set`` returns a new array)."""

    # ----------------------------------------------------------------- namespace
    @property
    @abstractmethod
    def xp(self) -> Any:
        """The array-API compatible namespace of this backend."""

    @property
    @abstractmethod
    def array_type(self) -> type:
        """The array class of this backend (``np.ndarray``, ``torch.Tensor``, ``jax.Array``)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "xp":
            raise AttributeError(name)
        return getattr(self.xp, name)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        from unibatch.backends import backend_from_name

        return backend_from_name, (self.simplified_name,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def is_backendarray(self, x: Any) -> bool:
        """Whether ``x`` is an array of this backend (NumPy scalars are not arrays)."""
        return isinstance(x, self.array_type)

    # ----------------------------------------------------------------- dtypes
    @property
    @abstractmethod
    def default_integer_dtype(self) -> DTypeT: ...

    @property
    @abstractmethod
    def default_floating_dtype(self) -> DTypeT: ...

    @property
    def default_index_dtype(self) -> DTypeT:
        return self.default_integer_dtype

    @property
    def default_boolean_dtype(self) -> DTypeT:
        return self.dtype_from_name("bool")

    @abstractmethod
    def dtype_from_name(self, name: str) -> DTypeT:
        """The dtype called ``name`` (``"float32"``...); :class:`UnknownNameError` if missing."""

    @abstractmethod
    def dtype_name(self, dtype: DTypeT) -> str:
        """The portable name of ``dtype`` (``"float32"``, ``"bool"``...)."""

    def as_dtype(self, dtype: Any) -> DTypeT:
        """Normalise any dtype spelling to this backend's dtype.

        Accepts this backend's dtype objects, NumPy dtypes and scalar types, other backends'
        dtypes and portable names (``"float32"``).
        """
        cache = self.__dict__.setdefault("_as_dtype_cache", {})
        try:
            return cache[dtype]  # dtype objects and names are hashable: one lookup on hot paths
        except (KeyError, TypeError):
            pass
        resolved = self.dtype_from_name(dtype if isinstance(dtype, str) else dtype_to_name(dtype))
        with contextlib.suppress(TypeError):
            cache[dtype] = resolved
        return resolved

    def numpy_dtype(self, dtype: Any) -> np.dtype:
        """The NumPy dtype with the same name (``bfloat16`` needs ml_dtypes)."""
        return numpy_dtype_from_name(dtype_to_name(dtype))

    def dtype_is_real_floating(self, dtype: Any) -> bool:
        return dtype_to_name(dtype) in ("float16", "bfloat16", "float32", "float64")

    def dtype_is_real_integer(self, dtype: Any) -> bool:
        return dtype_to_name(dtype).startswith(("int", "uint"))

    def dtype_is_boolean(self, dtype: Any) -> bool:
        return dtype_to_name(dtype) == "bool"

    # ----------------------------------------------------------------- devices
    @property
    @abstractmethod
    def default_device(self) -> DeviceT: ...

    def device(self, x: ArrayT) -> DeviceT:
        """The device ``x`` lives on."""
        from array_api_compat import device

        return device(x)

    @abstractmethod
    def to_device(self, x: ArrayT, device: DeviceT | None) -> ArrayT:
        """``x`` on ``device`` (``x`` itself when it is there already or ``device`` is None)."""

    @abstractmethod
    def serialize_device(self, device: DeviceT | None) -> str | None:
        """A portable name for ``device`` (``"cpu"``, ``"cuda:0"``); None stays None."""

    @abstractmethod
    def deserialize_device(self, name: str | None) -> DeviceT | None:
        """The device called ``name`` (inverse of :meth:`serialize_device`)."""

    # ----------------------------------------------------------------- arrays
    def asarray(self, x: Any, dtype: Any = None, device: DeviceT | None = None) -> ArrayT:
        """Array of ``x`` (a scalar, nested list or array of this backend) with ``dtype``."""
        return self.xp.asarray(x, dtype=None if dtype is None else self.as_dtype(dtype), device=device)

    @abstractmethod
    def from_numpy(self, x: np.ndarray, dtype: Any = None, device: DeviceT | None = None) -> ArrayT:
        """Copy-free where possible conversion of a NumPy array (a JAX result is a copy)."""

    @abstractmethod
    def to_numpy(self, x: ArrayT) -> np.ndarray:
        """A NumPy array with the values of ``x`` (a view where the backend allows)."""

    def host_view(self, x: ArrayT) -> np.ndarray | None:
        """A NumPy array sharing ``x``'s memory (writes show through both), or None when there is none.

        Storages gather and scatter through it: NumPy's ``take`` has no thread pool to fight
        over on a small machine and a lower per-call cost than most backends' indexing.
        """
        return None

    def exact_host_conversions(self) -> tuple[Callable[[ArrayT], np.ndarray], Callable[[ArrayT], Any]] | None:
        """How the exact write path hands arrays of this backend to host (NumPy) storages.

        Returns ``(to_host, scalar_to_host)``: an array to a NumPy array with its values (a view
        where the backend allows), and a 0-d array to a value a NumPy array takes (a Python
        scalar); None when arrays are NumPy already. Either may raise ``TypeError``,
        ``ValueError`` or ``RuntimeError`` for an array it does not convert (on a device,
        requiring grad): such a value takes the detailed path. Resolved once per space.
        """
        return self.to_numpy, self.to_numpy

    def fresh_host_wrapper(
        self, dtype: np.dtype, device: DeviceT | None = None
    ) -> Callable[[np.ndarray], ArrayT] | None:
        """How a read hands over a fresh NumPy array of ``dtype``: a function, or None for the array itself.

        Fresh means owned by the caller, writable and with positive strides (a gather result), so
        a backend may wrap it without the checks of :meth:`from_numpy`. Storages resolve this once
        per leaf instead of once per read.
        """
        return functools.partial(self.from_numpy, device=device)

    def from_other_backend(self, x: Array, device: DeviceT | None = None) -> ArrayT:
        """Convert an array of any backend to this one (DLPack, copy fallback)."""
        from unibatch.backends.transfer import convert

        return convert(x, self, device)

    def map_fn_over_arrays(self, tree: Any, fn: Any) -> Any:
        """Apply ``fn`` to every array leaf of a nested dict/list/tuple; other leaves stay."""
        import optree

        return optree.tree_map(lambda leaf: fn(leaf) if self.is_backendarray(leaf) else leaf, tree, none_is_leaf=True)

    # ----------------------------------------------------------------- at[].set
    def at(self, x: ArrayT) -> _AtIndexer:
        """``backend.at(x)[idx].set(v)``: in place on NumPy/PyTorch (returns ``x``), functional on JAX."""
        return _AtIndexer(self, x)

    @abstractmethod
    def _at_set(self, x: ArrayT, index: Any, value: Any) -> ArrayT: ...

    # ----------------------------------------------------------------- RNG
    @abstractmethod
    def random_number_generator(self, seed: int | None = None, device: DeviceT | None = None) -> RNGT:
        """A new random state; ``seed=None`` draws a seed from the operating system."""

    @abstractmethod
    def rng_state(self, rng: RNGT) -> Any:
        """A picklable snapshot of ``rng`` (for checkpoints); :meth:`rng_from_state` restores it."""

    @abstractmethod
    def rng_from_state(self, state: Any, device: DeviceT | None = None) -> RNGT:
        """The random state saved by :meth:`rng_state`."""

    @abstractmethod
    def random_discrete_uniform(
        self, shape: Shape, low: int, high: int, *, rng: RNGT, dtype: Any = None, device: DeviceT | None = None
    ) -> tuple[RNGT, ArrayT]:
        """Integers drawn uniformly from ``[low, high)``; returns ``(new_rng, values)``."""

    def random_indices(self, n: int, size: int, *, rng: RNGT, device: DeviceT | None = None) -> tuple[RNGT, ArrayT]:
        """``size`` indices drawn uniformly from ``[0, n)`` with replacement (what samplers draw).

        Returns ``(new_rng, values)`` of :attr:`default_index_dtype`; a backend may use a faster
        method than :meth:`random_discrete_uniform` when its bias is negligible for any ``n`` a
        batch can have (below ``2**53``).
        """
        return self.random_discrete_uniform((size,), 0, n, rng=rng, dtype=self.default_index_dtype, device=device)

    @abstractmethod
    def random_uniform(
        self,
        shape: Shape,
        *,
        rng: RNGT,
        low: float = 0.0,
        high: float = 1.0,
        dtype: Any = None,
        device: DeviceT | None = None,
    ) -> tuple[RNGT, ArrayT]:
        """Floats drawn uniformly from ``[low, high)``; returns ``(new_rng, values)``."""

    @abstractmethod
    def random_normal(
        self,
        shape: Shape,
        *,
        rng: RNGT,
        mean: float = 0.0,
        std: float = 1.0,
        dtype: Any = None,
        device: DeviceT | None = None,
    ) -> tuple[RNGT, ArrayT]:
        """Normally distributed floats; returns ``(new_rng, values)``."""

    @abstractmethod
    def random_permutation(self, n: int, *, rng: RNGT, device: DeviceT | None = None) -> tuple[RNGT, ArrayT]:
        """A random permutation of ``range(n)`` (default index dtype); returns ``(new_rng, perm)``."""

    def clip(self, x: Any, low: int | float, high: int | float) -> Any:
        """``x`` limited to ``[low, high]`` (each backend's own clip: array-api-compat's wrapper costs 3x)."""
        return self.xp.clip(x, low, high)

    def cumulative_max(self, x: Any, axis: int) -> Any:
        """Running maximum along ``axis`` (not in the array API; each backend has its own)."""
        xp = self.xp
        size = x.shape[axis]
        moved = xp.moveaxis(x, axis, -1)
        positions = xp.arange(size, device=self.device(x))
        upto = positions[None, :] <= positions[:, None]  # (T, T): element j counts for position i
        low = xp.min(moved) if size else 0
        result = xp.max(xp.where(upto, moved[..., None, :], low), axis=-1)
        return xp.moveaxis(result, -1, axis)

    def random_exponential(
        self, shape: Shape, *, rng: RNGT, dtype: Any = None, device: DeviceT | None = None
    ) -> tuple[RNGT, ArrayT]:
        """Exponentially distributed floats (rate 1), from one uniform draw."""
        rng, uniform = self.random_uniform(shape, rng=rng, dtype=dtype, device=device)
        return rng, -self.xp.log1p(-self.xp.asarray(uniform))


class _AtIndexer:
    """``backend.at(x)[index]``; see :meth:`ComputeBackend.at`."""

    __slots__ = ("_backend", "_x")

    def __init__(self, backend: ComputeBackend, x: Array) -> None:
        self._backend = backend
        self._x = x

    def __getitem__(self, index: Any) -> _AtUpdate:
        return _AtUpdate(self._backend, self._x, index)


class _AtUpdate:
    __slots__ = ("_backend", "_index", "_x")

    def __init__(self, backend: ComputeBackend, x: Array, index: Any) -> None:
        self._backend = backend
        self._x = x
        self._index = index

    def set(self, value: Any) -> Array:
        """Write ``value`` at the index; returns the updated array (``x`` itself unless JAX)."""
        return self._backend._at_set(self._x, self._index, value)


# --------------------------------------------------------------------- dtype names
_NAME_CACHE: dict[Any, str] = {}


def dtype_to_name(dtype: Any) -> str:
    """Portable name of a dtype of any backend, a NumPy scalar type or a Python type."""
    if isinstance(dtype, str):
        return dtype
    try:
        return _NAME_CACHE[dtype]
    except (KeyError, TypeError):
        pass
    name = _dtype_to_name(dtype)
    with contextlib.suppress(TypeError):  # an unhashable dtype-like is not cached
        _NAME_CACHE[dtype] = name
    return name


def _dtype_to_name(dtype: Any) -> str:
    module = type(dtype).__module__
    if module.startswith("torch"):
        name = str(dtype).removeprefix("torch.")
    elif dtype is bool:
        name = "bool"
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError as error:
            raise UnknownNameError(f"not a dtype: {dtype!r}") from error
    return check_dtype_name(name)


def numpy_dtype_from_name(name: str) -> np.dtype:
    """NumPy dtype for a portable name; ``bfloat16`` comes from ml_dtypes when installed."""
    if name == "bfloat16":
        from unibatch._optional import require

        return np.dtype(require("ml_dtypes", "jax").bfloat16)
    check_dtype_name(name)
    return np.dtype(name)


def check_dtype_name(name: str) -> str:
    """``name`` if unibatch knows it, else :class:`UnknownNameError` listing the known names."""
    if name not in DTYPE_NAMES:
        raise UnknownNameError(f"unknown dtype name {name!r}; known: {', '.join(DTYPE_NAMES)}")
    return name


def check_shape_tuple(shape: Any, what: str = "shape") -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints, or a :class:`SpaceMismatchError`."""
    try:
        result = tuple(int(s) for s in shape)
    except TypeError as error:
        raise SpaceMismatchError(f"{what} must be a sequence of ints, got {shape!r}") from error
    if any(s < 0 for s in result):
        raise SpaceMismatchError(f"{what} must be non-negative, got {result}")
    return result
