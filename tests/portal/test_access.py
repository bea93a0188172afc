"""portal.access: who reads, who submits, who acts on what; the job list's scopes; a submission's team."""

import html as htmllib
import re

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from batchsync import submit
from portal import access
from portal.models import Job, JobTemplate
from portal.pagination import PAGE_SIZE
from portal.submit import services
from tests.factories import JobFactory, TaskFactory
from tests.personas import person, team

pytestmark = pytest.mark.django_db


def test_reading_needs_a_role(viewer, no_role, django_user_model):
    assert access.can_read(viewer)
    assert not access.can_read(no_role)
    root = django_user_model.objects.create_superuser("root", password="x")
    assert access.can_read(root)
    viewer.is_active = False
    assert not access.can_read(viewer)


def test_who_may_act_on_a_teams_job(submitter, other_submitter, operator_a, operator_b, portal_admin, viewer,
                                    team_a):
    job = JobFactory(submitted_by=submitter, team=team_a)
    task = TaskFactory(job=job)
    for obj in (job, task):
        assert access.can_act_on(submitter, obj) and access.can_act_on(operator_a, obj)
        assert access.can_act_on(portal_admin, obj)
        assert not access.can_act_on(other_submitter, obj) and not access.can_act_on(operator_b, obj)
        assert not access.can_act_on(viewer, obj)


def test_no_role_page_for_signed_in_accounts_without_a_role(client, no_role):
    client.force_login(no_role)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 403 and "no role in the portal yet" in response.content.decode()


def test_job_list_scopes(client, submitter, other_submitter, operator_a, team_a, team_b):
    mine = JobFactory(submitted_by=submitter, team=team_a, job_id="job-mine")
    teammates = JobFactory(submitted_by=operator_a, team=team_a, job_id="job-teammate")
    theirs = JobFactory(submitted_by=other_submitter, team=team_b, job_id="job-theirs")
    outside = JobFactory(job_id="job-outside")
    client.force_login(submitter)

    def shown(scope=None):
        html = client.get(reverse("job_list"), {"scope": scope} if scope else {}).content.decode()
        return {job.job_id for job in (mine, teammates, theirs, outside) if f">{job.job_id}<" in html}

    assert shown() == {"job-mine", "job-teammate", "job-theirs", "job-outside"}  # All by default
    assert shown("my") == {"job-mine"}
    assert shown("team") == {"job-mine", "job-teammate"}
    # The choice is kept for the session: the next plain visit stays on "team".
    assert shown() == {"job-mine", "job-teammate"}
    assert 'value="team" checked' in client.get(reverse("job_list")).content.decode()
    assert shown("all") == {"job-mine", "job-teammate", "job-theirs", "job-outside"}


def test_team_scope_keeps_keyset_pages(client, submitter, team_a):
    for n in range(PAGE_SIZE + 5):
        JobFactory(submitted_by=submitter, team=team_a, job_id=f"team-{n:03d}")
    JobFactory.create_batch(10)
    client.force_login(submitter)
    first = client.get(reverse("job_list"), {"scope": "team"}).content.decode()

    rows = re.compile(r'id="job-\d+"')
    assert len(rows.findall(first)) == PAGE_SIZE

    nxt = htmllib.unescape(re.search(r'rel="next" href="([^"]+)"', first).group(1))
    second = client.get(reverse("job_list") + nxt).content.decode()
    assert len(rows.findall(second)) == 5 and "team-000" in second


def test_team_scope_without_a_team_says_so(client, viewer):
    client.force_login(viewer)
    html = client.get(reverse("job_list"), {"scope": "team"}).content.decode()
    assert "You are not in a team yet" in html


def test_submitting_needs_the_role_and_records_the_team(viewer, django_user_model):
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    with pytest.raises(PermissionDenied):
        services.submission_create(user=viewer, template_version=version, parameters={"frames": "3"})

    b, a = team("Zeta"), team("Alpha")
    both = person("two-teams", "Submitter", teams=[b, a])
    submission = services.submission_create(user=both, template_version=version, parameters={"frames": "3"})
    assert submission.team == a  # in several teams: the first by name
    solo = person("no-team", "Submitter")
    assert services.submission_create(user=solo, template_version=version, parameters={"frames": "3"}).team is None


def test_the_mirrored_job_gets_the_submissions_team(submitter, team_a):
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    submission = services.submission_create(user=submitter, template_version=version, parameters={"frames": "3"})
    job = JobFactory(account=submission.account, job_id=submission.job_id)  # as the sync would create it

    assert submit.link_submitted_jobs() == 1
    job = Job.objects.get(pk=job.pk)
    assert job.submitted_by == submitter and job.team == team_a


def test_submission_list_scopes(client, submitter, operator_a, operator_b, team_a):
    version = JobTemplate.objects.get(slug="render-frames").current_version()
    theirs = services.submission_create(user=submitter, template_version=version, parameters={"frames": "3"})

    def listed(who, scope):
        client.force_login(who)
        return theirs.job_id in client.get(reverse("submission_list"), {"scope": scope}).content.decode()

    assert listed(submitter, "my") and listed(submitter, "team")
    assert not listed(operator_a, "my") and listed(operator_a, "team")  # team A's Operator acts on it
    assert not listed(operator_b, "team")
    # The listed submission opens for the Operator who sees it.
    client.force_login(operator_a)
    assert client.get(reverse("submission_detail", args=[theirs.public_id])).status_code == 200
