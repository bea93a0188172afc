"""Routes of signing in and out, included by portal/urls.py at the site's root."""

from django.urls import path

from portal.accounts import views

urlpatterns = [
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    # Single sign-on (Microsoft Entra ID); 404 until OIDC_RP_CLIENT_ID is set. Names as mozilla-django-oidc expects.
    path("oidc/authenticate/", views.oidc_init, name="oidc_authentication_init"),
    path("oidc/callback/", views.oidc_callback, name="oidc_authentication_callback"),
]
