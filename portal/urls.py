"""URL routes of the portal."""

from django.contrib import admin
from django.urls import include, path

from portal.views import audit as audit_views
from portal.views import dashboard, job_actions, jobs, pool_actions, pools, signin, tasks
from portal.views import triage

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("healthz", dashboard.healthz, name="healthz"),
    path("pools/", pools.pool_list, name="pool_list"),
    path("pools/<int:pk>/", pools.pool_detail, name="pool_detail"),
    path("pools/new/", pool_actions.pool_create, name="pool_create"),
    path("pools/new/confirm/", pool_actions.pool_create_confirm, name="pool_create_confirm"),
    path("pools/<int:pk>/resize/", pool_actions.pool_resize, name="pool_resize"),
    path("pools/<int:pk>/resize/confirm/", pool_actions.pool_resize_confirm, name="pool_resize_confirm"),
    path("pools/<int:pk>/delete/", pool_actions.pool_delete, name="pool_delete"),
    path("pools/<int:pk>/delete/confirm/", pool_actions.pool_delete_confirm, name="pool_delete_confirm"),
    path("jobs/", jobs.job_list, name="job_list"),
    path("jobs/<int:pk>/", jobs.job_detail, name="job_detail"),
    path("jobs/<int:pk>/terminate/", job_actions.job_terminate, name="job_terminate"),
    path("jobs/<int:pk>/retry-failed/", job_actions.job_retry_failed, name="job_retry_failed"),
    path("tasks/<int:pk>/", tasks.task_detail, name="task_detail"),
    path("tasks/<int:pk>/terminate/", job_actions.task_terminate, name="task_terminate"),
    path("tasks/<int:pk>/delete/", job_actions.task_delete, name="task_delete"),
    path("", include("portal.logs.urls")),
    path("", include("portal.submit.urls")),
    path("audit/", audit_views.audit_list, name="audit_list"),
    path("audit/export.csv", audit_views.audit_export, name="audit_export"),
    path("failures/", triage.failure_triage, name="failure_triage"),
    path("failures/retry/", triage.failure_retry, name="failure_retry"),
    path("login/", signin.login, name="login"),
    path("logout/", signin.logout, name="logout"),
    # Single sign-on (Microsoft Entra ID); 404 until OIDC_RP_CLIENT_ID is set. Names as mozilla-django-oidc expects.
    path("oidc/authenticate/", signin.oidc_init, name="oidc_authentication_init"),
    path("oidc/callback/", signin.oidc_callback, name="oidc_authentication_callback"),
    path("admin/", admin.site.urls),
]
