"""Type variables (declared once, with defaults) and the aliases the rest of unibatch uses.

Public generics such as ``BatchBase[BatchT, BArrayType, BDeviceType, BDtypeType, BRNGType]``
carry five parameters because the reference API shows them; all of them default to ``Any``
(PEP 696), so ``BatchBase[Obs]`` and a bare ``BatchBase`` both type-check. Internal helpers
use the plain ``Array``/``Device``/``DType``/``RNG`` aliases instead of type variables.
"""

from __future__ import annotations

from types import EllipsisType
from typing import Any, TypeAlias

from typing_extensions import TypeVar

BatchT = TypeVar("BatchT", default=Any)
EpisodeBatchT = TypeVar("EpisodeBatchT", default=Any)
BArrayType = TypeVar("BArrayType", default=Any)
BDeviceType = TypeVar("BDeviceType", default=Any)
BDtypeType = TypeVar("BDtypeType", default=Any)
BRNGType = TypeVar("BRNGType", default=Any)

SamplerBatchT = TypeVar("SamplerBatchT", default=Any)
SamplerArrayType = TypeVar("SamplerArrayType", default=Any)
SamplerDeviceType = TypeVar("SamplerDeviceType", default=Any)
SamplerDtypeType = TypeVar("SamplerDtypeType", default=Any)
SamplerRNGType = TypeVar("SamplerRNGType", default=Any)

WrapperBatchT = TypeVar("WrapperBatchT", default=Any)
WrapperBArrayT = TypeVar("WrapperBArrayT", default=Any)
WrapperBDeviceT = TypeVar("WrapperBDeviceT", default=Any)
WrapperBDtypeT = TypeVar("WrapperBDtypeT", default=Any)
WrapperBRngT = TypeVar("WrapperBRngT", default=Any)

Array: TypeAlias = Any
"""An array of any supported backend (``np.ndarray``, ``torch.Tensor``, ``jax.Array``)."""
Device: TypeAlias = Any
"""A backend device object (``"cpu"`` for NumPy, ``torch.device``, ``jax.Device``)."""
DType: TypeAlias = Any
"""A backend dtype object (``np.dtype``, ``torch.dtype``, a JAX/NumPy dtype)."""
RNG: TypeAlias = Any
"""A backend random state (``np.random.Generator``, ``torch.Generator``, a JAX key)."""

IndexableType: TypeAlias = int | slice | EllipsisType
"""The non-array index forms every batch accepts; 1-D integer/boolean arrays are accepted too."""

__all__ = [
    "RNG",
    "Array",
    "BArrayType",
    "BDeviceType",
    "BDtypeType",
    "BRNGType",
    "BatchT",
    "DType",
    "Device",
    "EpisodeBatchT",
    "IndexableType",
    "SamplerArrayType",
    "SamplerBatchT",
    "SamplerDeviceType",
    "SamplerDtypeType",
    "SamplerRNGType",
    "WrapperBArrayT",
    "WrapperBDeviceT",
    "WrapperBDtypeT",
    "WrapperBRngT",
    "WrapperBatchT",
]
