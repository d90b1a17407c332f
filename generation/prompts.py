"""Prompt building: the person's prompt plus the chosen style preset and quality."""

from __future__ import annotations

STYLE_PRESETS = {
    "realistic": "photorealistic, natural lighting, true-to-life textures, sharp focus",
    "artistic": "expressive artistic rendering, bold brush strokes, vivid colour palette",
    "minimal": "minimalist composition, clean lines, generous negative space, muted palette",
}
QUALITY_HINTS = {
    "draft": "quick draft",
    "standard": "well composed, detailed",
    "high": "highly detailed, professional quality, 4k",
}
DEFAULT_STYLE = "realistic"
DEFAULT_QUALITY = "standard"


def build_optimized_prompt(*, prompt: str, kind: str, style: str | None, quality: str | None) -> str:
    """The prompt sent to the provider: the person's words first, then the style and quality cues."""
    words = " ".join(prompt.split())
    parts = [words.rstrip(".")]
    if kind == "edit":
        parts.insert(0, "Edit the source image")
    parts.append(STYLE_PRESETS[style or DEFAULT_STYLE])
    parts.append(QUALITY_HINTS[quality or DEFAULT_QUALITY])
    return ", ".join(parts)
