"""Someone who is not an engineer sees what their tasks produced, in a real browser: submits “Count words in each
text file” with three files (uploaded straight to Azurite), lets it run on localbatch, opens the job's results,
previews one count, and downloads every result as one zip whose counts are right."""

import importlib
import io
import zipfile

import pytest
from django.apps import apps
from playwright.sync_api import expect

from tests.e2e import test_submit as submit_tests
from tests.e2e.test_submit import SCREENSHOTS, log_in, watch

pytestmark = pytest.mark.django_db(transaction=True)

# The submit test's fixtures: Azurite reachable from the live server's pages, the portal on this test's localbatch.
browser_storage, portal_backends = submit_tests.browser_storage, submit_tests.portal_backends


@pytest.fixture(autouse=True)
def example_templates():
    """The shipped examples as the migrations leave them (count-words saves count.txt since 0010): an earlier
    transactional test's flush removed them."""
    importlib.import_module("portal.migrations.0005_example_job_templates").add_templates(apps, None)
    importlib.import_module("portal.migrations.0010_count_words_saves_its_counts").save_counts(apps, None)


def test_a_submitter_previews_a_result_and_downloads_them_all_as_one_zip(page, live_server, portal_backends,
                                                                          tmp_path, submitter):
    account = portal_backends
    texts = {"one.txt": "alpha\n", "two words.txt": "alpha beta\n", "three.md": "alpha beta gamma " * 1000}
    for name, content in texts.items():
        (tmp_path / name).write_text(content)

    log_in(page, live_server, submitter.username)
    page.goto(f"{live_server.url}/submit/count-words/")
    page.locator("#submit-form[data-uploads=ready]").wait_for(state="attached")
    page.set_input_files("#file-texts", [str(tmp_path / name) for name in texts])
    expect(page.locator("li.upload.done")).to_have_count(3, timeout=30_000)
    page.get_by_role("button", name="Preview").click()
    page.locator("#preview-summary").wait_for()
    page.get_by_role("button", name="Submit").click()
    page.locator("#submission-state").wait_for()
    watch(page, account, "#job-progress", "Completed 3/3")

    # From the submission to its job's results.
    page.locator("#results-link").click()
    page.get_by_role("heading", name="Results").wait_for()
    assert "count.txt" in page.locator("#output-rules").inner_text()
    rows = page.locator("table.results tbody tr")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(3)] == ["count.txt"] * 3
    page.screenshot(path=f"{SCREENSHOTS}/portal-results.png", full_page=True)

    # The second task counted "two words.txt": its preview shows the count as text.
    rows.nth(1).get_by_role("link", name="Preview").click()
    expect(page.locator("#preview-text")).to_have_text("2 inputs/two words.txt\n")
    assert page.locator("#preview-name").inner_text() == "count.txt"
    page.go_back()

    with page.expect_download() as download_info:
        page.locator("#results-zip").click()
    download = download_info.value
    assert download.suggested_filename.endswith("-results.zip")
    archive = zipfile.ZipFile(io.BytesIO(open(download.path(), "rb").read()))
    assert archive.testzip() is None
    assert {name: archive.read(name).decode() for name in archive.namelist()} == {
        "t00001/count.txt": "1 inputs/one.txt\n",
        "t00002/count.txt": "2 inputs/two words.txt\n",
        "t00003/count.txt": "3000 inputs/three.md\n",
    }
