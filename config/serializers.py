"""Request serializers' strictness, shared by every API app: a JSON body's unknown fields and
values of the wrong JSON type are 400s naming the field, never a silent default or coercion."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

# Serializer context for data that arrives as strings (query parameters, the studio's form):
# their values are converted as DRF does. A JSON body's values must be of their documented type.
FROM_STRINGS = "from_strings"


def _wrong_json_type(field: serializers.Field, value: Any) -> str | None:
    """Why `value`, from a JSON body, is not of the JSON type the schema gives `field` (DRF
    would take "5" for 5, 5 for "5" and false for a UUID); None when it is, or when the field
    checks its own shape (objects, lists, null)."""
    if value is None:
        return None
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "Must be an integer."
    if isinstance(field, serializers.FloatField):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "Must be a number."
    if isinstance(field, (serializers.CharField, serializers.ChoiceField, serializers.UUIDField)):
        return None if isinstance(value, str) else "Must be a string."
    return None


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, so a typo (`promt`) is an error, not a silent default."""

    refuses_unknown_fields = True  # the schema says so: `additionalProperties: false` (config/schema.py)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
            if not self.context.get(FROM_STRINGS):  # a JSON body: each value of its documented type
                wrong = self._wrong_types(data)
                if wrong:
                    raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)

    def _wrong_types(self, data: dict) -> dict[str, Any]:
        wrong: dict[str, Any] = {}
        for name, value in data.items():
            field = self.fields[name]
            if isinstance(field, serializers.ListField) and isinstance(value, list):
                items = {
                    index: [message]
                    for index, item in enumerate(value)
                    if (message := _wrong_json_type(field.child, item))
                }
                if items:
                    wrong[name] = items
            elif message := _wrong_json_type(field, value):
                wrong[name] = [message]
        return wrong
