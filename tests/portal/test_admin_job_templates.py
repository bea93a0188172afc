"""The admin of job templates: a changed spec becomes the next version (through the service, with its checks and
its permission), a used version never changes, and submissions can be looked at but not edited."""

import html
import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from portal.models import JobTemplate, Submission
from portal.submit import services
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def template():
    return JobTemplate.objects.get(slug="render-frames")


def change(client, template, **overrides):
    current = template.current_version().spec
    data = {"name": template.name, "slug": template.slug, "description": template.description, "is_active": "on",
            "spec": overrides.pop("spec", None) or json.dumps(current),
            "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0", **overrides}
    return client.post(reverse("admin:portal_jobtemplate_change", args=[template.pk]), data, follow=True)


def test_a_changed_spec_is_saved_as_the_next_version(admin_client, template):
    spec = {**template.current_version().spec, "priority": 10}
    response = change(admin_client, template, spec=json.dumps(spec))

    assert response.status_code == 200 and "Saved as version 2." in response.content.decode()
    assert template.current_version().number == 2 and template.current_version().spec["priority"] == 10
    assert template.versions.get(number=1).spec != spec


def test_an_unchanged_spec_makes_no_new_version(admin_client, template):
    change(admin_client, template)

    assert template.versions.count() == 1


def test_a_spec_with_problems_is_shown_and_not_saved(admin_client, template):
    spec = {**template.current_version().spec, "command_line": "echo {nobody}"}
    response = change(admin_client, template, spec=json.dumps(spec))

    assert "names no parameter of this template" in response.content.decode()
    assert template.versions.count() == 1


AUTO_POOL = {"vm_size": "standard_d2s_v3", "node_count": 1,
             "image": {"publisher": "canonical", "offer": "ubuntu", "sku": "22_04-lts",
                       "node_agent_sku_id": "batch.node.ubuntu 22.04"}}


def test_an_auto_pool_id_prefix_over_batchs_limit_is_shown_naming_the_field_and_not_saved(admin_client, template):
    spec = {**template.current_version().spec, "pool": {"auto_pool": {**AUTO_POOL, "id_prefix": "render-" + "x" * 20}}}
    response = change(admin_client, template, spec=json.dumps(spec))

    page = html.unescape(response.content.decode())
    assert ("pool.auto_pool.id_prefix: the auto pool's id prefix “render-xxxxxxxxxxxxxxxxxxxx” is 27 characters; "
            "Batch allows 1 to 20 letters, digits, hyphens and underscores.") in page
    assert template.versions.count() == 1


def test_an_auto_pool_template_is_saved(admin_client, template):
    spec = {**template.current_version().spec, "pool": {"auto_pool": AUTO_POOL}}
    response = change(admin_client, template, spec=json.dumps(spec))

    assert "Saved as version 2." in response.content.decode()
    assert template.current_version().parsed.auto_pool["vm_size"] == "standard_d2s_v3"


def test_staff_without_the_command_line_permission_cannot_change_the_spec(client, template):
    editor = UserFactory(username="editor", is_staff=True)
    editor.user_permissions.add(*Permission.objects.filter(codename__in=["change_jobtemplate", "view_jobtemplate"]))
    client.force_login(editor)
    spec = {**template.current_version().spec, "priority": 10}

    change(client, template, spec=json.dumps(spec), description="changed words")

    template.refresh_from_db()
    assert template.description == "changed words" and template.versions.count() == 1


def test_submissions_are_listed_and_read_only(admin_client, template):
    submission = services.submission_create(user=UserFactory(), template_version=template.current_version(),
                                            parameters={"frames": "3"})

    listing = admin_client.get(reverse("admin:portal_submission_changelist"))
    detail = admin_client.get(reverse("admin:portal_submission_change", args=[submission.pk]))

    assert submission.job_id in listing.content.decode() and detail.status_code == 200
    assert admin_client.get(reverse("admin:portal_submission_add")).status_code == 403
    admin_client.post(reverse("admin:portal_submission_delete", args=[submission.pk]), {"post": "yes"})
    assert Submission.objects.filter(pk=submission.pk).exists()
