"""Every class, method, parameter name and default of the reference page, checked against ``inspect.signature``.

``api-reference.txt`` next to this file is a copy of the ``unienv_data`` API page (the text of
its HTML rendering). Code written against that page must run on unibatch by changing imports
only, so for every entry of the page:

* a class is exported by ``unibatch`` and is subscriptable with as many type parameters as its
  ``Bases:`` line declares;
* a module attribute (the type variables, ``IndexableType``) is exported by ``unibatch``;
* a constructor or method accepts the page's parameters: the same positional parameters in the
  same order, the same keyword-only names, the same defaults, ``*args``/``**kwargs`` where the
  page has them. unibatch may add parameters after them, with defaults (``reuse_outputs``, ...);
* a property is a property, a static or class method is one.

Annotations are not compared (the page's are partly wrong, see ``spec/semantics.md`` §6.2).
Deliberate differences are listed in :data:`ALLOWED` with the DESIGN.md line that records them.
"""

from __future__ import annotations

import ast
import inspect
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import unibatch

PAGE = Path(__file__).with_name("api-reference.txt")

LABELS = {
    "module-attribute",
    "class-attribute",
    "instance-attribute",
    "property",
    "writable",
    "classmethod",
    "staticmethod",
    "abstractmethod",
}
HEADING = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?P<labels>(?: [a-z-]+)*)$")

ALLOWED: dict[tuple[str, str], str] = {
    # (class, member): the DESIGN.md line that records the difference. Empty: none today.
}


@dataclass
class Entry:
    """One heading of the page: a class, or a member of the class above it."""

    name: str
    labels: set[str]
    code: str  # the line that follows the heading: a signature, ``name: type`` or ``name = value``
    owner: str | None = None  # the class a member belongs to
    bases: str | None = None  # a class's ``Bases:`` line


@dataclass
class Page:
    module_attributes: list[Entry] = field(default_factory=list)
    classes: dict[str, Entry] = field(default_factory=dict)
    members: list[Entry] = field(default_factory=list)


def parse_page(text: str) -> Page:
    """The entries of the page: a heading line (a name and labels) followed by a code line that starts with the name."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    page, owner = Page(), None
    for position, line in enumerate(lines[:-1]):
        heading = HEADING.match(line)
        if heading is None:
            continue
        name, labels = heading["name"], set(heading["labels"].split())
        code = lines[position + 1]
        if not labels <= LABELS or not re.match(rf"^{re.escape(name)}\s*(\(|:|=)", code):
            continue  # prose, not an entry
        entry = Entry(name, labels, code)
        following = lines[position + 2] if position + 2 < len(lines) else ""
        if "module-attribute" in labels:
            page.module_attributes.append(entry)
        elif following.startswith("Bases:"):
            entry.bases = following.removeprefix("Bases:").strip()
            page.classes[name] = entry
            owner = name
        elif owner is not None:
            entry.owner = owner
            page.members.append(entry)
    return page


def page_parameters(code: str) -> list[inspect.Parameter]:
    """The parameters of a signature line of the page (``name(params) -> ret``), ``self`` excluded."""
    name, rest = code.split("(", 1)
    tree = ast.parse(f"def {name.strip()}({rest}: pass")
    arguments = tree.body[0].args  # type: ignore[attr-defined]
    kinds = inspect.Parameter
    parameters: list[inspect.Parameter] = []
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults = [inspect.Parameter.empty] * (len(positional) - len(arguments.defaults)) + [
        ast.literal_eval(d) for d in arguments.defaults
    ]
    for argument, default in zip(positional, defaults, strict=True):
        parameters.append(inspect.Parameter(argument.arg, kinds.POSITIONAL_OR_KEYWORD, default=default))
    if arguments.vararg is not None:
        parameters.append(inspect.Parameter(arguments.vararg.arg, kinds.VAR_POSITIONAL))
    for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        value = inspect.Parameter.empty if default is None else ast.literal_eval(default)
        parameters.append(inspect.Parameter(argument.arg, kinds.KEYWORD_ONLY, default=value))
    if arguments.kwarg is not None:
        parameters.append(inspect.Parameter(arguments.kwarg.arg, kinds.VAR_KEYWORD))
    return parameters


def actual_parameters(cls: type, member: str | None) -> list[inspect.Parameter]:
    """unibatch's parameters of ``cls(...)`` or ``cls.member(...)``, without ``self``/``cls``."""
    if member is None:
        return list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    raw = inspect.getattr_static(cls, member)
    if isinstance(raw, (staticmethod, classmethod)):
        return list(inspect.signature(getattr(cls, member)).parameters.values())
    return list(inspect.signature(raw).parameters.values())[1:]


def differences(expected: list[inspect.Parameter], actual: list[inspect.Parameter]) -> list[str]:
    """What code written against ``expected`` would find missing or changed in ``actual``."""
    kinds = inspect.Parameter
    problems = []
    by_name = {p.name: p for p in actual}
    expected_positional = [p for p in expected if p.kind == kinds.POSITIONAL_OR_KEYWORD]
    actual_positional = [p for p in actual if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
    got = [p.name for p in actual_positional[: len(expected_positional)]]
    if got != [p.name for p in expected_positional]:
        problems.append(f"positional parameters {[p.name for p in expected_positional]}, got {got}")
    for parameter in expected:
        if parameter.kind in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD):
            if not any(p.kind == parameter.kind for p in actual):
                problems.append(f"{parameter} missing")
            continue
        found = by_name.get(parameter.name)
        if found is None:
            if parameter.kind == kinds.KEYWORD_ONLY and any(p.kind == kinds.VAR_KEYWORD for p in actual):
                problems.append(f"keyword {parameter.name!r} only reaches **kwargs")
            else:
                problems.append(f"parameter {parameter.name!r} missing")
        elif found.kind == kinds.POSITIONAL_ONLY:
            problems.append(f"parameter {parameter.name!r} is positional-only")
        elif found.kind in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD):
            problems.append(f"parameter {parameter.name!r} is {found}")
        elif not _same_default(found.default, parameter.default):
            problems.append(f"parameter {parameter.name!r}: default {parameter.default!r}, got {found.default!r}")
    page_names = {p.name for p in expected}
    for parameter in actual:
        extra = parameter.name not in page_names and parameter.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)
        if extra and parameter.default is inspect.Parameter.empty:
            problems.append(f"extra parameter {parameter.name!r} without a default")
    return problems


def _same_default(actual: Any, expected: Any) -> bool:
    """Defaults equal by value (``Parameter.empty`` for none)."""
    try:
        return bool(actual == expected)
    except Exception:  # noqa: BLE001
        return False


def type_parameter_count(bases: str) -> int:
    """The number of type parameters a ``Bases:`` line declares (``Generic[...]``, else the one generic base)."""
    generic = re.search(r"Generic\[([^\]]*)\]", bases)
    if generic is not None:
        return len(generic.group(1).split(","))
    names = set(re.findall(r"\b[A-Z]\w*(?:T|Type)\b", bases))  # the type variables of the base, once each
    return len(names)


PARSED = parse_page(PAGE.read_text(encoding="utf-8"))
MEMBERS = [entry for entry in PARSED.members if "(" in entry.code.split(":")[0].split("=")[0]]
PROPERTIES = [entry for entry in PARSED.members if "property" in entry.labels]


def test_the_page_parses_into_every_class_and_member():
    assert len(PARSED.classes) >= 14, sorted(PARSED.classes)
    assert len(PARSED.module_attributes) >= 7
    assert len(MEMBERS) >= 250 and len(PROPERTIES) >= 40
    assert {"ReplayBuffer", "TrajectoryReplayBuffer", "MultiprocessingSampler", "SliceStackedBatch"} <= set(
        PARSED.classes
    )
    assert any(entry.owner == "SliceStackedBatch" and entry.name == "fill_data_with_stack_mask" for entry in MEMBERS)


@pytest.mark.parametrize("entry", PARSED.module_attributes, ids=lambda entry: entry.name)
def test_module_attribute_is_exported(entry):
    value = getattr(unibatch, entry.name)
    assert entry.name in unibatch.__all__
    if "TypeVar(" in entry.code:
        assert isinstance(value, typing.TypeVar) and value.__name__ == entry.name


@pytest.mark.parametrize("entry", list(PARSED.classes.values()), ids=lambda entry: entry.name)
def test_class_signature_and_type_parameters(entry):
    cls = getattr(unibatch, entry.name)
    problems = differences(page_parameters(entry.code), actual_parameters(cls, None))
    assert not problems or ALLOWED.get((entry.name, "__init__")), problems
    count = type_parameter_count(entry.bases or "")
    assert len(cls.__parameters__) == count, (cls.__parameters__, entry.bases)
    assert cls[(Any,) * count] is not None  # ``ReplayBuffer[Any, ...]`` as the original tests write it


@pytest.mark.parametrize("entry", MEMBERS, ids=lambda entry: f"{entry.owner}.{entry.name}")
def test_method_signature(entry):
    cls = getattr(unibatch, entry.owner)
    raw = inspect.getattr_static(cls, entry.name)
    for label, kind in (("staticmethod", staticmethod), ("classmethod", classmethod)):
        if label in entry.labels:
            assert isinstance(raw, kind), f"{entry.owner}.{entry.name} is not a {label}"
    problems = differences(page_parameters(entry.code), actual_parameters(cls, entry.name))
    assert not problems or ALLOWED.get((entry.owner, entry.name)), problems  # type: ignore[arg-type]


@pytest.mark.parametrize("entry", PROPERTIES, ids=lambda entry: f"{entry.owner}.{entry.name}")
def test_property(entry):
    raw = inspect.getattr_static(getattr(unibatch, entry.owner), entry.name)
    assert isinstance(raw, property), f"{entry.owner}.{entry.name} is {raw!r}"
    if "writable" in entry.labels:
        assert raw.fset is not None, f"{entry.owner}.{entry.name} is not writable"


ORIGINAL_ONLY = {
    # Parameters of the original at the page's version that the page omits (spec/semantics.md §6.2).
    ("ReplayBuffer", "load_from"): ("single_instance_space",),
    ("TrajectoryReplayBuffer", "load_from"): ("step_data_single_instance_space", "episode_data_single_instance_space"),
    ("CombinedBatch", None): ("use_thread_pool",),
}


@pytest.mark.parametrize(("owner", "member"), list(ORIGINAL_ONLY), ids=str)
def test_parameters_of_the_original_that_the_page_omits(owner, member):
    parameters = {p.name: p for p in actual_parameters(getattr(unibatch, owner), member)}
    for name in ORIGINAL_ONLY[(owner, member)]:
        assert name in parameters and parameters[name].default in (None, False), (owner, member, name)


def test_the_checks_catch_a_renamed_parameter_and_a_changed_default():
    page = page_parameters("get_valid_mask(expanded_idx: BArrayType, data: BatchT, metadata: Dict[str, Any]) -> X")

    def renamed(self, frames, data, metadata): ...
    def defaulted(self, expanded_idx, data, metadata=None, *, extra): ...

    kept = list(inspect.signature(renamed).parameters.values())[1:]
    assert differences(page, kept) == [
        "positional parameters ['expanded_idx', 'data', 'metadata'], got ['frames', 'data', 'metadata']",
        "parameter 'expanded_idx' missing",
        "extra parameter 'frames' without a default",
    ]
    changed = list(inspect.signature(defaulted).parameters.values())[1:]
    assert differences(page, changed) == [
        "parameter 'metadata': default <class 'inspect._empty'>, got None",
        "extra parameter 'extra' without a default",
    ]
    assert type_parameter_count("BatchBase[TrajectoryData[BatchT, EpisodeBatchT], BArrayType], Generic[A, B]") == 2
