"""The admin site's entry point (Django's autodiscovery imports this module): each domain registers its own models."""

from portal.accounts import admin as accounts_admin  # noqa: F401
from portal.costs import admin as costs_admin  # noqa: F401
from portal.jobs import admin as jobs_admin  # noqa: F401
from portal.pools import admin as pools_admin  # noqa: F401
from portal.submit import admin as submit_admin  # noqa: F401
