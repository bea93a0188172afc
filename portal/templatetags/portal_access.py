"""Template filters that ask portal.access what the person may do, so templates decide nothing themselves."""

from django import template

from portal import access

register = template.Library()


@register.filter
def can_submit(user: access.Person) -> bool:
    return access.can_submit(user)


@register.filter
def can_manage_pools(user: access.Person) -> bool:
    return access.can_manage_pools(user)


@register.filter
def can_use_admin(user: access.Person) -> bool:
    return access.can_use_admin(user)


@register.filter
def can_view_audit(user: access.Person) -> bool:
    return access.can_view_audit(user)


@register.filter
def can_act_on_some_work(user: access.Person) -> bool:
    return access.can_act_on_some_work(user)


@register.filter
def can_view_costs(user: access.Person) -> bool:
    return access.can_view_costs(user)
