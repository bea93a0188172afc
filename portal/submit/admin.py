"""Django admin for job templates (engineers define what people can run) and a read-only view of submissions.

A template's spec is edited as JSON; saving a changed spec makes a new version through
`portal.submit.services.job_template_version_create`, so versions already used by submissions never change."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest

from portal import access
from portal.admin_mirror import ReadOnlyAdmin
from portal.audit.admin import AuditedAdminMixin
from portal.models import JobTemplate, JobTemplateVersion, Submission
from portal.submit import services
from portal.submit.spec import SpecError


class JobTemplateForm(forms.ModelForm):
    spec = forms.JSONField(
        required=False, widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "style": "font-family: monospace"}),
        help_text="The current version's spec. Saving a different spec creates the next version; see "
                  "portal/submit/spec.py for the keys. Needs the “write command lines” permission.")

    class Meta:
        model = JobTemplate
        fields = ["name", "slug", "description", "is_active", "account"]

    def __init__(self, *args: Any, can_write: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.current_version() if self.instance.pk else None
        if current is not None:
            self.fields["spec"].initial = current.spec
        self.fields["spec"].disabled = not can_write

    def clean_spec(self) -> Any:
        spec = self.cleaned_data.get("spec")
        if spec is None or spec == "" or self.fields["spec"].disabled:
            return None
        try:
            services.job_template_spec_check(spec)
        except SpecError as exc:
            raise forms.ValidationError(exc.problems) from None
        return spec


_VERSION_COLUMNS = ("number", "created_by", "created_at", "spec_shown", "submissions_count")


class JobTemplateVersionInline(admin.TabularInline):
    model = JobTemplateVersion
    extra = 0
    can_delete = False
    fields = readonly_fields = _VERSION_COLUMNS
    ordering = ["-number"]

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.display(description="spec")
    def spec_shown(self, version: JobTemplateVersion) -> str:
        return json.dumps(version.spec, indent=1)[:2000]

    @admin.display(description="submissions")
    def submissions_count(self, version: JobTemplateVersion) -> int:
        return version.submissions.count()


@admin.register(JobTemplate)
class JobTemplateAdmin(AuditedAdminMixin, admin.ModelAdmin):
    audit_type = "job_template"
    form = JobTemplateForm
    list_display = ["name", "slug", "is_active", "account", "current_version_number", "updated_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [JobTemplateVersionInline]
    fields = ["name", "slug", "description", "is_active", "account", "spec", "audit_history"]
    readonly_fields = ["audit_history"]

    def get_form(self, request: HttpRequest, obj: JobTemplate | None = None, change: bool = False,
                 **kwargs: Any) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        can_write = access.can_write_command_lines(request.user)

        class BoundForm(form):  # type: ignore[valid-type, misc]  # the admin's generated form class
            def __init__(self, *args: Any, **inner: Any) -> None:
                super().__init__(*args, can_write=can_write, **inner)

        return BoundForm

    @admin.display(description="version")
    def current_version_number(self, template: JobTemplate) -> int | str:
        current = template.current_version()
        return current.number if current else "—"

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        spec = form.cleaned_data.get("spec")
        current = form.instance.current_version()
        if spec is None or (current is not None and current.spec == spec):
            return
        try:
            # The admin site lets in signed-in staff only.
            version = services.job_template_version_create(user=request.user,  # type: ignore[arg-type]
                                                           template=form.instance, spec=spec)
        except (PermissionDenied, services.SubmissionError) as exc:
            self.message_user(request, f"The spec was not saved: {getattr(exc, 'message', exc)}", messages.ERROR)
        else:
            self.message_user(request, f"Saved as version {version.number}.", messages.SUCCESS)


@admin.register(Submission)
class SubmissionAdmin(ReadOnlyAdmin):
    """Read-only: a submission's progress is written by batchsync/submit.py alone."""

    list_display = ["job_id", "state", "tasks_added", "total_tasks", "submitted_by", "template_version", "created_at"]
    list_filter = ["state"]
    search_fields = ["job_id", "submitted_by__username"]
    list_select_related = ["submitted_by", "template_version__template"]
