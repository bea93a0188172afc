"""Walk the audit history's hash chain and say whether it is intact, or which record is the first one broken."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal.audit.chain import verify


class Command(BaseCommand):
    help = ("Recompute every audit record's hash in id order and check that each names the one before it. Exits 0 "
            "with the number of records and the head hash (note it: cutting records from the end is only visible "
            "against a head noted earlier), or 1 naming the first broken record.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=2000,
                            help="Rows fetched per round trip; memory stays bounded by this, not by the table.")

    def handle(self, *args: Any, chunk_size: int, **options: Any) -> None:
        verdict = verify(chunk_size=chunk_size)
        broken = verdict.broken
        if broken is not None:
            raise CommandError(f"audit record #{broken['id']} ({broken['at']:%Y-%m-%d %H:%M:%S.%f} UTC, "
                               f"{broken['action']}) breaks the chain after {verdict.count} intact records: "
                               f"{verdict.problem}", returncode=1)
        self.stdout.write(f"{verdict.count} records, chain intact; head {verdict.head}")
        if verdict.unkeyed:
            self.stdout.write(f"The first {verdict.unkeyed} records predate the audit key (plain sha256): someone "
                              "who can write the table could have rewritten those; every later one is keyed.")
