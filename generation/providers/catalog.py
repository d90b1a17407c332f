"""The model registry: for each provider and model, what it makes, what it accepts and what it costs.

One place drives the API's validation (`ModelSpec.param_errors`), `GET /api/v1/models`, the
studio form (a provider's models and options follow the chosen provider) and the price of an
output. A provider without credentials is not offered (`provider_configured`).

Every model takes Atelier's three qualities (draft, standard, high) and its style presets: the
providers map them onto what each model calls them. Everything else is an option a model either
accepts or refuses with a validation error naming the field, at submit time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings

from generation.params import ASPECT_RATIOS as ASPECT_RATIOS  # the vocabulary's home; imported from here too
from generation.params import DEFAULT_QUALITY
from generation.params import QUALITIES as QUALITIES

BACKGROUNDS = ("auto", "opaque", "transparent")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
IMAGE_KINDS = frozenset({"image", "edit"})
VIDEO = "video"


class Option(StrEnum):
    """A job parameter that only some models accept (`params.<name>` in the API)."""

    SEED = "seed"
    NEGATIVE_PROMPT = "negative_prompt"
    GUIDANCE_SCALE = "guidance_scale"
    STEPS = "steps"
    STRENGTH = "strength"
    BACKGROUND = "background"
    OUTPUT_FORMAT = "output_format"
    DURATION = "duration_seconds"


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    id: str
    label: str
    kinds: frozenset[str]
    aspect_ratios: tuple[str, ...]
    # Credits per delivered output by quality; for a video, credits per second of clip.
    credits: Mapping[str, int]
    options: frozenset[Option] = frozenset()
    backgrounds: tuple[str, ...] = ()
    output_formats: tuple[str, ...] = ()
    durations: tuple[int, ...] = ()  # seconds a clip may last; the first is the default
    max_outputs: int = 10
    max_references: int = 4
    accepts_mask: bool = False
    note: str = ""

    @property
    def default_duration(self) -> int:
        return self.durations[0] if self.durations else 0

    def credits_per_output(self, *, kind: str, quality: str, duration_seconds: int | None = None) -> int:
        per_unit = self.credits.get(quality, self.credits[DEFAULT_QUALITY])
        if kind == VIDEO:
            return per_unit * (duration_seconds or self.default_duration)
        return per_unit

    def param_errors(
        self, *, kind: str, params: Mapping, count: int, references: int = 0, has_mask: bool = False
    ) -> dict[str, list[str]]:
        """What this model cannot do of a request, by API field path; empty when it can do it all."""
        errors: dict[str, list[str]] = {}
        if kind not in self.kinds:
            errors["kind"] = [f"{self.label} cannot make {kind} jobs; it makes: {_listed(sorted(self.kinds))}."]
            return errors
        if count > self.max_outputs:
            errors["count"] = [f"{self.label} makes at most {self.max_outputs} per job."]
        aspect_ratio = params.get("aspect_ratio")
        if aspect_ratio and aspect_ratio not in self.aspect_ratios:
            errors["params.aspect_ratio"] = [
                f"{self.label} does not make {aspect_ratio}; choose one of: {_listed(self.aspect_ratios)}."
            ]
        for option in Option:
            value = params.get(option.value)
            if value is None or value == "":
                continue
            if option not in self.options:
                errors[f"params.{option.value}"] = [f"{self.label} does not take this option."]
            elif option is Option.BACKGROUND and value not in self.backgrounds:
                errors["params.background"] = [f"{self.label} accepts: {_listed(self.backgrounds)}."]
            elif option is Option.OUTPUT_FORMAT and value not in self.output_formats:
                errors["params.output_format"] = [f"{self.label} accepts: {_listed(self.output_formats)}."]
            elif option is Option.DURATION and int(value) not in self.durations:
                errors["params.duration_seconds"] = [
                    f"{self.label} makes clips of {_listed([str(d) for d in sorted(self.durations)])} seconds."
                ]
        if (
            params.get("background") == "transparent"
            and params.get("output_format", "png") not in ("png", "webp")
            and "params.output_format" not in errors
        ):
            errors["params.output_format"] = ["A transparent background needs the png or webp format."]
        if references > self.max_references:
            errors["inputs.references"] = [f"{self.label} takes at most {self.max_references} reference images."]
        if has_mask and not self.accepts_mask:
            errors["inputs.mask_asset_id"] = [f"{self.label} does not take a mask."]
        return errors


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    label: str
    enabled_by: str  # the variables that switch it on, as a person should be told
    models: tuple[ModelSpec, ...]
    default_model_setting: str = ""  # a setting naming the default model, if configurable

    def model(self, model_id: str) -> ModelSpec | None:
        return next((model for model in self.models if model.id == model_id), None)

    @property
    def default_model(self) -> ModelSpec:
        configured = getattr(settings, self.default_model_setting, "") if self.default_model_setting else ""
        return self.model(configured) or self.models[0]

    def default_model_for(self, kind: str) -> ModelSpec | None:
        """The default model if it makes `kind`, else the first model that does."""
        if kind in self.default_model.kinds:
            return self.default_model
        return next((model for model in self.models if kind in model.kinds), None)


def _listed(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(values)


# The standard sizes every GPT image model makes: 1024x1024, 1536x1024 and 1024x1536.
_OPENAI_STANDARD_RATIOS = ("1:1", "3:2", "2:3")
# Models that take any WIDTHxHEIGHT (multiples of 16, between 1:3 and 3:1).
_OPENAI_ANY_RATIOS = ASPECT_RATIOS


def _gpt_image(model_id: str, label: str, ratios: tuple[str, ...], draft_credits: int, note: str = "") -> ModelSpec:
    """A GPT image model: they differ only in the sizes they make and their price (standard
    quality costs twice draft, high twice standard)."""
    return ModelSpec(
        provider="openai",
        id=model_id,
        label=label,
        kinds=IMAGE_KINDS,
        aspect_ratios=ratios,
        credits={"draft": draft_credits, "standard": 2 * draft_credits, "high": 4 * draft_credits},
        options=frozenset({Option.BACKGROUND, Option.OUTPUT_FORMAT}),
        backgrounds=BACKGROUNDS,
        output_formats=OUTPUT_FORMATS,
        accepts_mask=True,
        max_references=4,
        note=note,
    )


_OPENAI = ProviderSpec(
    name="openai",
    label="OpenAI",
    enabled_by="OPENAI_API_KEY",
    default_model_setting="OPENAI_DEFAULT_MODEL",
    models=(
        _gpt_image("gpt-image-2", "GPT Image 2", _OPENAI_ANY_RATIOS, 2, note="Transparent backgrounds are in preview."),
        _gpt_image("gpt-image-2.5-flare", "GPT Image 2.5 Flare", _OPENAI_ANY_RATIOS, 2),
        _gpt_image("gpt-image-2.5-sunburst", "GPT Image 2.5 Sunburst", _OPENAI_ANY_RATIOS, 3),
        _gpt_image("gpt-image-1.5", "GPT Image 1.5", _OPENAI_STANDARD_RATIOS, 2),
        _gpt_image("gpt-image-1-mini", "GPT Image 1 mini", _OPENAI_STANDARD_RATIOS, 1),
    ),
)

_GEMINI_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9")
_GEMINI = ProviderSpec(
    name="gemini",
    label="Gemini",
    enabled_by="GEMINI_API_KEY",
    default_model_setting="GEMINI_DEFAULT_MODEL",
    models=(
        ModelSpec(
            provider="gemini",
            id="gemini-2.5-flash-image",
            label="Gemini 2.5 Flash Image",
            kinds=IMAGE_KINDS,
            aspect_ratios=_GEMINI_RATIOS,
            credits={"draft": 3, "standard": 3, "high": 6},
            max_references=3,
        ),
        ModelSpec(
            provider="gemini",
            id="gemini-3-pro-image-preview",
            label="Gemini 3 Pro Image (preview)",
            kinds=IMAGE_KINDS,
            aspect_ratios=_GEMINI_RATIOS,
            credits={"draft": 6, "standard": 6, "high": 12},
            max_references=4,
            note="High quality asks for 2K images.",
        ),
    ),
)

_IMAGEN_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9")
_IMAGEN_OPTIONS = frozenset({Option.SEED, Option.NEGATIVE_PROMPT, Option.GUIDANCE_SCALE})
_VEO_RATIOS = ("16:9", "9:16")
_VERTEX = ProviderSpec(
    name="vertex",
    label="Vertex AI (Imagen, Veo)",
    enabled_by="VERTEX_API_KEY, or GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION",
    default_model_setting="VERTEX_DEFAULT_MODEL",
    models=(
        ModelSpec(
            provider="vertex",
            id="imagen-4.0-generate-001",
            label="Imagen 4",
            kinds=frozenset({"image"}),
            aspect_ratios=_IMAGEN_RATIOS,
            credits={"draft": 3, "standard": 3, "high": 5},
            options=_IMAGEN_OPTIONS,
            max_outputs=8,
            max_references=0,
        ),
        ModelSpec(
            provider="vertex",
            id="imagen-4.0-fast-generate-001",
            label="Imagen 4 Fast",
            kinds=frozenset({"image"}),
            aspect_ratios=_IMAGEN_RATIOS,
            credits={"draft": 2, "standard": 2, "high": 2},
            options=_IMAGEN_OPTIONS,
            max_outputs=8,
            max_references=0,
        ),
        ModelSpec(
            provider="vertex",
            id="veo-3.0-generate-001",
            label="Veo 3",
            kinds=frozenset({VIDEO}),
            aspect_ratios=_VEO_RATIOS,
            credits={"draft": 8, "standard": 8, "high": 8},
            options=frozenset({Option.DURATION, Option.SEED, Option.NEGATIVE_PROMPT}),
            durations=(8, 4, 6),
            max_outputs=2,
            max_references=0,
        ),
        ModelSpec(
            provider="vertex",
            id="veo-3.0-fast-generate-001",
            label="Veo 3 Fast",
            kinds=frozenset({VIDEO}),
            aspect_ratios=_VEO_RATIOS,
            credits={"draft": 4, "standard": 4, "high": 4},
            options=frozenset({Option.DURATION, Option.SEED, Option.NEGATIVE_PROMPT}),
            durations=(8, 4, 6),
            max_outputs=2,
            max_references=0,
        ),
    ),
)

_LOCAL = ProviderSpec(
    name="local",
    label="Local (offline)",
    enabled_by="",
    models=(
        ModelSpec(
            provider="local",
            id="atelier-sketch-1",
            label="Atelier Sketch",
            kinds=IMAGE_KINDS,
            aspect_ratios=ASPECT_RATIOS,
            credits={"draft": 1, "standard": 1, "high": 2},
            options=frozenset(
                {Option.SEED, Option.NEGATIVE_PROMPT, Option.GUIDANCE_SCALE, Option.STEPS, Option.STRENGTH}
            ),
        ),
        ModelSpec(
            provider="local",
            id="atelier-motion-1",
            label="Atelier Motion",
            kinds=frozenset({VIDEO}),
            aspect_ratios=("16:9", "9:16", "1:1"),
            credits={"draft": 1, "standard": 1, "high": 1},
            options=frozenset({Option.SEED, Option.DURATION}),
            durations=(3, 2, 4, 6),
            max_outputs=4,
            max_references=0,
            note="Animated local art, encoded as H.264 MP4 offline.",
        ),
    ),
)

PROVIDERS: dict[str, ProviderSpec] = {spec.name: spec for spec in (_LOCAL, _OPENAI, _GEMINI, _VERTEX)}


def provider_configured(name: str) -> bool:
    """Whether `name` has the credentials it needs in this deployment."""
    if name == "local":
        return True
    if name == "openai":
        return bool(settings.OPENAI_API_KEY)
    if name == "gemini":
        return bool(settings.GEMINI_API_KEY)
    if name == "vertex":
        return bool(settings.VERTEX_API_KEY) or bool(settings.GOOGLE_CLOUD_PROJECT and settings.GOOGLE_CLOUD_LOCATION)
    return False


def configured_providers() -> list[ProviderSpec]:
    return [spec for name, spec in PROVIDERS.items() if provider_configured(name)]


def model_spec(provider: str, model: str) -> ModelSpec | None:
    spec = PROVIDERS.get(provider)
    return spec.model(model) if spec else None


def price_table() -> list[dict]:
    """Every model's prices as `GET /api/v1/credits` shows them."""
    return [
        {
            "provider": model.provider,
            "model": model.id,
            "kind": kind,
            "quality": quality,
            "credits_per_output": credits if kind != VIDEO else None,
            "credits_per_second": credits if kind == VIDEO else None,
        }
        for spec in PROVIDERS.values()
        for model in spec.models
        for kind in sorted(model.kinds)
        for quality, credits in model.credits.items()
    ]


def models_markdown() -> str:
    """The README's table of models (a test keeps the README equal to it)."""
    rows = [
        "| provider | model | makes | aspect ratios | options | most per job | credits (draft/standard/high) |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in PROVIDERS.values():
        for model in spec.models:
            options = sorted(option.value for option in model.options)
            if model.durations:
                options.append(f"clips of {'/'.join(str(d) for d in sorted(model.durations))} s")
            if model.accepts_mask:
                options.append("mask")
            unit = " a second" if VIDEO in model.kinds else ""
            prices = "/".join(str(model.credits.get(quality, model.credits["standard"])) for quality in QUALITIES)
            rows.append(
                f"| `{spec.name}` | `{model.id}` | {', '.join(sorted(model.kinds))} | {' '.join(model.aspect_ratios)} "
                f"| {', '.join(options) or '—'} | {model.max_outputs} | {prices}{unit} |"
            )
    return "\n".join(rows)
