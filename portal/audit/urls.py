"""Routes of the audit pages, included by portal/urls.py at the site's root."""

from django.urls import path

from portal.audit import views

urlpatterns = [
    path("audit/", views.audit_list, name="audit_list"),
    path("audit/export.csv", views.audit_export, name="audit_export"),
]
