"""Hardening: production settings pass `check --deploy`, security headers and CSP on pages, CSRF refusals, escaping of
hostile names, no secrets in logs, and IDOR (another team's objects look missing and stay unchanged)."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from portal.models import Job, JobTemplate
from portal.redact import RedactSecretsFilter, redact
from tests.factories import JobFactory, TaskFactory

REPO = Path(__file__).resolve().parents[2]


def test_production_settings_pass_check_deploy_without_warnings(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "OIDC_"))}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings", DJANGO_SECRET_KEY="x" * 20 + "a-proper-random-key-0123456789!",
               PORTAL_VAR_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_debug_mode_fails_check_deploy(tmp_path):
    # The check can fail: the same command with DEBUG on reports it.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "OIDC_"))}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings", DJANGO_DEBUG="1", PORTAL_VAR_DIR=str(tmp_path),
               DJANGO_SECRET_KEY="x" * 20 + "a-proper-random-key-0123456789!")
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "security.W018" in done.stdout + done.stderr


@pytest.mark.django_db
def test_pages_carry_csp_and_security_headers(signed_in):
    response = signed_in.get(reverse("dashboard"))
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-eval'" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_templates_have_no_inline_script_or_evaluated_htmx():
    # The CSP forbids them; finding them here is cheaper than finding a broken page.
    problems = []
    for path in (REPO / "templates").rglob("*.html"):
        text = re.sub(r"\{#.*?#\}", "", path.read_text())  # comments may name what they forbid
        for needle in ("<script>", "hx-on", "js:", "javascript:", "onclick=", "onload=", "onerror="):
            if needle in text:
                problems.append(f"{path.relative_to(REPO)}: {needle}")
        if "hx-trigger=" in text and "[" in "".join(part.split('"')[0] for part in text.split('hx-trigger="')[1:]):
            problems.append(f"{path.relative_to(REPO)}: an hx-trigger [filter] (evaluated code)")
    assert not problems


@pytest.mark.django_db
def test_post_without_csrf_token_is_refused(user, team_a):
    job = JobFactory(submitted_by=user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(reverse("job_terminate", args=[job.pk]), {"reason": "no token"})
    assert response.status_code == 403
    assert Job.objects.get(pk=job.pk).state == job.state


@pytest.mark.django_db
def test_post_with_a_foreign_origin_is_refused_under_https(user):
    job = JobFactory(submitted_by=user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(reverse("job_terminate", args=[job.pk]), secure=True)
    token = page.cookies["csrftoken"].value
    for header in ({"HTTP_ORIGIN": "https://evil.example"}, {"HTTP_REFERER": "https://evil.example/page"}):
        response = client.post(reverse("job_terminate", args=[job.pk]), {"reason": "x", "csrfmiddlewaretoken": token},
                               secure=True, HTTP_HOST="localhost", **header)
        assert response.status_code == 403, header
    assert Job.objects.get(pk=job.pk).state == job.state


PAYLOAD = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


@pytest.mark.django_db
def test_hostile_names_are_escaped(signed_in, user):
    job = JobFactory(display_name=PAYLOAD, submitted_by=user)
    task = TaskFactory(job=job, display_name=PAYLOAD, command_line=f"echo '{PAYLOAD}'",
                       environment=[{"name": "X", "value": PAYLOAD}])
    for url in (reverse("job_list"), reverse("job_detail", args=[job.pk]), reverse("task_detail", args=[task.pk]),
                reverse("dashboard")):
        html = signed_in.get(url).content.decode()
        assert "<script>alert(1)" not in html and "<img src=x onerror" not in html, url
    assert "&lt;script&gt;alert(1)" in signed_in.get(reverse("job_detail", args=[job.pk])).content.decode()


@pytest.mark.django_db
def test_hostile_template_names_are_escaped(signed_in):
    template = JobTemplate.objects.get(slug="render-frames")
    template.name, template.description = PAYLOAD, PAYLOAD
    template.save(update_fields=["name", "description"])
    html = signed_in.get(reverse("submit_template_list")).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html


@pytest.mark.django_db
def test_idor_another_teams_objects_look_missing_and_stay_unchanged(client, submitter, operator_b, team_a):
    job = JobFactory(submitted_by=submitter, team=team_a)
    task = TaskFactory(job=job)
    client.force_login(operator_b)
    for name, pk in (("job_terminate", job.pk), ("job_retry_failed", job.pk), ("task_terminate", task.pk),
                     ("task_delete", task.pk)):
        assert client.get(reverse(name, args=[pk])).status_code == 404
        assert client.post(reverse(name, args=[pk]), {"reason": "not mine"}).status_code == 404
    job.refresh_from_db()
    assert job.state == "active" and job.gone_at is None and job.team_id == team_a.pk
    # Ids that do not exist answer the same.
    assert client.get(reverse("job_terminate", args=[job.pk + 10_000])).status_code == 404


def test_redaction_blanks_sas_keys_and_passwords():
    line = ("GET https://acct.blob.core.windows.net/c/b?sv=2024&se=2026&sp=r&sig=abc%2Bdef%3D done; "
            "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=s3cr3tKey==;EndpointSuffix=core.windows.net "
            "postgres://portal:hunter2@db:5432/portal")
    cleaned = redact(line)
    for secret in ("abc%2Bdef%3D", "s3cr3tKey==", "hunter2"):
        assert secret not in cleaned
    assert "sp=r" in cleaned and "AccountName=a" in cleaned and "db:5432" in cleaned


def test_log_records_are_redacted_by_the_configured_filter():
    logger = logging.getLogger("portal.test_redaction")
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactSecretsFilter)
                                                                   for f in h.filters))
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "upload to %s failed", (
        "https://a.blob.core.windows.net/c?sig=TOPSECRET",), None)
    for each in handler.filters:
        each.filter(record)
    assert "TOPSECRET" not in record.getMessage() and "sig=REDACTED" in record.getMessage()
    try:
        raise ValueError("AccountKey=LEAKED;")
    except ValueError:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    handler.filters[0].filter(record)
    assert "LEAKED" not in record.exc_text
