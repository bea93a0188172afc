"""Routes of the cost pages, included by portal/urls.py at the site's root."""

from django.urls import path

from portal.costs import views

urlpatterns = [
    path("costs/", views.cost_overview, name="cost_overview"),
]
