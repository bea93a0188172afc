"""Teams in the admin: edited from the team's page or the user's, recorded in the audit history, and felt at once in
team scope; the "Admin" link shown only to those the admin site lets in."""

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.models import AuditEvent, Team
from tests.factories import JobFactory
from tests.personas import client_for, person

pytestmark = pytest.mark.django_db


def user_form(user, *, teams):
    """What the admin's user page posts back for `user` unchanged, but for `teams`."""
    joined = timezone.localtime(user.date_joined)
    return {"username": user.username, "first_name": user.first_name, "last_name": user.last_name,
            "email": user.email, "is_active": "on", "groups": [group.pk for group in user.groups.all()],
            "date_joined_0": joined.strftime("%Y-%m-%d"), "date_joined_1": joined.strftime("%H:%M:%S"),
            "teams": [team.pk for team in teams]}


def team_changes(user, *, by):
    """The team changes to `user` the audit history says `by` made."""
    return [event.changes["teams"] for event in AuditEvent.objects.filter(
        action="user.team_change", object_id=str(user.pk), actor_id=by.pk).order_by("id")]


def team_scope_job_ids(user):
    page = client_for(user).get(reverse("job_list"), {"scope": "team"})
    assert page.status_code == 200
    return page.content.decode()


def test_an_admin_adds_a_user_to_a_team_on_the_user_page_and_their_team_scope_follows(
        portal_admin, submitter, team_a, team_b):
    JobFactory(job_id="team-b-render", team=team_b)
    assert "team-b-render" not in team_scope_job_ids(submitter)
    page = client_for(portal_admin).get(reverse("admin:auth_user_change", args=[submitter.pk]))
    assert page.status_code == 200 and 'name="teams"' in page.content.decode()

    response = client_for(portal_admin).post(reverse("admin:auth_user_change", args=[submitter.pk]),
                                             user_form(submitter, teams=[team_a, team_b]))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert set(submitter.teams.all()) == {team_a, team_b}
    assert "team-b-render" in team_scope_job_ids(submitter)
    assert team_changes(submitter, by=portal_admin) == [[["Team A"], ["Team A", "Team B"]]]


def test_an_admin_edits_a_teams_members_on_its_page_and_the_list_counts_them(portal_admin, submitter, viewer,
                                                                              team_a):
    admin = client_for(portal_admin)
    response = admin.post(reverse("admin:portal_team_change", args=[team_a.pk]),
                          {"name": "Team A", "members": [viewer.pk]})

    assert response.status_code == 302
    assert list(team_a.members.all()) == [viewer]
    assert team_changes(viewer, by=portal_admin) == [[[], ["Team A"]]]
    assert team_changes(submitter, by=portal_admin) == [[["Team A"], []]]
    listing = admin.get(reverse("admin:portal_team_changelist"))
    assert listing.status_code == 200
    assert [(team.name, team.member_count) for team in listing.context["cl"].result_list] == [("Team A", 1)]


def test_someone_who_may_change_users_but_not_teams_cannot_change_teams(submitter, team_a, team_b):
    user_manager = person("uma-users", "Viewer", is_staff=True, permissions=["auth.view_user", "auth.change_user"])

    response = client_for(user_manager).post(reverse("admin:auth_user_change", args=[submitter.pk]),
                                             {**user_form(submitter, teams=[team_b]), "first_name": "Sue"})

    assert response.status_code == 302, "the rest of the page is saved"
    submitter.refresh_from_db()
    assert submitter.first_name == "Sue"
    assert list(submitter.teams.all()) == [team_a]
    assert team_changes(submitter, by=user_manager) == []
    assert not Team.objects.filter(name="Team B", members=submitter).exists()


@pytest.mark.parametrize("persona", ["viewer", "submitter", "operator_a", "no_role"])
def test_only_those_the_admin_lets_in_get_the_admin_link(request, persona, portal_admin):
    someone = request.getfixturevalue(persona)
    client = client_for(someone)
    admin_link = f'href="{reverse("admin:index")}"'

    assert admin_link not in client.get(reverse("dashboard")).content.decode()
    refused = client.get(reverse("admin:index"))
    assert refused.status_code == 302 and "/admin/login/" in refused["Location"]
    assert admin_link in client_for(portal_admin).get(reverse("dashboard")).content.decode()
