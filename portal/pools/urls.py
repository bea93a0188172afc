"""Routes of the pool pages and actions, included by portal/urls.py at the site's root."""

from django.urls import path

from portal.pools import views

urlpatterns = [
    path("pools/", views.pool_list, name="pool_list"),
    path("pools/<int:pk>/", views.pool_detail, name="pool_detail"),
    path("pools/new/", views.pool_create, name="pool_create"),
    path("pools/new/confirm/", views.pool_create_confirm, name="pool_create_confirm"),
    path("pools/<int:pk>/resize/", views.pool_resize, name="pool_resize"),
    path("pools/<int:pk>/resize/confirm/", views.pool_resize_confirm, name="pool_resize_confirm"),
    path("pools/<int:pk>/delete/", views.pool_delete, name="pool_delete"),
    path("pools/<int:pk>/delete/confirm/", views.pool_delete_confirm, name="pool_delete_confirm"),
]
