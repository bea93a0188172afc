"""URL routes of the portal: each domain's own routes, included at the site's root (names and paths are the domain's),
and the admin."""

from django.contrib import admin
from django.urls import include, path

from portal import errors

urlpatterns = [
    path("", include("portal.dashboard.urls")),
    path("", include("portal.pools.urls")),
    path("", include("portal.jobs.urls")),
    path("", include("portal.logs.urls")),
    path("", include("portal.results.urls")),
    path("", include("portal.submit.urls")),
    path("", include("portal.audit.urls")),
    path("", include("portal.accounts.urls")),
    path("", include("portal.costs.urls")),
    path("admin/", admin.site.urls),
    path("favicon.ico", errors.favicon, name="favicon"),
]

# Error pages in the portal's layout (portal/errors.py); CSRF_FAILURE_VIEW in settings names the fifth.
handler400 = errors.bad_request
handler403 = errors.permission_denied
handler404 = errors.page_not_found
handler500 = errors.server_error
