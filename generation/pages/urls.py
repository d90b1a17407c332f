from django.urls import path, register_converter

from generation.pages import activity, collection, favicon, home, job_actions, jobs, remix, studio


class RowIdConverter:
    """A row id that fits a 64-bit column: a longer number is a 404, not a database error."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(RowIdConverter, "rowid")

urlpatterns = [
    path("", home.home, name="home"),
    path("studio/", studio.studio, name="studio"),
    path("studio/new/", studio.tab_new, name="studio-new"),
    path("studio/<rowid:tab_id>/", studio.tab_page, name="studio-tab"),
    path("studio/<rowid:tab_id>/rename/", studio.tab_rename_view, name="studio-rename"),
    path("studio/<rowid:tab_id>/close/", studio.tab_close_view, name="studio-close"),
    path("studio/<rowid:tab_id>/estimate/", studio.tab_estimate, name="studio-estimate"),
    path("studio/<rowid:tab_id>/form/", studio.tab_form_settings, name="studio-form"),
    path("studio/<rowid:tab_id>/generate/", studio.tab_generate, name="studio-generate"),
    path("studio/<rowid:tab_id>/progress/", studio.tab_progress, name="studio-progress"),
    path("jobs/", jobs.job_list, name="job-list"),
    path("jobs/<uuid:job_id>/", jobs.job_page, name="job-page"),
    path("jobs/<uuid:job_id>/progress/", jobs.job_progress, name="job-progress"),
    path("jobs/<uuid:job_id>/cancel/", job_actions.job_cancel_view, name="job-cancel"),
    path("jobs/<uuid:job_id>/retry/", job_actions.job_retry_view, name="job-retry"),
    path("jobs/<uuid:job_id>/edit-prompt/", job_actions.job_edit_prompt_view, name="job-edit-prompt"),
    path("collection/", collection.collection, name="collection"),
    path("collection/<uuid:look_id>/", collection.look_page, name="look-page"),
    path("collection/<uuid:look_id>/delete/", collection.look_delete, name="look-delete"),
    path("collection/<uuid:look_id>/remix/", remix.look_remix, name="look-remix"),
    path("collection/<uuid:look_id>/variations/", remix.look_variations, name="look-variations"),
    path("activity/", activity.activity, name="activity"),
    path("queue/", activity.queue_page, name="queue"),
    path("healthz", home.healthz, name="healthz"),
    path("favicon.ico", favicon.favicon, name="favicon"),
]
