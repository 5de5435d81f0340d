import loopml


def test_all_is_sorted_and_every_name_exists() -> None:
    assert loopml.__all__ == sorted(loopml.__all__)
    for name in loopml.__all__:
        assert hasattr(loopml, name), name


def test_public_callables_are_documented() -> None:
    for name in loopml.__all__:
        obj = getattr(loopml, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"
