"""`LGSE_*` settings: every one is documented in docs/SETTINGS.md, generated from the model;
errors name the variable; unknown variables get a did-you-mean."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from exporter.config import Settings, SettingsError, load_settings, unknown_settings

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def test_settings_doc_is_generated_from_the_model() -> None:
    """docs/SETTINGS.md is exactly what scripts/settings_doc.py renders (`make settings-doc`)."""
    import settings_doc

    assert (ROOT / "docs" / "SETTINGS.md").read_text() == settings_doc.render()


def test_every_setting_has_a_description() -> None:
    """No setting documented only by its name."""
    assert all(f.description for f in Settings.model_fields.values())


def test_settings_error_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """LGSE_LOG_LEVEL=verbose: SettingsError whose line starts with the variable."""
    monkeypatch.setenv("LGSE_LOG_LEVEL", "verbose")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.problems[0].startswith("LGSE_LOG_LEVEL='verbose': ")


def test_a_bad_duration_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """LGSE_ORPHAN_THREAD_AGE=soon: the error names it and says what a duration is."""
    monkeypatch.setenv("LGSE_ORPHAN_THREAD_AGE", "soon")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert info.value.problems[0].startswith("LGSE_ORPHAN_THREAD_AGE='soon': invalid duration")


def test_unknown_variables_get_a_suggestion() -> None:
    """A misspelled variable is reported with the closest setting; known ones are not."""
    env = {"LGSE_LOG_FROMAT": "json", "LGSE_LOG_FORMAT": "json", "PATH": "/bin"}
    assert unknown_settings(env) == [
        "LGSE_LOG_FROMAT is not a setting and is ignored (did you mean LGSE_LOG_FORMAT?)"
    ]
