"""Index normalisation for batches: the shared normaliser of :mod:`unibatch.backends._indexing`.

Batches and storages normalise through one module (DESIGN.md decision 1); this module is the
batches' door to it.
"""

from __future__ import annotations

from unibatch.backends._indexing import NormalizedIndex as NormalizedIndex
from unibatch.backends._indexing import index_length as index_length
from unibatch.backends._indexing import is_single as is_single
from unibatch.backends._indexing import normalize_index as normalize_index

__all__ = ["NormalizedIndex", "index_length", "is_single", "normalize_index"]
