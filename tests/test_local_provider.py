"""The offline provider: deterministic, prompt-steered PNGs and the failures it can simulate.

These tests need neither a database nor Django settings.
"""

from __future__ import annotations

import io
import random
import time

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps, ImageStat

from generation.providers.base import (
    OutputRequest,
    PermanentProviderError,
    ReferenceImage,
    TransientProviderError,
)
from generation.providers.local import LocalProvider

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_request(**overrides) -> OutputRequest:
    values = {
        "job_id": "job-1",
        "kind": "image",
        "model": "atelier-sketch-1",
        "prompt": "a lighthouse on a cliff at dawn",
        "index": 0,
        "seed": 1234,
        "params": {"style": "realistic", "quality": "draft", "aspect_ratio": "1:1"},
    }
    values.update(overrides)
    return OutputRequest(**values)


def open_png(content: bytes) -> Image.Image:
    assert content.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(content))
    assert image.format == "PNG"
    return image.convert("RGB")


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    if a.size != b.size:
        b = b.resize(a.size)
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def luminance_correlation(a: Image.Image, b: Image.Image) -> float:
    xs = list(a.convert("L").resize((32, 32)).tobytes())
    ys = list(b.convert("L").resize((32, 32)).tobytes())
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    vx = sum((x - mx) ** 2 for x in xs)
    vy = sum((y - my) ** 2 for y in ys)
    return cov / (vx * vy) ** 0.5


def sample_photo(size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A stand-in 'photo': crossed colour ramps with a bright disc and a dark bar."""
    w, h = size
    down = Image.linear_gradient("L").resize(size)
    across = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize(size)
    image = Image.merge("RGB", (down, across, Image.new("L", size, 120)))
    draw = ImageDraw.Draw(image)
    draw.ellipse((w * 0.55, h * 0.15, w * 0.85, h * 0.55), fill=(250, 240, 200))
    draw.rectangle((w * 0.1, h * 0.6, w * 0.45, h * 0.75), fill=(20, 30, 60))
    return image


@pytest.fixture
def provider() -> LocalProvider:
    return LocalProvider(latency_ms=0, failure_rate=0.0)


def test_provider_describes_itself() -> None:
    assert LocalProvider.name == "local"
    assert LocalProvider.models == ("atelier-sketch-1", "atelier-motion-1")
    assert LocalProvider.kinds == frozenset({"image", "edit", "video"})


def test_same_request_gives_byte_identical_png(provider: LocalProvider) -> None:
    request = make_request()
    first = provider.generate(request)
    random.seed(999)  # the global random state must not matter
    second = LocalProvider(latency_ms=0, failure_rate=0.0).generate(request)
    assert first == second
    assert first.mime == "image/png"


def test_different_seed_or_index_gives_a_different_picture(provider: LocalProvider) -> None:
    base = provider.generate(make_request())
    other_seed = provider.generate(make_request(seed=4321))
    other_index = provider.generate(make_request(index=1))
    assert other_seed.content != base.content
    assert other_index.content != base.content
    assert mean_difference(open_png(base.content), open_png(other_seed.content)) > 3


@pytest.mark.parametrize(
    ("quality", "aspect_ratio", "expected"),
    [
        ("draft", "1:1", (512, 512)),
        ("standard", "16:9", (768, 432)),
        ("high", "3:4", (768, 1024)),
        ("draft", "9:16", (288, 512)),
        ("standard", "3:2", (768, 512)),
        ("draft", "2:3", (341, 512)),
        ("draft", "4:3", (512, 384)),
    ],
)
def test_output_is_a_png_sized_by_quality_and_aspect_ratio(
    provider: LocalProvider, quality: str, aspect_ratio: str, expected: tuple[int, int]
) -> None:
    output = provider.generate(make_request(params={"quality": quality, "aspect_ratio": aspect_ratio}))
    image = open_png(output.content)
    assert image.size == expected
    assert (output.width, output.height) == expected


def test_missing_parameters_default_to_a_standard_square(provider: LocalProvider) -> None:
    output = provider.generate(make_request(params={}))
    assert (output.width, output.height) == (768, 768)
    assert open_png(output.content).size == (768, 768)


def test_quality_changes_resolution_but_not_the_design(provider: LocalProvider) -> None:
    draft = open_png(provider.generate(make_request(params={"quality": "draft"})).content)
    high = open_png(provider.generate(make_request(params={"quality": "high"})).content)
    assert high.size == (1024, 1024)
    assert mean_difference(draft, high) < 6


@pytest.mark.parametrize("style", ["realistic", "artistic", "minimal"])
def test_each_style_draws_a_design_not_a_flat_colour(provider: LocalProvider, style: str) -> None:
    image = open_png(provider.generate(make_request(params={"style": style, "quality": "draft"})).content)
    spread = ImageStat.Stat(image.convert("L")).stddev[0]
    assert spread > 8
    assert len(image.getcolors(maxcolors=1_000_000) or []) > 50


def test_styles_look_different_from_each_other(provider: LocalProvider) -> None:
    images = {
        style: open_png(provider.generate(make_request(params={"style": style, "quality": "draft"})).content)
        for style in ("realistic", "artistic", "minimal")
    }
    assert mean_difference(images["realistic"], images["artistic"]) > 10
    assert mean_difference(images["realistic"], images["minimal"]) > 10
    assert mean_difference(images["artistic"], images["minimal"]) > 10


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_colour_words_in_the_prompt_steer_the_palette(provider: LocalProvider, seed: int) -> None:
    red = open_png(provider.generate(make_request(prompt="deep red", seed=seed)).content)
    blue = open_png(provider.generate(make_request(prompt="ocean blue", seed=seed)).content)
    red_r, _, red_b = ImageStat.Stat(red).mean
    blue_r, _, blue_b = ImageStat.Stat(blue).mean
    assert red_r > red_b + 20
    assert blue_b > blue_r + 20


def test_a_heavy_reference_pulls_its_colour_into_the_palette(provider: LocalProvider) -> None:
    green = png_bytes(Image.new("RGB", (64, 64), (0, 255, 0)))
    greens = []
    for weight in (0.0, 1.0):
        total = 0.0
        for seed in range(3):
            request = make_request(prompt="deep red", seed=seed, references=(ReferenceImage(green, weight),))
            total += ImageStat.Stat(open_png(provider.generate(request).content)).mean[1]
        greens.append(total / 3)
    assert greens[1] > greens[0] + 25


def test_an_unreadable_reference_is_ignored(provider: LocalProvider) -> None:
    request = make_request(references=(ReferenceImage(b"not an image", 1.0),))
    assert open_png(provider.generate(request).content).size == (512, 512)


def test_an_edit_without_a_source_image_is_refused_for_good(provider: LocalProvider) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        provider.generate(make_request(kind="edit", source_image=None))
    assert caught.value.code == "SOURCE_IMAGE_REQUIRED"
    assert "source image" in caught.value.message


def test_an_edit_with_an_unreadable_source_is_refused_for_good(provider: LocalProvider) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        provider.generate(make_request(kind="edit", source_image=b"\x89PNG\r\n\x1a\nbroken"))
    assert caught.value.code == "INVALID_SOURCE_IMAGE"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_an_edit_transforms_the_source_at_the_requested_size(provider: LocalProvider, fmt: str) -> None:
    photo = sample_photo()
    request = make_request(
        kind="edit",
        prompt="turn it into a purple dream",
        source_image=png_bytes(photo, fmt),
        params={"quality": "draft", "aspect_ratio": "16:9", "strength": 0.6},
    )
    output = provider.generate(request)
    edited = open_png(output.content)
    assert edited.size == (output.width, output.height) == (512, 288)
    fitted = ImageOps.fit(photo, edited.size)  # the source cropped to 16:9
    assert mean_difference(edited, fitted) > 8  # visibly changed ...
    assert luminance_correlation(edited, fitted) > 0.5  # ... yet still the same picture
    assert provider.generate(request) == output  # and deterministic


def test_edit_strength_controls_how_far_the_result_moves_from_the_source(provider: LocalProvider) -> None:
    photo = sample_photo((512, 512))
    distances = []
    for strength in (0.0, 0.3, 1.0):
        request = make_request(
            kind="edit",
            prompt="golden hour",
            source_image=png_bytes(photo),
            params={"quality": "draft", "aspect_ratio": "1:1", "strength": strength},
        )
        distances.append(mean_difference(open_png(provider.generate(request).content), photo))
    assert distances[0] < 2
    assert distances[0] < distances[1] < distances[2]


def test_an_edit_keeps_the_source_proportions_when_no_aspect_ratio_is_given(provider: LocalProvider) -> None:
    request = make_request(kind="edit", source_image=png_bytes(sample_photo((600, 300))), params={"quality": "draft"})
    output = provider.generate(request)
    assert (output.width, output.height) == (512, 256)


def test_an_unsupported_kind_is_refused_for_good(provider: LocalProvider) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        provider.generate(make_request(kind="video"))
    assert caught.value.code == "UNSUPPORTED_KIND"


@pytest.mark.parametrize("prompt", ["a forbidden garden", "FORBIDDEN", "Forbidden, fruit"])
def test_a_forbidden_prompt_is_refused_by_the_content_policy(provider: LocalProvider, prompt: str) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        provider.generate(make_request(prompt=prompt))
    assert caught.value.code == "CONTENT_POLICY"
    assert caught.value.message == "The prompt was refused by the content policy."


def test_the_content_policy_wins_over_a_simulated_outage() -> None:
    flaky = LocalProvider(latency_ms=0, failure_rate=1.0)
    with pytest.raises(PermanentProviderError):
        flaky.generate(make_request(prompt="forbidden"))


def test_a_certain_failure_rate_simulates_an_outage() -> None:
    flaky = LocalProvider(latency_ms=0, failure_rate=1.0)
    with pytest.raises(TransientProviderError) as caught:
        flaky.generate(make_request())
    assert caught.value.code == "PROVIDER_UNAVAILABLE"
    assert caught.value.message == "The local provider is simulating an outage."
    assert caught.value.retry_after is None


def test_simulated_outages_are_random_so_a_retry_can_succeed() -> None:
    flaky = LocalProvider(latency_ms=0, failure_rate=0.5)
    request = make_request(params={"quality": "draft", "style": "minimal"})
    outcomes = set()
    for _ in range(60):
        try:
            flaky.generate(request)
            outcomes.add("ok")
        except TransientProviderError:
            outcomes.add("failed")
        if len(outcomes) == 2:
            break
    assert outcomes == {"ok", "failed"}


def test_latency_is_simulated(provider: LocalProvider) -> None:
    slow = LocalProvider(latency_ms=120, failure_rate=0.0)
    started = time.monotonic()
    slow.generate(make_request())
    assert time.monotonic() - started >= 0.12


@pytest.fixture
def no_django_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes the provider see unconfigured Django settings, whatever the test run configured."""
    import django.conf

    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.setattr(django.conf, "settings", django.conf.LazySettings())


@pytest.mark.usefixtures("no_django_settings")
def test_without_django_settings_the_knobs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_PROVIDER_LATENCY_MS", "0")
    monkeypatch.setenv("LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE", "1")
    with pytest.raises(TransientProviderError):
        LocalProvider().generate(make_request())

    monkeypatch.setenv("LOCAL_PROVIDER_LATENCY_MS", "80")
    monkeypatch.setenv("LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE", "0")
    started = time.monotonic()
    LocalProvider().generate(make_request())
    assert time.monotonic() - started >= 0.08


def test_django_settings_take_precedence_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import django.conf

    configured = django.conf.LazySettings()
    configured.configure(LOCAL_PROVIDER_LATENCY_MS=0, LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE=1.0)
    monkeypatch.setattr(django.conf, "settings", configured)
    monkeypatch.setenv("LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE", "0")
    with pytest.raises(TransientProviderError):
        LocalProvider().generate(make_request())


def test_constructor_overrides_beat_settings_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE", "1")
    monkeypatch.setenv("LOCAL_PROVIDER_LATENCY_MS", "5000")
    output = LocalProvider(latency_ms=0, failure_rate=0.0).generate(make_request())
    assert output.mime == "image/png"
