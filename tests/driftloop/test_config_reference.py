"""The README's config reference is generated from the config models and must match them."""

from __future__ import annotations

import pytest

from driftloop.config_reference import README, markdown, readme_block, rows


def test_readme_holds_the_current_reference() -> None:
    assert readme_block(README.read_text()) == markdown(), (
        "README.md's config reference is stale: run "
        "`.venv/bin/python -m driftloop.config_reference --write`"
    )


def test_every_key_is_documented() -> None:
    undocumented = [key for key, _type, _default, meaning in rows() if not meaning]
    assert undocumented == []


def test_nested_sections_are_listed_with_their_defaults() -> None:
    table = {key.strip("`"): (kind, default) for key, kind, default, _ in rows()}
    assert table["model_name"][1] == "required"
    assert table["monitoring.window.rows"][1] == "`5000`"
    assert table["model.candidates[].family"][0].startswith("`logistic`")
    assert "serving" not in table  # a section is expanded into its keys


def test_markers_missing_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="lacks the markers"):
        readme_block("# no reference here")
