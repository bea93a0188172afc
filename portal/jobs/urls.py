"""Routes of the job and task pages, their actions and failure triage, included by portal/urls.py at the site's
root."""

from django.urls import path

from portal.jobs import views

urlpatterns = [
    path("jobs/", views.job_list, name="job_list"),
    path("jobs/<int:pk>/", views.job_detail, name="job_detail"),
    path("jobs/<int:pk>/terminate/", views.job_terminate, name="job_terminate"),
    path("jobs/<int:pk>/retry-failed/", views.job_retry_failed, name="job_retry_failed"),
    path("tasks/<int:pk>/", views.task_detail, name="task_detail"),
    path("tasks/<int:pk>/terminate/", views.task_terminate, name="task_terminate"),
    path("tasks/<int:pk>/delete/", views.task_delete, name="task_delete"),
    path("failures/", views.failure_triage, name="failure_triage"),
    path("failures/retry/", views.failure_retry, name="failure_retry"),
]
