"""What the studio form offers, read from the model registry (generation/providers/catalog.py):
the configured providers, the chosen provider's models that make the chosen kind, the options and
aspect ratios that model accepts, and the uploads the kind and model use.

The server draws it, both for a whole page and for the settings partial that htmx swaps in when
the provider, kind or model changes, so the page holds no copy of the registry of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from generation.models import GenerationJob
from generation.pages.studio_form import REFERENCE_SLOTS
from generation.params import ASPECT_RATIOS, DEFAULT_QUALITY, QUALITIES, STUDIO_DEFAULT_STYLE, STYLE_LABELS, STYLES
from generation.providers.catalog import ModelSpec, Option, ProviderSpec, configured_providers

KINDS = (
    (GenerationJob.Kind.IMAGE.value, "Image"),
    (GenerationJob.Kind.EDIT.value, "Edit an image"),
    (GenerationJob.Kind.VIDEO.value, "Video clip"),
)
IMAGE_TYPES = "image/png,image/jpeg,image/webp"


@dataclass(frozen=True)
class FieldView:
    """One field as templates/studio/partials/field.html draws it: its label, its input (a select
    when it has choices, a file input for an upload) and its errors."""

    name: str
    label: str
    value: str
    errors: list[str]
    choices: tuple[tuple[str, str], ...] = ()
    placeholder: str = ""
    inputmode: str = ""
    maxlength: int = 0
    reshapes: bool = False  # changing it redraws the settings (the provider, the kind, the model)
    # An image upload: the file input, the earlier upload kept in a hidden field (`value`), and
    # for references and the sketch an influence slider.
    accept: str = ""
    weight: object = None
    # What each choice adds, shown under the select (the style: what it adds to the prompt).
    notes: tuple[tuple[str, str], ...] = ()

    @property
    def is_upload(self) -> bool:
        return bool(self.accept)


@dataclass(frozen=True)
class Section:
    """A collapsible part of the form (templates/studio/partials/form_settings.html): open when
    one of its fields holds a value or an error, or when the work needs it (an edit's source)."""

    key: str
    title: str
    fields: list[FieldView]
    always_open: bool = False

    @property
    def open(self) -> bool:
        return self.always_open or any(field.value or field.errors for field in self.fields)


@dataclass(frozen=True)
class _OptionField:
    label: str
    placeholder: str = ""
    inputmode: str = ""
    maxlength: int = 0
    advanced: bool = False  # drawn under "Advanced"


# Every option a model may accept, in the order the form shows them.
OPTION_FIELDS: dict[Option, _OptionField] = {
    Option.DURATION: _OptionField("Duration"),
    Option.SEED: _OptionField("Seed", placeholder="random", inputmode="numeric"),
    Option.BACKGROUND: _OptionField("Background"),
    Option.OUTPUT_FORMAT: _OptionField("Format"),
    Option.GUIDANCE_SCALE: _OptionField("Guidance scale", placeholder="0-30", inputmode="decimal", advanced=True),
    Option.STEPS: _OptionField("Steps", placeholder="1-150", inputmode="numeric", advanced=True),
    Option.STRENGTH: _OptionField("Strength", placeholder="0-1 (edits)", inputmode="decimal", advanced=True),
    Option.NEGATIVE_PROMPT: _OptionField("Negative prompt", maxlength=1000, advanced=True),
}
# The labels of errors whose field the form does not show as drawn: a seed sent to a model that
# takes none (from a page without JavaScript that still showed the previous model's fields), or
# an error about all the references at once.
FIELD_LABELS = {
    **{option.value: spec.label for option, spec in OPTION_FIELDS.items()},
    "count": "Outputs",
    "style": "Style",
    "quality": "Quality",
    "aspect_ratio": "Aspect ratio",
    "source_image": "Source image",
    "mask_image": "Mask",
    "sketch_image": "Sketch",
    "references": "References",
    **{f"reference_{slot}": f"Reference {slot}" for slot in range(1, REFERENCE_SLOTS + 1)},
}


def labelled_errors(errors: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """(label, messages) pairs, for errors shown apart from their fields."""
    labels = {"prompt": "Prompt", "provider": "Provider", "kind": "Kind", "model": "Model", **FIELD_LABELS}
    return [(labels.get(name, name.replace("_", " ").capitalize()), messages) for name, messages in errors.items()]


@dataclass(frozen=True)
class FormShape:
    count: FieldView  # at the top, beside Generate
    style: FieldView  # at the top, with what it adds to the prompt
    sections: list[Section]  # settings, source, references, sketch, advanced: each collapsible
    other_errors: list[tuple[str, list[str]]]  # (label, messages) of fields the form does not show
    is_video: bool


@dataclass(frozen=True)
class _Choice:
    offered: list[ProviderSpec]
    provider: ProviderSpec
    kind: str
    models: list[ModelSpec]
    model: ModelSpec | None  # None: the provider makes nothing of this kind


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _choose(values: dict) -> _Choice:
    """The provider, kind and model to draw. A choice the registry does not allow here (a provider
    without credentials, a model of another provider or kind) is drawn as the nearest allowed one
    (the default provider; the provider's default model for the kind), so the form offers only
    what can be submitted; the error the choice caused, if it was submitted, is shown all the same."""
    offered = configured_providers()
    by_name = {spec.name: spec for spec in offered}
    provider = (
        by_name.get(_text(values.get("provider")))
        or by_name.get(settings.GENERATION_DEFAULT_PROVIDER)
        or offered[0]  # "local" needs no credentials: the list is never empty
    )
    kind = _text(values.get("kind"))
    if kind not in dict(KINDS):
        kind = GenerationJob.Kind.IMAGE.value
    models = [model for model in provider.models if kind in model.kinds]
    model = next((model for model in models if model.id == values.get("model")), None)
    return _Choice(offered, provider, kind, models, model or provider.default_model_for(kind))


def _select(name: str, label: str, value: str, errors: dict, choices: tuple[tuple[str, str], ...]) -> FieldView:
    """A select whose value is one of its choices (else its first)."""
    if value not in dict(choices):
        value = choices[0][0]
    return FieldView(name, label, value, errors.get(name, []), choices=choices)


def _count(choice: _Choice, values: dict, errors: dict) -> FieldView:
    model = choice.model
    most = min(model.max_outputs, settings.GENERATION_MAX_OUTPUTS) if model else settings.GENERATION_MAX_OUTPUTS
    count = _text(values.get("count")) or "1"
    if count.isdigit() and int(count) > most:
        count = str(most)  # drawn at the most this model makes; the estimate shows the new cost
    label = "Clips" if choice.kind == GenerationJob.Kind.VIDEO else "Images"
    return _select("count", label, count, errors, tuple((str(n), str(n)) for n in range(1, most + 1)))


def _style(values: dict, errors: dict) -> FieldView:
    """The style select, with what each style adds to the prompt (app.js shows the chosen one's)."""
    notes = tuple(
        (name, f"Adds: {words}, and the quality's cue." if words else "Adds nothing: your prompt is sent as written.")
        for name, words in STYLES.items()
    )
    value = _text(values.get("style")) or STUDIO_DEFAULT_STYLE
    view = _select("style", "Style", value, errors, tuple(STYLE_LABELS.items()))
    return FieldView(view.name, view.label, view.value, view.errors, choices=view.choices, notes=notes)


def _settings(choice: _Choice, values: dict, errors: dict) -> list[FieldView]:
    ratios = choice.model.aspect_ratios if choice.model else ASPECT_RATIOS
    quality = _text(values.get("quality")) or DEFAULT_QUALITY
    return [
        _select("quality", "Quality", quality, errors, _same(QUALITIES)),
        _select("aspect_ratio", "Aspect ratio", _text(values.get("aspect_ratio")), errors, _same(ratios)),
    ]


def _same(names: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    return tuple((name, name) for name in names)


def _option_choices(model: ModelSpec, option: Option) -> tuple[tuple[str, str], ...]:
    if option is Option.DURATION:
        return tuple((str(seconds), f"{seconds} s") for seconds in sorted(model.durations))
    if option is Option.BACKGROUND:
        return _same(model.backgrounds)
    if option is Option.OUTPUT_FORMAT:
        return tuple((name, name.upper()) for name in model.output_formats)
    return ()


def _options(model: ModelSpec | None, values: dict, errors: dict) -> tuple[list[FieldView], list[FieldView]]:
    """The options the model accepts, as (main, advanced) fields."""
    main: list[FieldView] = []
    advanced: list[FieldView] = []
    for option, spec in OPTION_FIELDS.items():
        if model is None or option not in model.options:
            continue
        value, choices = _text(values.get(option.value)), _option_choices(model, option)
        if option is Option.DURATION and value not in dict(choices):
            value = str(model.default_duration)  # not the shortest: the model's own default
        if choices:
            view = _select(option.value, spec.label, value, errors, choices)
        else:
            view = FieldView(
                option.value,
                spec.label,
                value,
                errors.get(option.value, []),
                placeholder=spec.placeholder,
                inputmode=spec.inputmode,
                maxlength=spec.maxlength,
            )
        (advanced if spec.advanced else main).append(view)
    return main, advanced


def _upload(
    values: dict, errors: dict, name: str, label: str, accept: str = IMAGE_TYPES, weight: object = None
) -> FieldView:
    asset = _text(values.get(f"{name}_asset"))
    return FieldView(name, label, asset, errors.get(name, []), accept=accept, weight=weight)


def _upload_sections(choice: _Choice, values: dict, errors: dict) -> list[Section]:
    """The images to work from, each kind in its own section: an edit's source (and mask), the
    references, the sketch; only those the kind and model use."""
    model = choice.model
    sections = []
    if choice.kind == GenerationJob.Kind.EDIT:
        source = [_upload(values, errors, "source_image", "Source image")]
        if model is not None and model.accepts_mask:
            mask = "Mask (a PNG, transparent where it may change)"
            source.append(_upload(values, errors, "mask_image", mask, accept="image/png"))
        sections.append(Section("source", "Source image", source, always_open=True))  # an edit needs it
    slots = min(REFERENCE_SLOTS, model.max_references) if model is not None else 0
    if slots:
        references = [
            _upload(
                values, errors, f"reference_{slot}", f"Reference {slot}", weight=values.get(f"reference_{slot}_weight")
            )
            for slot in range(1, slots + 1)
        ]
        sections.append(Section("references", "Reference images", references))
        sketch = _upload(values, errors, "sketch_image", "Sketch", weight=values.get("sketch_image_weight"))
        sections.append(Section("sketch", "Sketch", [sketch]))
    return sections


def form_shape(values: dict, errors: dict[str, list[str]]) -> FormShape:
    """The form for `values` (form_values of a draft) with `errors` beside their fields."""
    choice = _choose(values)
    count, style = _count(choice, values, errors), _style(values, errors)
    main, advanced = _options(choice.model, values, errors)
    model_choices = tuple((model.id, model.label) for model in choice.models)
    model_settings = [
        FieldView(
            "provider",
            "Provider",
            choice.provider.name,
            errors.get("provider", []),
            choices=tuple((spec.name, spec.label) for spec in choice.offered),
            reshapes=True,
        ),
        FieldView("kind", "Kind", choice.kind, errors.get("kind", []), choices=KINDS, reshapes=True),
        FieldView(
            "model",
            "Model",
            choice.model.id if choice.model else "",
            errors.get("model", []),
            choices=model_choices or (("", f"{choice.provider.label} makes no {choice.kind}"),),
            reshapes=True,
        ),
        *_settings(choice, values, errors),
        *main,
    ]
    # The settings always hold a value each: they start open, and fold away for the person who wants the room.
    sections = [Section("settings", "Model and format", model_settings, always_open=True)]
    sections += _upload_sections(choice, values, errors)
    if advanced:
        sections.append(Section("advanced", "Advanced", advanced))
    shown = {"prompt", count.name, style.name} | {field.name for section in sections for field in section.fields}
    return FormShape(
        count=count,
        style=style,
        sections=sections,
        other_errors=labelled_errors({name: messages for name, messages in errors.items() if name not in shown}),
        is_video=choice.kind == GenerationJob.Kind.VIDEO,
    )
