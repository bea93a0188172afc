"""Celery tasks: thin wrappers that load rows by id and call one sync or submit function.

None yet: the sync and submission code arrive later.
"""
