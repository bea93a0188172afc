"""Template filters for the submission pages and the navigation: who may submit."""

from django import template

from portal import access

register = template.Library()


@register.filter
def can_submit(user) -> bool:
    return access.can_submit(user)
