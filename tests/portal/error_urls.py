"""The portal's URL conf plus two views that fail on purpose, for the error-page tests (tests/portal/test_errors.py)."""

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.urls import path

from portal.urls import handler400, handler403, handler404, handler500
from portal.urls import urlpatterns as portal_urlpatterns

SECRET_IN_ERROR = "AccountKey=c2VjcmV0LWluLXRoZS1lcnJvcg=="


# Open to everyone, so every persona, anonymous included, reaches the failure itself.
@login_not_required
def broken(request):
    raise RuntimeError(f"the view broke while holding {SECRET_IN_ERROR}")


@login_not_required
def suspicious(request):
    raise SuspiciousOperation("a header no browser sends")


urlpatterns = [*portal_urlpatterns, path("broken/", broken), path("suspicious/", suspicious)]
__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
