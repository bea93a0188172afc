"""URL routes of the portal."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from portal.views import dashboard

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("healthz", dashboard.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
