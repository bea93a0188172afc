"""The only code in the portal that talks to Azure Batch: specs in, records and our errors out."""

from .budget import RequestBudget, SharedBudget, budget_for
from .client import BatchGateway, TaskListing
from .errors import AlreadyExists, AuthFailed, GatewayError, NotFound, Rejected, Transient
from .identity import entra_credential
from .records import (
                      AddTasksResult,
                      FileRecord,
                      JobRecord,
                      NodeRecord,
                      PoolRecord,
                      TaskCountsRecord,
                      TaskFailure,
                      TaskRecord,
)
from .specs import ImageSpec, JobSpec, OutputFileSpec, PoolSpec, ResourceFileSpec, TaskSpec
from .storage import BlobInfo, BlobStore, Containers

__all__ = [
    "BatchGateway", "TaskListing", "RequestBudget", "SharedBudget", "budget_for", "entra_credential",
    "GatewayError", "NotFound", "AlreadyExists", "Transient", "Rejected", "AuthFailed",
    "PoolRecord", "NodeRecord", "JobRecord", "TaskCountsRecord", "TaskRecord",
    "FileRecord", "TaskFailure", "AddTasksResult",
    "BlobStore", "BlobInfo", "Containers",
    "ImageSpec", "ResourceFileSpec", "OutputFileSpec", "PoolSpec", "JobSpec", "TaskSpec",
]
