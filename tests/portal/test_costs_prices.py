"""The price table: `import_prices` reads the Azure Retail Prices API's JSON (a saved page under
tests/portal/retail_prices/), and Admins — only they — edit prices in the admin, each save audited."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from portal.models import AuditEvent, VmPrice
from tests.personas import client_for

pytestmark = pytest.mark.django_db

PAGE = Path(__file__).parent / "retail_prices" / "page.json"


def prices():
    return {(p.vm_size, p.region): (p.dedicated_per_hour, p.spot_per_hour, p.currency)
            for p in VmPrice.objects.all()}


def test_import_keeps_linux_hourly_prices_per_size_and_region_with_spot_beside_dedicated():
    call_command("import_prices", "--file", str(PAGE))

    assert prices() == {
        ("Standard_D2s_v3", "westeurope"): (Decimal("0.096"), Decimal("0.0192"), "USD"),
        ("Standard_D4s_v3", "westeurope"): (Decimal("0.192"), Decimal("0.0384"), "USD"),
        ("Standard_D2s_v3", "eastus"): (Decimal("0.11"), None, "USD"),
    }
    event = AuditEvent.objects.get(action="vm_price.import")
    assert event.details == {"created": 3, "updated": 0, "skipped": 1}


def test_import_for_one_region_keeps_only_it_and_a_second_import_updates_in_place(tmp_path):
    VmPrice.objects.create(vm_size="standard_d2s_v3", region="westeurope", dedicated_per_hour=1, currency="USD",
                           taken_on="2020-01-01")

    call_command("import_prices", "--file", str(PAGE), "--region", "WestEurope")
    call_command("import_prices", "--file", str(PAGE), "--region", "westeurope")

    assert VmPrice.objects.count() == 2
    updated = VmPrice.objects.get(region="westeurope", vm_size__iexact="standard_d2s_v3")
    assert updated.dedicated_per_hour == Decimal("0.096") and str(updated.taken_on) != "2020-01-01"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not JSON"),
    ('{"value": []}', "not an Azure retail price list"),
    ('{"Items": [{"armSkuName": "Standard_D2s_v3", "unitOfMeasure": "1/Month", "retailPrice": 3}]}',
     "no Linux VM node-hour prices"),
])
def test_a_file_that_is_not_a_price_list_is_refused_and_changes_nothing(tmp_path, content, message):
    VmPrice.objects.create(vm_size="Standard_D2s_v3", dedicated_per_hour=1, taken_on="2020-01-01")
    bad = tmp_path / "prices.json"
    bad.write_text(content)

    with pytest.raises(CommandError, match=message):
        call_command("import_prices", "--file", str(bad))

    assert prices() == {("Standard_D2s_v3", ""): (Decimal("1"), None, "USD")}


def test_a_missing_file_and_the_api_without_a_region_are_refused(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_prices", "--file", str(tmp_path / "absent.json"))
    with pytest.raises(CommandError, match="needs --region"):
        call_command("import_prices", "--api")
    assert not VmPrice.objects.exists()


def test_an_admin_adds_a_price_in_the_admin_and_the_history_records_it(portal_admin):
    response = client_for(portal_admin).post(reverse("admin:portal_vmprice_add"), {
        "vm_size": "Standard_F4s_v2", "region": "", "dedicated_per_hour": "0.169", "spot_per_hour": "",
        "currency": "EUR", "taken_on": "2026-12-01"})

    assert response.status_code == 302
    assert prices() == {("Standard_F4s_v2", ""): (Decimal("0.169"), None, "EUR")}
    assert AuditEvent.objects.filter(action="vm_price.create", actor_id=portal_admin.pk).count() == 1


def test_the_same_size_twice_in_one_region_is_refused_whatever_its_case(portal_admin):
    VmPrice.objects.create(vm_size="Standard_F4s_v2", dedicated_per_hour=1, taken_on="2020-01-01")
    response = client_for(portal_admin).post(reverse("admin:portal_vmprice_add"), {
        "vm_size": "standard_f4s_v2", "region": "", "dedicated_per_hour": "2", "currency": "USD",
        "taken_on": "2026-12-01"})

    assert response.status_code == 200 and VmPrice.objects.count() == 1


@pytest.mark.parametrize("persona", ["operator_a", "viewer"])
def test_other_roles_cannot_see_or_edit_prices(request, persona):
    user = request.getfixturevalue(persona)
    user.is_staff = True   # even let into the admin site, their role holds no price permission
    user.save()
    client = client_for(user)
    assert client.get(reverse("admin:portal_vmprice_changelist")).status_code == 403
    assert client.post(reverse("admin:portal_vmprice_add"), {"vm_size": "x", "dedicated_per_hour": "1",
                                                             "currency": "USD", "taken_on": "2026-12-01"}
                       ).status_code == 403
    assert not VmPrice.objects.exists()


def test_anonymous_is_sent_to_log_in(client):
    response = client.get(reverse("admin:portal_vmprice_changelist"))
    assert response.status_code == 302 and "login" in response["Location"]
