"""Writes of the cost domain: the price table, filled from Azure's retail price list."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models.functions import Lower

from portal.audit.services import record_event
from portal.costs.prices import ParsedPrice
from portal.models import VmPrice


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    skipped: int   # sizes the list gave only a Spot price for: a node-hour price needs the dedicated one


def vm_prices_import(*, prices: list[ParsedPrice], source: str) -> ImportResult:
    """Upsert `prices` into the price table, keyed on (VM size without regard to case, region), in one
    transaction with one audit event naming `source` (a file name or the API's address)."""
    created = updated = skipped = 0
    with transaction.atomic():
        for price in prices:
            if price.dedicated_per_hour is None:
                skipped += 1
                continue
            values = {"vm_size": price.vm_size, "dedicated_per_hour": price.dedicated_per_hour,
                      "spot_per_hour": price.spot_per_hour, "currency": price.currency, "taken_on": price.taken_on}
            existing = (VmPrice.objects.annotate(size=Lower("vm_size"))
                        .filter(size=price.vm_size.lower(), region=price.region).first())
            if existing is None:
                VmPrice.objects.create(region=price.region, **values)
                created += 1
            else:
                VmPrice.objects.filter(pk=existing.pk).update(**values)
                updated += 1
        record_event(actor=None, action="vm_price.import", object_type="vm_price", object_label=source[:200],
                     details={"created": created, "updated": updated, "skipped": skipped})
    return ImportResult(created=created, updated=updated, skipped=skipped)
