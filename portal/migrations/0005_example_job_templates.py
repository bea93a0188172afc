"""Ships three job templates that run on localbatch out of the box, on the demo pool `make dev` creates."""

from django.db import migrations

POOL = {"pool_id": "demo-pool"}

# Passed in the job's environment rather than downloaded, so the example needs no storage account.
PYTHON_SCRIPT = """\
import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--count", type=int)
parser.add_argument("--mode")
parser.add_argument("--label")
args = parser.parse_args()
for step in range(1, args.count + 1):
    print(f"{args.label}: step {step} of {args.count} ({args.mode})")
"""

TEMPLATES = [
    {
        "name": "Count words in each text file",
        "slug": "count-words",
        "description": "Upload text files; one task per file counts its words with wc -w.",
        "spec": {
            "pool": POOL,
            "command_line": "wc -w {file}",
            "parameters": [
                {"name": "texts", "type": "files", "label": "Text files", "required": True,
                 "extensions": [".txt", ".md", ".csv"], "max_files": 100, "max_file_bytes": 100 * 1000 * 1000,
                 "help": "Plain text files, up to 100 of them, 100 MB each."},
            ],
            "fan_out": {"kind": "files", "parameter": "texts", "as": "file"},
            "constraints": {"max_wall_clock_seconds": 600, "max_task_retry_count": 1},
        },
    },
    {
        "name": "Run a Python script with parameters",
        "slug": "python-script",
        "description": "One task runs a small Python script with a count, a mode and a label you choose.",
        "spec": {
            "pool": POOL,
            "command_line": 'python3 -c "$PORTAL_SCRIPT" --count {count} --mode {mode} --label {label}',
            "parameters": [
                {"name": "count", "type": "integer", "label": "Steps", "required": True, "default": 5,
                 "min": 1, "max": 1000, "help": "How many lines the script prints."},
                {"name": "mode", "type": "choice", "label": "Mode", "required": True, "default": "fast",
                 "choices": ["fast", "thorough"]},
                {"name": "label", "type": "string", "label": "Label", "required": True, "default": "run",
                 "max_length": 100, "help": "Printed on every line."},
            ],
            "environment": {"PORTAL_SCRIPT": PYTHON_SCRIPT},
            "constraints": {"max_wall_clock_seconds": 600},
        },
    },
    {
        "name": "Render frames 1..N",
        "slug": "render-frames",
        "description": "One task per frame; each “renders” by sleeping for the time you choose.",
        "spec": {
            "pool": POOL,
            "command_line": "echo rendering frame {frame}; sleep {seconds_per_frame}; echo frame {frame} done",
            "parameters": [
                {"name": "frames", "type": "integer", "label": "Frames", "required": True, "default": 10,
                 "min": 1, "max": 10000, "help": "Frames 1 to this number, one task each."},
                {"name": "seconds_per_frame", "type": "number", "label": "Seconds per frame", "default": 1,
                 "min": 0, "max": 60},
            ],
            "fan_out": {"kind": "range", "parameter": "frames", "start": 1, "as": "frame"},
            "constraints": {"max_wall_clock_seconds": 300, "max_task_retry_count": 2},
        },
    },
]


def add_templates(apps, schema_editor):
    JobTemplate = apps.get_model("portal", "JobTemplate")
    JobTemplateVersion = apps.get_model("portal", "JobTemplateVersion")
    for item in TEMPLATES:
        # An admin may have made a template of this name before migrating; leave theirs alone.
        template, created = JobTemplate.objects.get_or_create(
            slug=item["slug"], defaults={"name": item["name"], "description": item["description"]})
        if created:
            JobTemplateVersion.objects.create(template=template, number=1, spec=item["spec"])


def remove_templates(apps, schema_editor):
    JobTemplate = apps.get_model("portal", "JobTemplate")
    for template in JobTemplate.objects.filter(slug__in=[item["slug"] for item in TEMPLATES]):
        if not template.versions.filter(submissions__isnull=False).exists():
            template.versions.all().delete()
            template.delete()


class Migration(migrations.Migration):

    dependencies = [
        ("portal", "0004_job_templates_submissions"),
    ]

    operations = [migrations.RunPython(add_templates, remove_templates)]
