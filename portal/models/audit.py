"""The audit history's rows: append-only, hash-chained records of what people did (written by portal.audit.services)."""

from django.db import models


class AuditEvent(models.Model):
    """One thing a person did, appended and never changed: each row carries the hash of the previous one, so a
    row edited or removed behind the app's back breaks the chain (`manage.py audit_verify`); on PostgreSQL a
    trigger refuses UPDATE and DELETE outright. No foreign keys: deleting a user or a job must not touch history."""

    at = models.DateTimeField()
    actor_id = models.IntegerField(null=True, blank=True, help_text="Id of the user; empty for the system.")
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=200, blank=True)
    object_label = models.CharField(max_length=300, blank=True)
    team_id = models.IntegerField(null=True, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    reason = models.TextField(blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [before, after]}")
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["-at"], name="audit_at"),
            models.Index(fields=["actor_id", "-at"], name="audit_actor"),
            models.Index(fields=["action", "-at"], name="audit_action"),
            models.Index(fields=["object_type", "object_id", "-at"], name="audit_object"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} {self.object_label}"
