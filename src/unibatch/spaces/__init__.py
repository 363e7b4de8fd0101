"""Spaces: what one sample looks like, and the function families that operate on them."""

from unibatch.spaces._space import Space as Space
from unibatch.spaces.batched import BatchedSpace as BatchedSpace
from unibatch.spaces.batching import batch_size as batch_size
from unibatch.spaces.batching import batch_size_data as batch_size_data
from unibatch.spaces.batching import batch_space as batch_space
from unibatch.spaces.batching import concatenate as concatenate
from unibatch.spaces.batching import get_at as get_at
from unibatch.spaces.batching import iterate as iterate
from unibatch.spaces.batching import set_at as set_at
from unibatch.spaces.binary import BinarySpace as BinarySpace
from unibatch.spaces.box import BoxSpace as BoxSpace
from unibatch.spaces.construct import construct_space_from_data as construct_space_from_data
from unibatch.spaces.dict import DictSpace as DictSpace
from unibatch.spaces.flattening import check_flat_values as check_flat_values
from unibatch.spaces.flattening import flat_dim as flat_dim
from unibatch.spaces.flattening import flat_dtype as flat_dtype
from unibatch.spaces.flattening import flatten_data as flatten_data
from unibatch.spaces.flattening import flatten_space as flatten_space
from unibatch.spaces.flattening import unflatten_data as unflatten_data
from unibatch.spaces.gymnasium import from_gymnasium_space as from_gymnasium_space
from unibatch.spaces.gymnasium import to_gymnasium_space as to_gymnasium_space
from unibatch.spaces.serialization import json_to_space as json_to_space
from unibatch.spaces.serialization import register_space_loader as register_space_loader
from unibatch.spaces.serialization import space_to_json as space_to_json
from unibatch.spaces.text import TextSpace as TextSpace
from unibatch.spaces.tuple import TupleSpace as TupleSpace
from unibatch.spaces.validation import check_data as check_data

__all__ = [
    "BatchedSpace",
    "BinarySpace",
    "BoxSpace",
    "DictSpace",
    "Space",
    "TextSpace",
    "TupleSpace",
    "batch_size",
    "batch_size_data",
    "batch_space",
    "check_data",
    "check_flat_values",
    "concatenate",
    "construct_space_from_data",
    "flat_dim",
    "flat_dtype",
    "flatten_data",
    "flatten_space",
    "from_gymnasium_space",
    "get_at",
    "iterate",
    "json_to_space",
    "register_space_loader",
    "set_at",
    "space_to_json",
    "to_gymnasium_space",
    "unflatten_data",
]
