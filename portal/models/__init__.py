"""The portal's tables, one module per domain, all re-exported here: `from portal.models import Job` and the
migrations keep working whichever module a model lives in."""

from portal.models.accounts import BatchAccount, Team
from portal.models.audit import AuditEvent
from portal.models.costs import VmPrice
from portal.models.jobs import (
                                 TERMINATED_FAILURE_CODE,
                                 Job,
                                 JobOutcome,
                                 JobState,
                                 Outcome,
                                 Task,
                                 TaskAttempt,
                                 TaskDependency,
                                 TaskResult,
                                 TaskState,
)
from portal.models.pools import (
                                 MAX_NODES_PER_KIND,
                                 AllocationState,
                                 Node,
                                 NodeFillType,
                                 NodeState,
                                 Pool,
                                 PoolState,
                                 PoolTemplate,
                                 resource_files_problem,
)
from portal.models.submit import (
                                 UNFINISHED_SUBMISSION_STATES,
                                 JobTemplate,
                                 JobTemplateVersion,
                                 Submission,
                                 SubmissionState,
)

__all__ = [
    "MAX_NODES_PER_KIND", "TERMINATED_FAILURE_CODE", "UNFINISHED_SUBMISSION_STATES",
    "AllocationState", "AuditEvent", "BatchAccount", "Job", "JobOutcome", "Outcome",
    "JobState", "JobTemplate", "JobTemplateVersion", "Node", "NodeFillType", "NodeState", "Pool", "PoolState",
    "PoolTemplate", "Submission", "SubmissionState", "Task", "TaskAttempt", "TaskDependency", "TaskResult",
    "TaskState", "Team", "VmPrice",
    "resource_files_problem",
]
