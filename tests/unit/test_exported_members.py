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


def test_train_stays_the_function_after_the_stage_package_loads() -> None:
    import loopml.train.trainer

    assert callable(loopml.train)
    assert loopml.train.__module__ == "loopml"
    assert loopml.train.__doc__


def test_import_is_light() -> None:
    """`import loopml` and the CLI entry point load no scikit-learn, scipy or starlette."""
    import subprocess
    import sys

    code = (
        "import sys, loopml, loopml.cli.main; "
        "print(sorted(m for m in ('sklearn', 'scipy', 'starlette', 'lightgbm') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
