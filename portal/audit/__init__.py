"""The audit history: append-only, hash-chained records of what people did, their pages and export, and the
History sections of the other pages."""
