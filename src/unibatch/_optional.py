"""Import optional dependencies on first use, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from unibatch.errors import MissingDependencyError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``unibatch[extra]``.

    Args:
        module: dotted module name, e.g. ``"h5py"``.
        extra: the optional-dependency group of unibatch that provides it, e.g. ``"hdf5"``.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{module!r} is required for this feature but is not installed; "
            f'install it with: pip install "unibatch[{extra}]"'
        ) from error
