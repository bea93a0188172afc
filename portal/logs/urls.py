"""Routes of task output and node files, included by portal/urls.py at the site's root."""

from django.urls import path

from portal.logs import attempt_views, node_file_views, views

urlpatterns = [
    path("tasks/<int:pk>/output/", views.task_output, name="task_output"),
    path("tasks/<int:pk>/output/window/", views.task_output_window, name="task_output_window"),
    path("tasks/<int:pk>/output/tail/", views.task_output_tail, name="task_output_tail"),
    path("tasks/<int:pk>/output/download/", views.task_output_download, name="task_output_download"),
    path("tasks/<int:pk>/output/search/", views.task_output_search, name="task_output_search"),
    path("tasks/<int:pk>/output/link/", views.task_output_link, name="task_output_link"),
    path("tasks/<int:pk>/attempts/<int:number>/", attempt_views.task_attempt_output, name="task_attempt_output"),
    path("jobs/<int:pk>/logs.zip", views.job_logs_zip, name="job_logs_zip"),
    path("jobs/<int:pk>/preparation/", node_file_views.job_preparation, name="job_preparation"),
    path("pools/<int:pk>/nodes/<str:node_id>/files/", node_file_views.node_files, name="node_files"),
]
