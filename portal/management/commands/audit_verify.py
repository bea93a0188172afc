"""Walk the audit history's hash chain and say whether it is intact, or which record is the first one broken; then
check the heads published to write-once storage against it (portal/audit/heads.py)."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from batchsync.accounts import blob_store
from batchsync.gateway import GatewayError
from portal.audit.chain import verify
from portal.audit.heads import check_heads


class Command(BaseCommand):
    help = ("Recompute every audit record's hash in id order and check that each names the one before it, then that "
            "every head published to storage is still in the database with the same hash (which finds records cut "
            "from the end, or a rewritten history). Exits 0 with the number of records and the head hash, or 1 "
            "naming the first problem.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=2000,
                            help="Rows fetched per round trip; memory stays bounded by this, not by the table.")
        parser.add_argument("--no-heads", action="store_true",
                            help="Check the chain alone, without the heads published to storage.")

    def handle(self, *args: Any, chunk_size: int, no_heads: bool, **options: Any) -> None:
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
        if no_heads:
            return
        try:
            with blob_store() as store:
                heads = check_heads(store)
        except GatewayError as exc:
            raise CommandError(f"the published heads could not be read ({exc}); the chain alone is intact. Run "
                               "again when storage answers, or with --no-heads to check the chain only.",
                               returncode=1) from None
        if heads.problem:
            raise CommandError(f"published heads: {heads.problem}", returncode=1)
        if heads.newest is None:
            self.stdout.write("No head has been published yet (beat publishes one every 10 minutes).")
        else:
            self.stdout.write(f"{heads.checked} published heads match, the newest for record #{heads.newest['id']}.")
