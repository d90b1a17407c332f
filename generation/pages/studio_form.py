"""The studio form. Its draft is the API's job body, so the page and the API validate alike
(with `JobCreateSerializer`, generation/services/job_body.py) and a draft can be submitted as it
is; `form_errors` is the one map from the API's field paths back to the form's fields. What the
form offers (its shape) is drawn from the model registry: see `generation/pages/form_shape.py`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.core.files.uploadedfile import UploadedFile
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from accounts.models import Team, User
from accounts.quotas import QuotaExceeded
from config.api_errors import flatten_field_errors
from config.errors import ValidationFailed
from config.serializers import FROM_STRINGS
from generation.providers.catalog import Option
from generation.services.assets import asset_upload
from generation.services.job_body import JobCreateSerializer
from generation.services.studio import tab_draft_check
from generation.services.submit import JobSpec
from generation.uploads import too_large_message

PARAM_FIELDS = ("style", "quality", "aspect_ratio", *(option.value for option in Option))
REFERENCE_SLOTS = 3  # reference images on the form, each with its influence weight
TOP_FIELDS = ("prompt", "kind", "provider", "model", "count")


@dataclass
class FormResult:
    draft: dict
    errors: dict[str, list[str]] = field(default_factory=dict)  # form field name -> messages
    spec: JobSpec | None = None


def draft_from_post(
    *, post: QueryDict, files: MultiValueDict, team: Team, user: User, oversized: set[str] | None = None
) -> FormResult:
    """1. Read the fields into the API's body shape, leaving out empty optional values.
    2. Refuse a draft over the team's size quota (QuotaExceeded, 413) before any upload is stored.
    3. Upload new images (source, mask, references, sketch), keeping earlier uploads named in hidden fields.
    4. Validate with the API's serializer; map its field paths back to the form's field names.
    """
    draft: dict = {name: post.get(name, "").strip() for name in TOP_FIELDS if post.get(name, "").strip()}
    params = {name: post.get(name, "").strip() for name in PARAM_FIELDS if post.get(name, "").strip()}
    if params:
        draft["params"] = params
    tab_draft_check(team=team, draft=draft)  # the uploads add only their ids to it
    errors: dict[str, list[str]] = {}

    def upload(field_name: str) -> str | None:
        if field_name in (oversized or ()):
            errors[field_name] = [too_large_message()]
            return None
        new_file: UploadedFile | None = files.get(field_name)
        if new_file is not None:
            try:
                return str(asset_upload(team=team, user=user, upload=new_file).asset.id)
            except (ValidationFailed, QuotaExceeded) as error:  # shown next to the file's field
                errors[field_name] = error.details.get("file", [error.message])
                return None
        return _uuid_or_none(post.get(f"{field_name}_asset", ""))

    inputs: dict = {}
    source = upload("source_image")
    if source:
        inputs["source_asset_id"] = source
    mask = upload("mask_image")
    if mask:
        inputs["mask_asset_id"] = mask
    references = []
    for slot in range(1, REFERENCE_SLOTS + 1):
        asset_id = upload(f"reference_{slot}")
        if asset_id:
            references.append({"asset_id": asset_id, "weight": post.get(f"reference_{slot}_weight", "0.5") or "0.5"})
    if references:
        inputs["references"] = references
    sketch = upload("sketch_image")
    if sketch:
        inputs["sketch"] = {"asset_id": sketch, "weight": post.get("sketch_image_weight", "0.8") or "0.8"}
    if inputs:
        draft["inputs"] = inputs
    if post.get("tab"):
        draft["tab"] = post["tab"]
    result = FormResult(draft=draft, errors=errors)
    if errors:
        return result
    serializer = JobCreateSerializer(data=draft, context={FROM_STRINGS: True})  # form fields are strings
    if not serializer.is_valid():
        result.errors = form_errors(flatten_field_errors(serializer.errors))
        return result
    result.spec = serializer.to_spec()
    return result


def upload_fields() -> tuple[str, ...]:
    """The form's file fields, in the order `draft_from_post` stores them."""
    references = tuple(f"reference_{slot}" for slot in range(1, REFERENCE_SLOTS + 1))
    return ("source_image", "mask_image", *references, "sketch_image")


def uploads_sent(files: MultiValueDict, *, oversized: set[str]) -> list[str]:
    """The file fields of a post that `draft_from_post` would store (an oversized file is refused unread)."""
    return [name for name in upload_fields() if files.get(name) is not None and name not in oversized]


def _uuid_or_none(value: str) -> str | None:
    """An earlier upload's id from a hidden field; anything that is not an id is dropped."""
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


# API paths whose form field is named otherwise (the rest: `params.seed` -> `seed`, `prompt` -> `prompt`).
_INPUT_FIELDS = {
    "source_asset_id": "source_image",
    "mask_asset_id": "mask_image",
    "sketch": "sketch_image",
    "references": "references",  # an error about all of them at once (too many)
}


def form_field_for(path: str) -> str:
    """The form field an API field path belongs to: `params.seed` -> `seed`;
    `inputs.references.1.weight` -> `reference_2` (the form draws a draft's references in its
    slots in order: form_values); `inputs.sketch.asset_id` -> `sketch_image`."""
    parts = path.split(".")
    if parts[0] == "params" and len(parts) > 1:
        return parts[1]
    if parts[0] != "inputs" or len(parts) == 1:
        return parts[0]
    if parts[1] == "references" and len(parts) > 2 and parts[2].isdigit():
        return f"reference_{int(parts[2]) + 1}"
    return _INPUT_FIELDS.get(parts[1], parts[1])


def form_errors(api_errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """The API's errors (flattened field paths -> messages) by form field."""
    named: dict[str, list[str]] = {}
    for path, messages in api_errors.items():
        named.setdefault(form_field_for(path), []).extend(messages)
    return named


def draft_spec(draft: dict) -> JobSpec | None:
    """A stored draft as a job, if it is one (for the estimate drawn with the page); reads only."""
    serializer = JobCreateSerializer(data=draft, context={FROM_STRINGS: True})
    return serializer.to_spec() if serializer.is_valid() else None


def form_values(draft: dict) -> dict:
    """The draft flattened back to the form's field names, for rendering."""
    values = {name: draft.get(name, "") for name in TOP_FIELDS}
    values.update({name: draft.get("params", {}).get(name, "") for name in PARAM_FIELDS})
    inputs = draft.get("inputs", {})
    values["source_image_asset"] = inputs.get("source_asset_id", "")
    values["mask_image_asset"] = inputs.get("mask_asset_id", "")
    for slot in range(1, REFERENCE_SLOTS + 1):
        values[f"reference_{slot}_asset"] = ""
        values[f"reference_{slot}_weight"] = 0.5
    for slot, reference in enumerate(inputs.get("references", [])[:REFERENCE_SLOTS], start=1):
        values[f"reference_{slot}_asset"] = reference.get("asset_id", "")
        values[f"reference_{slot}_weight"] = reference.get("weight", 0.5)
    sketch = inputs.get("sketch") or {}
    values["sketch_image_asset"] = sketch.get("asset_id", "")
    values["sketch_image_weight"] = sketch.get("weight", 0.8)
    return values
