"""Microsoft Entra ID credentials for Batch and Storage, through azure-identity. Nothing secret passes through the
portal: a managed identity has none, and a service principal's secret or certificate stays in the environment
variables azure-identity reads (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET or
AZURE_CLIENT_CERTIFICATE_PATH)."""

from __future__ import annotations

import threading

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

_lock = threading.Lock()
_credentials: dict[str, TokenCredential] = {}


def entra_credential(managed_identity_client_id: str = "") -> TokenCredential:
    """The credential for one identity, made once per process: a credential caches its tokens until shortly before
    they expire, so every gateway of the process shares them instead of asking Entra ID again.

    With a client id, exactly that user-assigned managed identity (no fallback to anything else, so a missing
    identity is an error rather than a different one signing in); without, DefaultAzureCredential: a service
    principal or workload identity from the environment, else the system-assigned managed identity, else a
    developer's `az login`."""
    with _lock:
        credential = _credentials.get(managed_identity_client_id)
        if credential is None:
            credential = (ManagedIdentityCredential(client_id=managed_identity_client_id)
                          if managed_identity_client_id else DefaultAzureCredential())
            _credentials[managed_identity_client_id] = credential
        return credential
