"""People and Batch accounts: roles, sign-in (local and Entra ID), login throttling, and how fresh each account's
mirror is."""
