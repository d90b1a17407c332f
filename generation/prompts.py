"""Prompt building: the person's prompt plus what the chosen style adds (generation/params.py)."""

from __future__ import annotations

from generation.params import API_DEFAULT_STYLE, DEFAULT_QUALITY, style_addition


def build_optimized_prompt(*, prompt: str, kind: str, style: str | None, quality: str | None) -> str:
    """The prompt sent to the provider: the person's words first, then the style's words and the
    quality's cue. The style "none" sends the words as written (whitespace tidied)."""
    words = " ".join(prompt.split())
    addition = style_addition(style or API_DEFAULT_STYLE, quality or DEFAULT_QUALITY)
    parts = [words.rstrip("."), addition] if addition else [words]
    if kind == "edit":
        parts.insert(0, "Edit the source image")
    return ", ".join(parts)
