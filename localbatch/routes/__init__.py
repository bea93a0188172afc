"""The HTTP routes of localbatch, one module per resource; each module lists its routes in `ROUTES`."""
