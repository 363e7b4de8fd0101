"""Persistence of transformations by registered name: ``{"name", "configuration"}``.

Each contract case also round-trips its own transformation (``test_json_round_trip``); this
module covers every class in one place, nesting, the registry and bad payloads.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _transformation_contract import to_numpy

from unibatch.errors import SpaceMismatchError, UnknownNameError, UnsupportedOperationError
from unibatch.spaces import BoxSpace
from unibatch.transformations import (
    ChainedTransformation,
    CropTransformation,
    DataTransformation,
    DictExcludeTransformation,
    DictIncludeTransformation,
    DictTransformation,
    IdentityTransformation,
    ImageResizeTransformation,
    NormalizeTransformation,
    RescaleTransformation,
    json_to_transformation,
    register_transformation,
    transformation_to_json,
)

EXAMPLES = {
    "identity": IdentityTransformation(),
    "rescale": RescaleTransformation(np.array([0.0, -1.0]), 1.0, np.float32),
    "normalize": NormalizeTransformation([[0.5], [0.25]], 0.5, "float64"),
    "crop": CropTransformation([1, 2], [3, 4]),
    "image_resize": ImageResizeTransformation(64, 48, "CHW", "nearest"),
    "dict_include": DictIncludeTransformation(["image", ("obs", "state")]),
    "dict_exclude": DictExcludeTransformation([("obs", "velocity")]),
    "dict": DictTransformation({"image": RescaleTransformation(0.0, 1.0, "float32"), "obs": IdentityTransformation()}),
    "chain": ChainedTransformation(
        [
            DictIncludeTransformation(["image"]),
            DictTransformation(
                {"image": ChainedTransformation([CropTransformation([0], [2]), RescaleTransformation()])}
            ),
        ]
    ),
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_round_trip_through_json_text(name):
    transformation = EXAMPLES[name]
    payload = transformation_to_json(transformation)
    assert payload["name"] == name
    assert set(payload) == {"name", "configuration"}
    text = json.dumps(payload, allow_nan=False)
    assert "unibatch" not in text  # registered names, never import paths
    rebuilt = json_to_transformation(json.loads(text))
    assert type(rebuilt) is type(transformation)
    assert rebuilt == transformation
    assert transformation_to_json(rebuilt) == json.loads(text)


def test_every_registered_class_has_an_example():
    with pytest.raises(UnknownNameError, match="known: ") as error:
        json_to_transformation({"name": "no-such-transformation"})
    known = str(error.value).split("known: ")[1]
    assert known == repr(sorted(EXAMPLES))


def test_rebuilt_transformation_gives_the_same_output(backend):
    source = BoxSpace(backend, 0, 255, "uint8", shape=(2, 2))
    chain = ChainedTransformation([RescaleTransformation(0.0, 1.0, "float32"), NormalizeTransformation(0.5, 0.25)])
    rebuilt = json_to_transformation(json.loads(json.dumps(transformation_to_json(chain), allow_nan=False)))
    data = backend.from_numpy(np.array([[0, 51], [255, 102]], np.uint8))
    np.testing.assert_array_equal(to_numpy(rebuilt.transform(source, data)), to_numpy(chain.transform(source, data)))
    assert rebuilt.get_target_space_from_source(source) == chain.get_target_space_from_source(source)


def test_unknown_name_is_rejected():
    with pytest.raises(UnknownNameError, match=r"unknown transformation 'sharpen'; known: \['chain', ") as error:
        json_to_transformation({"name": "sharpen", "configuration": {}})
    assert isinstance(error.value, KeyError)


def test_unknown_nested_name_is_rejected():
    payload = transformation_to_json(ChainedTransformation([IdentityTransformation()]))
    payload["configuration"]["transformations"][0]["name"] = "sharpen"
    with pytest.raises(UnknownNameError, match="unknown transformation 'sharpen'"):
        json_to_transformation(payload)


@pytest.mark.parametrize(
    "payload", [[1], "rescale", {"configuration": {}}, None], ids=["list", "str", "no-name", "none"]
)
def test_payload_that_is_not_a_transformation_is_rejected(payload):
    with pytest.raises(SpaceMismatchError, match="not a serialized transformation"):
        json_to_transformation(payload)


def test_unregistered_class_cannot_be_serialized():
    class Unregistered(DataTransformation):
        def get_target_space_from_source(self, source_space):
            return source_space

        def transform(self, source_space, data):
            return data

    with pytest.raises(UnsupportedOperationError, match="Unregistered is not registered"):
        transformation_to_json(Unregistered())


def test_registered_name_cannot_be_taken_by_another_class():
    class Impostor(IdentityTransformation):
        pass

    with pytest.raises(ValueError, match="'rescale' is already registered by RescaleTransformation"):
        register_transformation("rescale")(Impostor)
    assert register_transformation("rescale")(RescaleTransformation) is RescaleTransformation
    assert json_to_transformation({"name": "rescale"}) == RescaleTransformation()


def test_equality_is_by_type_and_configuration():
    assert RescaleTransformation(0, 1) == RescaleTransformation(0.0, 1.0)
    assert RescaleTransformation(0, 1) != RescaleTransformation(0, 2)
    assert DictIncludeTransformation(["a"]) != DictExcludeTransformation(["a"])
    assert IdentityTransformation() != "identity"
    with pytest.raises(TypeError):
        hash(IdentityTransformation())


def test_inverses_built_from_numpy_bounds_are_json(backend):
    """Inverses carry the source bounds and dtype, as plain JSON values."""
    source = BoxSpace(backend, [0, 10], [255, 20], "uint8")
    inverse = RescaleTransformation(0.0, 1.0, "float32").direction_inverse(source)
    payload = json.loads(json.dumps(transformation_to_json(inverse), allow_nan=False))
    assert payload == {
        "name": "rescale",
        "configuration": {"new_low": [0, 10], "new_high": [255, 20], "new_dtype": "uint8"},
    }
