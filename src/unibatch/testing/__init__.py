"""Testing helpers for unibatch: hypothesis strategies for spaces and their values.

Importing this package imports :mod:`hypothesis`; it is meant for test suites only.
"""

from unibatch.testing.strategies import BOX_DTYPES as BOX_DTYPES
from unibatch.testing.strategies import FLOAT_DTYPES as FLOAT_DTYPES
from unibatch.testing.strategies import INTEGER_DTYPES as INTEGER_DTYPES
from unibatch.testing.strategies import LEAF_KINDS as LEAF_KINDS
from unibatch.testing.strategies import binary_spaces as binary_spaces
from unibatch.testing.strategies import box_spaces as box_spaces
from unibatch.testing.strategies import charsets as charsets
from unibatch.testing.strategies import dict_keys as dict_keys
from unibatch.testing.strategies import flattenable_spaces as flattenable_spaces
from unibatch.testing.strategies import leaf_spaces as leaf_spaces
from unibatch.testing.strategies import sample_lists as sample_lists
from unibatch.testing.strategies import samples as samples
from unibatch.testing.strategies import seeds as seeds
from unibatch.testing.strategies import shapes as shapes
from unibatch.testing.strategies import spaces as spaces
from unibatch.testing.strategies import text_spaces as text_spaces

__all__ = [
    "BOX_DTYPES",
    "FLOAT_DTYPES",
    "INTEGER_DTYPES",
    "LEAF_KINDS",
    "binary_spaces",
    "box_spaces",
    "charsets",
    "dict_keys",
    "flattenable_spaces",
    "leaf_spaces",
    "sample_lists",
    "samples",
    "seeds",
    "shapes",
    "spaces",
    "text_spaces",
]
