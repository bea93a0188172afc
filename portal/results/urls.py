"""Routes of the results pages, included by portal/urls.py at the site's root."""

from django.urls import path

from portal.results import views

urlpatterns = [
    path("jobs/<int:pk>/results/", views.job_results, name="job_results"),
    path("jobs/<int:pk>/results.zip", views.job_results_zip, name="job_results_zip"),
    path("tasks/<int:pk>/results/", views.task_results, name="task_results"),
    path("tasks/<int:pk>/results/preview/", views.task_result_preview, name="task_result_preview"),
    path("tasks/<int:pk>/results/image/", views.task_result_image, name="task_result_image"),
    path("tasks/<int:pk>/results/download/", views.task_result_download, name="task_result_download"),
]
