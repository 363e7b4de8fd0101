"""Transformations between spaces: rescale, normalize, crop, resize, dict selection, chains."""

from unibatch.transformations._base import DataTransformation as DataTransformation
from unibatch.transformations._base import json_to_transformation as json_to_transformation
from unibatch.transformations._base import register_transformation as register_transformation
from unibatch.transformations._base import transformation_to_json as transformation_to_json
from unibatch.transformations.chain import ChainedTransformation as ChainedTransformation
from unibatch.transformations.crop import CropTransformation as CropTransformation
from unibatch.transformations.dict import DictExcludeTransformation as DictExcludeTransformation
from unibatch.transformations.dict import DictIncludeTransformation as DictIncludeTransformation
from unibatch.transformations.dict import DictTransformation as DictTransformation
from unibatch.transformations.identity import IdentityTransformation as IdentityTransformation
from unibatch.transformations.normalize import NormalizeTransformation as NormalizeTransformation
from unibatch.transformations.rescale import RescaleTransformation as RescaleTransformation
from unibatch.transformations.resize import ImageResizeTransformation as ImageResizeTransformation

__all__ = [
    "ChainedTransformation",
    "CropTransformation",
    "DataTransformation",
    "DictExcludeTransformation",
    "DictIncludeTransformation",
    "DictTransformation",
    "IdentityTransformation",
    "ImageResizeTransformation",
    "NormalizeTransformation",
    "RescaleTransformation",
    "json_to_transformation",
    "register_transformation",
    "transformation_to_json",
]
