"""Views of the portal, one module per area (dashboard, pools, jobs, tasks, pool actions)."""
