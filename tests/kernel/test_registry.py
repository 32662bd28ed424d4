"""Name -> class registries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privaudit.errors import ConflictError, NotFoundError, ParameterError
from privaudit.registry import Registry, attacks, mechanisms, report_formats


def test_register_get_and_list() -> None:
    registry: Registry[type] = Registry("widget")

    @registry.register("round-one")
    class RoundOne:
        pass

    assert registry.get("round-one") is RoundOne
    assert "round-one" in registry
    assert registry.names() == ["round-one"]
    assert len(registry) == 1


def test_unknown_name_suggests_the_close_one() -> None:
    registry: Registry[int] = Registry("widget")
    registry.add("laplace", 1)
    with pytest.raises(NotFoundError, match=r"did you mean 'laplace'\?"):
        registry.get("laplce")


def test_taking_a_name_twice_is_a_conflict_unless_replacing() -> None:
    registry: Registry[int] = Registry("widget")
    registry.add("x", 1)
    registry.add("x", 1)  # the same object again is harmless
    with pytest.raises(ConflictError):
        registry.add("x", 2)
    registry.add("x", 2, replace=True)
    assert registry.get("x") == 2


@pytest.mark.parametrize("name", ["", "Upper", "1abc", "has space", "a" * 65, "semi;colon"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ParameterError):
        Registry[int]("widget").add(name, 1)


@given(st.from_regex(r"[a-z][a-z0-9_.\-]{0,63}", fullmatch=True))
def test_every_valid_name_round_trips(name: str) -> None:
    registry: Registry[str] = Registry("widget")
    registry.add(name, name)
    assert registry.get(name) == name


def test_shared_registries_exist_with_their_kinds() -> None:
    assert (mechanisms.kind, attacks.kind, report_formats.kind) == (
        "mechanism",
        "attack",
        "report format",
    )
