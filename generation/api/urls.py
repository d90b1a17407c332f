from django.urls import path

from accounts.api import ApiKeyDetailView, ApiKeyListCreateView
from credits.api import CreditsView
from generation.api import events, views

app_name = "api"

urlpatterns = [
    path("jobs", views.JobListCreateView.as_view(), name="job-list"),
    path("jobs/estimate", views.JobEstimateView.as_view(), name="job-estimate"),
    path("jobs/<uuid:job_id>", views.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel", views.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<uuid:job_id>/retry", views.JobRetryView.as_view(), name="job-retry"),
    path("jobs/<uuid:job_id>/download", views.JobDownloadView.as_view(), name="job-download"),
    path("jobs/<uuid:job_id>/events", events.JobEventsView.as_view(), name="job-events"),
    path("jobs/<uuid:job_id>/outputs/<int:number>", views.JobOutputView.as_view(), name="job-output"),
    path(
        "jobs/<uuid:job_id>/outputs/<int:number>/poster", views.JobOutputPosterView.as_view(), name="job-output-poster"
    ),
    path("jobs/<uuid:job_id>/preview", views.JobPreviewView.as_view(), name="job-preview"),
    path("models", views.ModelListView.as_view(), name="model-list"),
    path("assets", views.AssetUploadView.as_view(), name="asset-upload"),
    path("assets/<uuid:asset_id>/content", views.AssetContentView.as_view(), name="asset-content"),
    path("activity", views.ActivityView.as_view(), name="activity"),
    path("activity/seen", views.ActivitySeenView.as_view(), name="activity-seen"),
    path("looks", views.LookListView.as_view(), name="look-list"),
    path("looks/<uuid:look_id>", views.LookDetailView.as_view(), name="look-detail"),
    path("credits", CreditsView.as_view(), name="credits"),
    path("keys", ApiKeyListCreateView.as_view(), name="key-list"),
    path("keys/<int:key_id>", ApiKeyDetailView.as_view(), name="key-detail"),
]
