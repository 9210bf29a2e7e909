"""The reference pages under docs/reference/ are what the code generates: config keys, the
console scripts' --help and the dead-letter reasons."""

from __future__ import annotations

import pytest

from devkit import docs_reference


@pytest.mark.parametrize("path", sorted(docs_reference.pages()), ids=lambda p: p.name)
def test_the_committed_reference_page_is_what_the_code_generates(path):
    generated = docs_reference.pages()[path]
    committed = path.read_text(encoding="utf-8") if path.is_file() else ""
    assert committed == generated, (
        f"{path.relative_to(docs_reference.PROJECT_DIR)} differs from what the code generates: "
        "run make docs and commit the result"
    )


def test_every_config_key_is_on_the_page_with_its_description():
    page = docs_reference.config_page()
    for section, field in docs_reference.Config.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, docs_reference.BaseModel):
            assert f"## `[{section}]`" in page
            for key in model.model_fields:
                assert f"| `{key}` |" in page, f"{section}.{key}"


def test_every_console_script_has_its_help_on_the_page():
    page = docs_reference.cli_page()
    scripts = docs_reference.console_scripts()
    assert "clickstream-ingest" in scripts
    for script in scripts:
        assert f"## `{script}`" in page
        assert f"usage: {script} " in page


def test_the_reasons_page_lists_each_rule_of_both_validation_paths():
    page = docs_reference.reasons_page()
    for reason in ("malformed_json", "too_large", "not_integer_<field>", "event_time_in_future"):
        assert f"| `{reason}` |" in page
    assert "`db_rejected: <error>`" in page
