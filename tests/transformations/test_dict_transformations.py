"""DictIncludeTransformation, DictExcludeTransformation (key paths) and DictTransformation (per key)."""

from __future__ import annotations

import numpy as np
import pytest
from _transformation_contract import Case, InvertibleContract, NonInvertibleContract, tree_to_backend

from unibatch.errors import SpaceMismatchError
from unibatch.spaces import BinarySpace, BoxSpace, DictSpace
from unibatch.transformations import (
    CropTransformation,
    DictExcludeTransformation,
    DictIncludeTransformation,
    DictTransformation,
    IdentityTransformation,
    NormalizeTransformation,
    RescaleTransformation,
)

# Leaf shapes and dtypes are those of test_rescale/test_normalize: JAX reuses their compilations.
_MEAN, _STD = [1.0, 2.0, 0.0], [2.0, 4.0, 0.5]


def observation_space(backend):
    return DictSpace(
        backend,
        {
            "obs": {"a": BoxSpace(backend, -10.0, 10.0, "float32", shape=(3,)), "b": BinarySpace(backend, (1,))},
            "done": BinarySpace(backend),
            "img": BoxSpace(backend, 0, 255, "uint8", shape=(2, 2)),
        },
    )


def observation_samples():
    return [
        {
            "obs": {"a": np.array([3.0, 2.0, 0.25], np.float32), "b": np.array([True])},
            "done": np.array(False),
            "img": np.array([[0, 51], [255, 102]], np.uint8),
        },
        {
            "obs": {"a": np.array([-10.0, 10.0, 10.0], np.float32), "b": np.array([False])},
            "done": np.array(True),
            "img": np.array([[17, 200], [1, 254]], np.uint8),
        },
    ]


class TestIncludeKeysAndNestedPaths(NonInvertibleContract):
    def make_case(self, backend):
        space = observation_space(backend)
        samples = observation_samples()
        expected = [{"obs": {"a": s["obs"]["a"]}, "img": s["img"]} for s in samples]
        target = DictSpace(backend, {"obs": {"a": space["obs"]["a"]}, "img": space["img"]})
        return Case(DictIncludeTransformation([("obs", "a"), "img"]), space, samples, expected, target=target)


class TestExcludeKeysAndNestedPaths(NonInvertibleContract):
    def make_case(self, backend):
        space = observation_space(backend)
        samples = observation_samples()
        expected = [{"obs": {"a": s["obs"]["a"]}, "img": s["img"]} for s in samples]
        target = DictSpace(backend, {"obs": {"a": space["obs"]["a"]}, "img": space["img"]})
        return Case(DictExcludeTransformation([("obs", "b"), "done"]), space, samples, expected, target=target)


class TestPerKeyTransformations(InvertibleContract):
    """``img`` rescaled, ``obs`` by a nested DictTransformation (``a`` normalised), ``done`` as is."""

    def make_case(self, backend):
        space = observation_space(backend)
        samples = observation_samples()
        t = DictTransformation(
            {
                "img": RescaleTransformation(0.0, 1.0, "float32"),
                "obs": DictTransformation({"a": NormalizeTransformation(_MEAN, _STD)}),
            }
        )
        expected = [
            {
                "obs": {"a": ((s["obs"]["a"] - np.array(_MEAN)) / _STD).astype(np.float32), "b": s["obs"]["b"]},
                "done": s["done"],
                "img": (s["img"] / 255.0).astype(np.float32),
            }
            for s in samples
        ]
        target = DictSpace(
            backend,
            {
                "obs": {
                    "a": BoxSpace(backend, [-5.5, -3.0, -20.0], [4.5, 2.0, 20.0], "float32"),
                    "b": BinarySpace(backend, (1,)),
                },
                "done": BinarySpace(backend),
                "img": BoxSpace(backend, 0.0, 1.0, "float32", shape=(2, 2)),
            },
        )
        return Case(t, space, samples, expected, target=target)


class TestPerKeyNonInvertible(NonInvertibleContract):
    def make_case(self, backend):
        space = observation_space(backend)
        samples = observation_samples()
        t = DictTransformation({"img": CropTransformation([0], [1]), "done": IdentityTransformation()})
        expected = [{**s, "img": s["img"][:, :1]} for s in samples]
        return Case(t, space, samples, expected)


# ---------------------------------------------------------------------- selection specifics
@pytest.mark.parametrize(
    ("transformation", "expected_keys"),
    [
        (DictIncludeTransformation(["obs"]), {"obs": {"a", "b"}}),
        (DictIncludeTransformation([("obs", "b")]), {"obs": {"b"}}),
        (DictIncludeTransformation([("obs", "a"), "obs"]), {"obs": {"a", "b"}}),  # the whole key wins
        (DictIncludeTransformation(["done", "img"]), {"done": None, "img": None}),
        (DictExcludeTransformation(["obs"]), {"done": None, "img": None}),
        (DictExcludeTransformation([("obs", "a")]), {"done": None, "img": None, "obs": {"b"}}),
        (DictExcludeTransformation([("obs", "a"), "obs"]), {"done": None, "img": None}),
    ],
    ids=repr,
)
def test_selected_keys(backend, transformation, expected_keys):
    space = observation_space(backend)
    target = transformation.get_target_space_from_source(space)
    got = {key: set(sub.keys()) if isinstance(sub, DictSpace) else None for key, sub in target.items()}
    assert got == expected_keys
    data = tree_to_backend(backend, observation_samples()[0])
    result = transformation.transform(space, data)
    assert result in target
    assert {key: set(value) if isinstance(value, dict) else None for key, value in result.items()} == expected_keys


def test_selection_config_normalises_keys_to_paths():
    t = DictIncludeTransformation(["img", ("obs", "a")])
    assert t.config() == {"keys": [["img"], ["obs", "a"]]}
    assert DictIncludeTransformation(**t.config()) == t
    assert DictIncludeTransformation(["img"]) != DictExcludeTransformation(["img"])


@pytest.mark.parametrize("cls", [DictIncludeTransformation, DictExcludeTransformation])
@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["nope"], r"key 'nope' is not in \['done', 'img', 'obs'\]"),
        ([("obs", "c")], r"key 'obs/c' is not in \['a', 'b'\]"),
        ([("img", "c")], r"key path img transforms a DictSpace, got BoxSpace"),
    ],
    ids=["unknown-key", "unknown-nested-key", "path-into-a-box"],
)
def test_unknown_keys_are_rejected(backend, cls, keys, message):
    space = observation_space(backend)
    t = cls(keys)
    with pytest.raises(SpaceMismatchError, match=message):
        t.get_target_space_from_source(space)
    with pytest.raises(SpaceMismatchError, match=message):
        t.transform(space, tree_to_backend(backend, observation_samples()[0]))


@pytest.mark.parametrize("keys", [[], [()], [("obs", 3)], [3]], ids=["no-keys", "empty-path", "int-in-path", "int-key"])
def test_bad_key_lists_are_rejected(keys):
    with pytest.raises(SpaceMismatchError, match="expected a non-empty list of keys or key paths"):
        DictIncludeTransformation(keys)


@pytest.mark.parametrize(
    ("transformation", "name"),
    [
        (DictIncludeTransformation(["a"]), "DictIncludeTransformation"),
        (DictExcludeTransformation(["a"]), "DictExcludeTransformation"),
        (DictTransformation({"a": IdentityTransformation()}), "DictTransformation"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_wrong_space_type_is_rejected(backend, transformation, name):
    box = BoxSpace(backend, 0.0, 1.0, "float32", shape=(2,))
    with pytest.raises(SpaceMismatchError, match=rf"{name} transforms a DictSpace, got BoxSpace"):
        transformation.get_target_space_from_source(box)
    with pytest.raises(SpaceMismatchError, match=rf"{name} transforms a DictSpace, got BoxSpace"):
        transformation.transform(box, backend.from_numpy(np.zeros(2, np.float32)))


# ---------------------------------------------------------------------- per-key specifics
def test_per_key_unknown_key_is_rejected(backend):
    space = observation_space(backend)
    t = DictTransformation({"zz": IdentityTransformation(), "img": IdentityTransformation()})
    with pytest.raises(
        SpaceMismatchError, match=r"DictTransformation keys \['zz'\] are not in \['done', 'img', 'obs'\]"
    ):
        t.get_target_space_from_source(space)
    with pytest.raises(SpaceMismatchError, match=r"keys \['zz'\] are not in"):
        t.transform(space, tree_to_backend(backend, observation_samples()[0]))
    with pytest.raises(SpaceMismatchError, match=r"keys \['zz'\] are not in"):
        t.direction_inverse(space)


def test_per_key_inverse_needs_the_source_space():
    with pytest.raises(SpaceMismatchError, match="needs the source space"):
        DictTransformation({"a": IdentityTransformation()}).direction_inverse()


def test_per_key_has_inverse_follows_its_steps():
    assert DictTransformation({"a": IdentityTransformation(), "b": RescaleTransformation()}).has_inverse
    assert not DictTransformation({"a": IdentityTransformation(), "b": CropTransformation([0], [1])}).has_inverse


def test_per_key_batch_space_target(backend):
    """Per-key targets of a batched DictSpace are the batched per-key targets."""
    from unibatch.spaces import batch_space

    space = observation_space(backend)
    t = DictTransformation({"img": RescaleTransformation(0.0, 1.0, "float32")})
    target = t.get_target_space_from_source(batch_space(space, 4))
    assert target["img"] == BoxSpace(backend, 0.0, 1.0, "float32", shape=(4, 2, 2))
    assert target["done"] == BinarySpace(backend, (4,))
