"""The PyTorch backend; imported only when a tensor or the name ``"pytorch"`` is used."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, final

import array_api_compat.torch as _xp
import numpy as np
import torch

from unibatch.backends._base import ComputeBackend, Shape, check_dtype_name, dtype_to_name
from unibatch.errors import UnknownNameError


@final
class PyTorchBackend(ComputeBackend[torch.Tensor, torch.device, torch.dtype, torch.Generator]):
    """PyTorch through ``array_api_compat.torch``; RNG is a ``torch.Generator`` on the device."""

    simplified_name = "pytorch"

    @property
    def xp(self) -> Any:
        return _xp

    @property
    def array_type(self) -> type:
        return torch.Tensor

    @property
    def default_integer_dtype(self) -> torch.dtype:
        return torch.int64

    @property
    def default_floating_dtype(self) -> torch.dtype:
        return torch.get_default_dtype()

    def dtype_from_name(self, name: str) -> torch.dtype:
        dtype = getattr(torch, check_dtype_name(name), None)
        if not isinstance(dtype, torch.dtype):
            raise UnknownNameError(f"PyTorch has no dtype {name!r}")
        return dtype

    def dtype_name(self, dtype: torch.dtype) -> str:
        return dtype_to_name(dtype)

    @property
    def default_device(self) -> torch.device:
        return torch.get_default_device()

    def to_device(self, x: torch.Tensor, device: Any) -> torch.Tensor:
        if device is None:
            return x
        return x.to(torch.device(device))

    def serialize_device(self, device: Any) -> str | None:
        return None if device is None else str(torch.device(device))

    def deserialize_device(self, name: str | None) -> torch.device | None:
        if name is None:
            return None
        try:
            return torch.device(name)
        except RuntimeError as error:
            raise UnknownNameError(f"PyTorch has no device {name!r}") from error

    def asarray(self, x: Any, dtype: Any = None, device: Any = None) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            return self.from_numpy(x, dtype=dtype, device=device)
        return torch.as_tensor(x, dtype=None if dtype is None else self.as_dtype(dtype), device=device)

    def from_numpy(self, x: np.ndarray, dtype: Any = None, device: Any = None) -> torch.Tensor:
        x = np.asarray(x)
        name = dtype_to_name(x.dtype)
        if name == "bfloat16":
            tensor = torch.from_numpy(np.array(x.view(np.int16))).view(torch.bfloat16)
        elif not x.flags.writeable or any(stride < 0 for stride in x.strides):
            tensor = torch.from_numpy(np.array(x))  # torch cannot share read-only or reversed memory
        else:
            tensor = torch.from_numpy(x)
        if dtype is not None:
            tensor = tensor.to(self.as_dtype(dtype))
        return self.to_device(tensor, device)

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        try:
            return x.numpy()  # a plain CPU tensor (the common case): no attribute checks first
        except (RuntimeError, TypeError):  # needs grad, not on the CPU, or bfloat16
            pass
        if x.requires_grad or x.device.type != "cpu":  # detach/cpu cost a new tensor object each: only when needed
            x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            return x.view(torch.int16).numpy().view(self.numpy_dtype("bfloat16"))
        return x.numpy()

    def host_view(self, x: torch.Tensor) -> np.ndarray | None:
        try:
            return x.numpy()  # shares memory; raises for tensors that need grad, live on a device or are bfloat16
        except (RuntimeError, TypeError):
            return None

    def exact_host_conversions(self) -> tuple[Callable[[torch.Tensor], np.ndarray], Callable[[torch.Tensor], Any]]:
        # Tensor.numpy raises for a tensor on a device, requiring grad or bfloat16; Tensor.item is
        # 4x cheaper than a 0-d view. Neither checks more than that: the exact path did.
        return torch.Tensor.numpy, torch.Tensor.item

    def fresh_host_wrapper(self, dtype: np.dtype, device: Any = None) -> Any:
        if dtype_to_name(dtype) == "bfloat16" or torch.device("cpu" if device is None else device).type != "cpu":
            return functools.partial(self.from_numpy, device=device)
        return torch.from_numpy  # shares the fresh array's memory: no copy, no checks

    def _at_set(self, x: torch.Tensor, index: Any, value: Any) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            value = self.asarray(value, dtype=x.dtype, device=x.device)
        x[index] = value
        return x

    def clip(self, x: torch.Tensor, low: int | float, high: int | float) -> torch.Tensor:
        return torch.clamp(x, low, high)

    def cumulative_max(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.cummax(x, dim=axis).values

    def random_number_generator(self, seed: int | None = None, device: Any = None) -> torch.Generator:
        generator = torch.Generator(device=torch.device("cpu" if device is None else device))
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        return generator

    def rng_state(self, rng: torch.Generator) -> Any:
        return {"device": str(rng.device), "state": rng.get_state().numpy().copy()}

    def rng_from_state(self, state: Any, device: Any = None) -> torch.Generator:
        generator = torch.Generator(device=torch.device(device if device is not None else state["device"]))
        generator.set_state(torch.from_numpy(np.array(state["state"], dtype=np.uint8)))
        return generator

    def random_discrete_uniform(
        self, shape: Shape, low: int, high: int, *, rng: torch.Generator, dtype: Any = None, device: Any = None
    ) -> tuple[torch.Generator, torch.Tensor]:
        dtype = self.default_integer_dtype if dtype is None else self.as_dtype(dtype)
        value = torch.randint(int(low), int(high), tuple(shape), generator=rng, dtype=dtype, device=rng.device)
        return rng, self.to_device(value, device)

    def random_indices(
        self, n: int, size: int, *, rng: torch.Generator, device: Any = None
    ) -> tuple[torch.Generator, torch.Tensor]:
        value = torch.randint(n, (size,), generator=rng, device=rng.device)  # int64, the index dtype
        return rng, value if device is None else self.to_device(value, device)

    def random_uniform(
        self,
        shape: Shape,
        *,
        rng: torch.Generator,
        low: float = 0.0,
        high: float = 1.0,
        dtype: Any = None,
        device: Any = None,
    ) -> tuple[torch.Generator, torch.Tensor]:
        dtype = self.default_floating_dtype if dtype is None else self.as_dtype(dtype)
        value = torch.rand(tuple(shape), generator=rng, dtype=dtype, device=rng.device)
        return rng, self.to_device(value * (high - low) + low, device)

    def random_normal(
        self,
        shape: Shape,
        *,
        rng: torch.Generator,
        mean: float = 0.0,
        std: float = 1.0,
        dtype: Any = None,
        device: Any = None,
    ) -> tuple[torch.Generator, torch.Tensor]:
        dtype = self.default_floating_dtype if dtype is None else self.as_dtype(dtype)
        value = torch.randn(tuple(shape), generator=rng, dtype=dtype, device=rng.device)
        return rng, self.to_device(value * std + mean, device)

    def random_permutation(
        self, n: int, *, rng: torch.Generator, device: Any = None
    ) -> tuple[torch.Generator, torch.Tensor]:
        value = torch.randperm(int(n), generator=rng, device=rng.device)
        return rng, self.to_device(value, device)


PyTorchComputeBackend = PyTorchBackend()
"""The PyTorch backend singleton."""
