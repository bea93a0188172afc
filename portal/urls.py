"""URL routes of the portal: each domain's own routes, included at the site's root (names and paths are the domain's),
and the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("portal.dashboard.urls")),
    path("", include("portal.pools.urls")),
    path("", include("portal.jobs.urls")),
    path("", include("portal.logs.urls")),
    path("", include("portal.submit.urls")),
    path("", include("portal.audit.urls")),
    path("", include("portal.accounts.urls")),
    path("admin/", admin.site.urls),
]
