"""The model registry is the one source: the README's table is generated from it."""

from pathlib import Path

from generation.providers.catalog import PROVIDERS, models_markdown
from generation.providers.registry import provider_names

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_lists_every_model_as_the_registry_does():
    assert models_markdown() in README.read_text()


def test_every_provider_of_the_registry_has_an_implementation_and_sane_models():
    assert set(provider_names()) == set(PROVIDERS)
    for spec in PROVIDERS.values():
        for model in spec.models:
            assert model.provider == spec.name
            assert model.aspect_ratios, model.id
            assert {"draft", "standard", "high"} <= set(model.credits) or "standard" in model.credits
            assert ("video" in model.kinds) == bool(model.durations), model.id
