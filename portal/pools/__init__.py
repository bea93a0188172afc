"""Pools: the mirror of Batch pools and their nodes, pool templates, and creating, resizing and deleting pools."""
