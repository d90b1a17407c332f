"""The parameter vocabulary: the styles, qualities and aspect ratios a job may name.

One home for the words that the API's validation (generation/services/job_body.py), the prompt
builder (generation/prompts.py), the model registry (generation/providers/catalog.py), the local
provider and the studio form all use, so that a new style or ratio is added once. (The kinds
are `GenerationJob.Kind`; the options only some models take are `catalog.Option`.) It imports
nothing of the app: the registry reads it while Django starts.
"""

from __future__ import annotations

# What each style adds to the person's prompt. "none" adds nothing: the prompt is sent as written
# (and without the quality's cue, below); it is what a new studio draft starts with, so that
# "a watercolor fox" is never silently made "photorealistic".
STYLE_NONE = "none"
STYLES: dict[str, str] = {
    STYLE_NONE: "",
    "realistic": "photorealistic, natural lighting, true-to-life textures, sharp focus",
    "artistic": "expressive artistic rendering, bold brush strokes, vivid colour palette",
    "minimal": "minimalist composition, clean lines, generous negative space, muted palette",
}
STYLE_LABELS: dict[str, str] = {
    STYLE_NONE: "None",
    "realistic": "Realistic",
    "artistic": "Artistic",
    "minimal": "Minimal",
}
# The API's default when a body names no style: unchanged since v1, so that a client's jobs keep
# looking as they did (the OpenAPI schema states it). The studio's drafts start at STYLE_NONE.
API_DEFAULT_STYLE = "realistic"
STUDIO_DEFAULT_STYLE = STYLE_NONE

# Qualities, cheapest first; each model prices them (catalog.ModelSpec.credits). A styled prompt
# also gets the quality's cue.
QUALITIES = ("draft", "standard", "high")
DEFAULT_QUALITY = "standard"
QUALITY_CUES: dict[str, str] = {
    "draft": "quick draft",
    "standard": "well composed, detailed",
    "high": "highly detailed, professional quality, 4k",
}

# Every aspect ratio Atelier knows, as width:height; each model makes a subset (its first is its default).
ASPECT_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")


def style_addition(style: str, quality: str = DEFAULT_QUALITY) -> str:
    """The words a style (with the quality's cue) adds after the person's prompt; "" for none."""
    words = STYLES.get(style, "")
    if not words:
        return ""
    return f"{words}, {QUALITY_CUES.get(quality, QUALITY_CUES[DEFAULT_QUALITY])}"
