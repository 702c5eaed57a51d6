"""The configuration reference in docs/configuration.md is generated from the config schema
(docs/generate_config_reference.py): the committed page must equal the script's output, so the
page never drifts from workflow/schemas/config.schema.yaml."""

from __future__ import annotations

import importlib.util

from helpers import REPO_ROOT


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "generate_config_reference", REPO_ROOT / "docs" / "generate_config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_page_equals_the_generated_reference():
    generator = load_generator()
    current = generator.PAGE.read_text(encoding="utf-8")
    assert generator.MARKER in current, "docs/configuration.md lost its generated-reference marker"
    assert current == generator.page(current), (
        "docs/configuration.md differs from the schema: run python docs/generate_config_reference.py"
    )


def test_reference_names_every_schema_key_with_its_default():
    generator = load_generator()
    text = generator.render()
    for key, default in [
        ("`experiments.<name>.training.lr`", "`0.00025`"),
        ("`datasets.<name>.canvas_size`", "`384`"),
        ("`experiments.<name>.training.augmentation.shift`", "`0`"),
        ("`experiments.<name>.evaluation.validate_every`", "`1`"),
    ]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {key} "))
        assert f"| {default} |" in row, row
