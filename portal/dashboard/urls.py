"""Routes of the dashboard and the health check, included by portal/urls.py at the site's root."""

from django.urls import path

from portal import readiness
from portal.dashboard import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", readiness.readyz, name="readyz"),
]
