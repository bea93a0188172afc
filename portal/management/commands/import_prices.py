"""Fill the price table from Azure's retail price list: a saved JSON file of the Azure Retail Prices API's answer,
or the API itself when this machine can reach it. Pages never fetch prices; this command (run by hand or by cron)
is the only way prices arrive besides an Admin typing them."""

import json
import urllib.error
import urllib.parse
import urllib.request
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from portal.costs.prices import RETAIL_PRICES_URL, PriceListError, items_of, next_page_link, parse_items
from portal.costs.services import vm_prices_import

# The API answers 100 meters a page; a region's Linux VM meters are a few thousand.
MAX_PAGES = 200
TIMEOUT_SECONDS = 30


class Command(BaseCommand):
    help = ("Import node-hour prices per VM size (dedicated and Spot) from the Azure Retail Prices API's JSON: from "
            "--file (one page, or a list of pages), or from the API for --region when it is reachable. Linux "
            "consumption prices only; Windows, reservation and dev/test meters are skipped.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--file", type=Path, help="A saved answer of the API (JSON).")
        source.add_argument("--api", action="store_true", help=f"Ask {RETAIL_PRICES_URL} (needs --region).")
        parser.add_argument("--region", default="", help="Azure region (armRegionName), e.g. westeurope: only "
                            "its prices are kept. Without it a file's prices keep their regions.")
        parser.add_argument("--currency", default="USD", help="Currency to ask the API for (ISO 4217).")

    def handle(self, *args: Any, file: Path | None, api: bool, region: str, currency: str, **options: Any) -> None:
        if file is not None:
            pages, source = self._read_file(file), str(file)
        else:
            if not region:
                raise CommandError("--api needs --region (e.g. --region westeurope): the whole price list is "
                                   "hundreds of thousands of meters.")
            source = self._api_url(region=region, currency=currency)
            pages = self._fetch(source)
        items: list[dict[str, Any]] = []
        try:
            for page in pages:
                items.extend(items_of(page))
        except PriceListError as exc:
            raise CommandError(f"{source}: {exc}") from None
        prices = parse_items(items, today=timezone.localdate(), region=region)
        if not prices:
            raise CommandError(f"{source}: no Linux VM node-hour prices found"
                               + (f" for region {region}" if region else "") + "; nothing changed.")
        result = vm_prices_import(prices=prices, source=source)
        self.stdout.write(f"{len(items)} meters read; {result.created} prices added, {result.updated} updated"
                          + (f", {result.skipped} skipped (no dedicated price)" if result.skipped else "") + ".")

    @staticmethod
    def _read_file(file: Path) -> list[Any]:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file} is not JSON: {exc}") from None
        return data if isinstance(data, list) else [data]

    @staticmethod
    def _api_url(*, region: str, currency: str) -> str:
        query = (f"serviceName eq 'Virtual Machines' and armRegionName eq '{region.lower()}' "
                 "and priceType eq 'Consumption'")
        return f"{RETAIL_PRICES_URL}?" + urllib.parse.urlencode({"currencyCode": currency.upper(), "$filter": query})

    @staticmethod
    def _fetch(url: str) -> list[Any]:
        pages: list[Any] = []
        next_url: str | None = url
        while next_url and len(pages) < MAX_PAGES:
            try:
                with urllib.request.urlopen(next_url, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310 (https only)
                    page = json.load(answer)
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                raise CommandError(f"The retail price API is not reachable from here ({exc}); nothing changed. "
                                   "Save its answer elsewhere and use --file.") from None
            except ValueError:
                raise CommandError("The retail price API answered something that is not JSON; nothing changed.") \
                    from None
            pages.append(page)
            next_url = next_page_link(page) if isinstance(page, dict) else None
        return pages
