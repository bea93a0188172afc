"""Routes of the submit pages, included by portal/urls.py at the site's root."""

from django.urls import path

from portal.submit import approval_views, retry_views, views

urlpatterns = [
    path("submit/", views.submit_template_list, name="submit_template_list"),
    path("submit/<slug:slug>/", views.submit_form, name="submit_form"),
    path("submit/<slug:slug>/uploads/", views.submit_upload, name="submit_upload"),
    path("submit/<slug:slug>/confirm/", views.submit_confirm, name="submit_confirm"),
    path("submissions/", views.submission_list, name="submission_list"),
    path("submissions/<uuid:public_id>/", views.submission_detail, name="submission_detail"),
    path("submissions/<uuid:public_id>/decide/", approval_views.submission_decide, name="submission_decide"),
    path("submissions/<uuid:public_id>/retry-failed/", retry_views.submission_retry_failed,
         name="submission_retry_failed"),
]
