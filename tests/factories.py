from __future__ import annotations

import io

import factory
from PIL import Image

from accounts.models import User
from accounts.services import user_create


class UserFactory(factory.Factory):
    """A user with their personal team (made by the same service sign-up uses)."""

    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    password = "correct-horse-battery"

    @classmethod
    def _create(cls, model_class: type, email: str, password: str) -> User:
        return user_create(email=email, password=password)


def png_bytes(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()
