"""localbatch: a local Azure Batch service that the official azure-batch SDK can talk to.

It serves the Batch data-plane REST API on loopback and runs tasks as local processes.
"""

API_VERSION = "2025-06-01"

# Well-known development credentials, printed at start like Azurite's. Not a secret:
# localbatch listens on loopback and exists for laptops and tests.
DEV_ACCOUNT_NAME = "localbatch"
DEV_ACCOUNT_KEY = "bG9jYWxiYXRjaC1kZXYta2V5LW5vdC1hLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVmZ2hpams="
DEFAULT_PORT = 8089

__version__ = "0.1.0"
