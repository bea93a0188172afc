"""Reading Azure's retail price list (the Azure Retail Prices API's JSON) into node-hour prices per VM size.

Plain parsing, no database: portal.costs.services writes what this returns. A page of the list is
{"Items": [...], "NextPageLink": ..., "BillingCurrency": ...}; each item is one meter. Of those, a VM size's
node-hour prices are the consumption meters of Linux VMs ("1 Hour"): the Spot or Low Priority meter gives the Spot
price, the other the dedicated one. Windows meters include the licence, which Batch's Linux pools do not pay, and
reservations and dev/test prices are not what Batch bills."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

# The API's address, filtered to VM meters; `import_prices --region` narrows it further.
RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices"


class PriceListError(ValueError):
    """The file or answer is not a retail price list: a message a person can act on."""


@dataclass(frozen=True)
class ParsedPrice:
    vm_size: str
    region: str
    currency: str
    dedicated_per_hour: Decimal | None
    spot_per_hour: Decimal | None
    taken_on: date


def items_of(page: Any) -> list[dict[str, Any]]:
    """The meters of one page, or PriceListError when `page` is not shaped like the API's answer."""
    if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
        raise PriceListError("This is not an Azure retail price list: expected a JSON object with an \"Items\" list.")
    return [item for item in page["Items"] if isinstance(item, dict)]


def next_page_link(page: dict[str, Any]) -> str | None:
    link = page.get("NextPageLink")
    return link if isinstance(link, str) and link.startswith("https://") else None


def _is_vm_hour(item: dict[str, Any]) -> bool:
    return (str(item.get("serviceName", "Virtual Machines")) == "Virtual Machines"
            and str(item.get("type", "Consumption")) == "Consumption"
            and str(item.get("unitOfMeasure", "")).strip().lower() == "1 hour"
            and "windows" not in str(item.get("productName", "")).lower()
            and bool(item.get("armSkuName")))


def _is_spot(item: dict[str, Any]) -> bool:
    names = f"{item.get('skuName', '')} {item.get('meterName', '')}".lower()
    return "spot" in names or "low priority" in names


def _day(value: Any, default: date) -> date:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()
    except ValueError:
        return default


def parse_items(items: list[dict[str, Any]], *, today: date, region: str = "") -> list[ParsedPrice]:
    """One price per (VM size, region, currency) from the meters in `items`, taking the latest effective price of
    each kind (dedicated, Spot). `region` (an armRegionName) keeps only that region's meters."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in items:
        if not _is_vm_hour(item):
            continue
        item_region = str(item.get("armRegionName", "")).lower()
        if region and item_region != region.lower():
            continue
        try:
            price = Decimal(str(item.get("retailPrice")))
        except InvalidOperation:
            continue
        if not price.is_finite() or price < 0:
            continue
        key = (str(item["armSkuName"]), item_region, str(item.get("currencyCode", "USD")).upper()[:3])
        row = found.setdefault(key, {})
        kind = "spot" if _is_spot(item) else "dedicated"
        effective = _day(item.get("effectiveStartDate"), today)
        if kind not in row or effective >= row[kind][1]:
            row[kind] = (price, effective)
    return [ParsedPrice(vm_size=size, region=where, currency=currency,
                        dedicated_per_hour=row["dedicated"][0] if "dedicated" in row else None,
                        spot_per_hour=row["spot"][0] if "spot" in row else None, taken_on=today)
            for (size, where, currency), row in sorted(found.items())]
