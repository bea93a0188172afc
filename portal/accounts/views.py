"""Sign-in pages: the local login form (with a "Sign in with Microsoft" button when single sign-on is set up), the
single sign-on redirects, and the page shown while an account is locked after too many failed attempts."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponseBase
from mozilla_django_oidc import views as oidc_views

from portal.accounts import oidc


@login_not_required
def login(request: HttpRequest) -> HttpResponseBase:
    # The flag is read per request (not when the URL conf loads), so settings decide it in one place.
    view = auth_views.LoginView.as_view(template_name="accounts/login.html",
                                       extra_context={"oidc_enabled": oidc.enabled()})
    return view(request)


def _when_configured(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """The single sign-on routes exist always, and answer 404 until OIDC_RP_CLIENT_ID is set: their views read the
    identity provider's endpoints when they are built, which an unconfigured portal does not have."""

    @login_not_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not oidc.enabled():
            raise Http404("Single sign-on is not configured.")
        return view(request, *args, **kwargs)

    return wrapper


oidc_init = _when_configured(oidc_views.OIDCAuthenticationRequestView.as_view())
oidc_callback = _when_configured(oidc_views.OIDCAuthenticationCallbackView.as_view())
logout = login_not_required(auth_views.LogoutView.as_view())
