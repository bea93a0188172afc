"""URL routes of the portal."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from portal.views import dashboard, jobs, pools, tasks

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("healthz", dashboard.healthz, name="healthz"),
    path("pools/", pools.pool_list, name="pool_list"),
    path("pools/<int:pk>/", pools.pool_detail, name="pool_detail"),
    path("jobs/", jobs.job_list, name="job_list"),
    path("jobs/<int:pk>/", jobs.job_detail, name="job_detail"),
    path("tasks/<int:pk>/", tasks.task_detail, name="task_detail"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
