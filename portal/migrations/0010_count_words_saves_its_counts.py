"""The shipped “Count words” example saves each file's count as a result (count.txt in the task's outputs), so a first
team sees and downloads what its tasks produced. Added as the template's next version: past submissions keep the
version they ran."""

import copy

from django.db import migrations

SLUG = "count-words"
OLD_COMMAND = "wc -w {file}"
# tee: the count still goes to stdout, as before, and into the file the output rule uploads.
NEW_COMMAND = "wc -w {file} | tee count.txt"
OUTPUTS = [{"pattern": "count.txt", "upload_condition": "tasksuccess"}]


def save_counts(apps, schema_editor):
    JobTemplateVersion = apps.get_model("portal", "JobTemplateVersion")
    latest = JobTemplateVersion.objects.filter(template__slug=SLUG).order_by("-number").first()
    # Only the example as shipped: a template an admin has changed is theirs.
    if latest is None or latest.spec.get("command_line") != OLD_COMMAND or latest.spec.get("outputs"):
        return
    spec = copy.deepcopy(latest.spec)
    spec["command_line"], spec["outputs"] = NEW_COMMAND, OUTPUTS
    JobTemplateVersion.objects.create(template=latest.template, number=latest.number + 1, spec=spec)


def forget_counts(apps, schema_editor):
    JobTemplateVersion = apps.get_model("portal", "JobTemplateVersion")
    latest = JobTemplateVersion.objects.filter(template__slug=SLUG).order_by("-number").first()
    if latest is not None and latest.spec.get("outputs") == OUTPUTS and not latest.submissions.exists():
        latest.delete()


class Migration(migrations.Migration):

    dependencies = [
        ("portal", "0009_submission_name_terminated_tasks"),
    ]

    operations = [migrations.RunPython(save_counts, forget_counts)]
