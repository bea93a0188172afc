"""Walk the audit history's hash chain and say whether it is intact, or which record is the first one broken."""

from django.core.management.base import BaseCommand, CommandError

from portal.audit import GENESIS_HASH, event_hash
from portal.models import AuditEvent

FIELDS = ["id", "at", "actor_id", "actor_name", "action", "object_type", "object_id", "object_label", "team_id",
          "ip_address", "reason", "changes", "details", "prev_hash", "hash"]


class Command(BaseCommand):
    help = ("Recompute every audit record's hash in id order and check that each names the one before it. Exits 0 "
            "with the number of records and the head hash (note it: cutting records from the end is only visible "
            "against a head noted earlier), or 1 naming the first broken record.")

    def add_arguments(self, parser):
        parser.add_argument("--chunk-size", type=int, default=2000,
                            help="Rows fetched per round trip; memory stays bounded by this, not by the table.")

    def handle(self, *args, chunk_size: int, **options):
        count, previous, broken = 0, None, None
        rows = AuditEvent.objects.order_by("id").values(*FIELDS).iterator(chunk_size=chunk_size)
        for row in rows:
            if event_hash(row) != row["hash"] or row["prev_hash"] != (previous["hash"] if previous else GENESIS_HASH):
                broken = row
                break
            count, previous = count + 1, row
        # Closes the database cursor (a server-side one on PostgreSQL) before the explaining query below.
        rows.close()
        if broken is not None:
            raise CommandError(f"audit record #{broken['id']} ({broken['at']:%Y-%m-%d %H:%M:%S.%f} UTC, "
                               f"{broken['action']}) breaks the chain after {count} intact records: "
                               f"{self._problem(broken, previous)}", returncode=1)
        head = previous["hash"] if previous else GENESIS_HASH
        self.stdout.write(f"{count} records, chain intact; head {head}")

    def _problem(self, row: dict, previous: dict | None) -> str:
        if event_hash(row) != row["hash"]:
            return "edited: its contents no longer match its hash."
        if row["prev_hash"] == GENESIS_HASH:
            return (f"it claims to be the first record, but #{previous['id']} comes before it: records were "
                    "inserted before it, or it was moved.")
        # Only on a break: one lookup through the unique index on hash.
        predecessor = AuditEvent.objects.filter(hash=row["prev_hash"]).values_list("id", flat=True).first()
        if predecessor is None:
            before = f"#{previous['id']}" if previous else "the start"
            return (f"the record it follows is missing: a record between {before} and it was removed, or the "
                    "record before it was edited and its hash recomputed.")
        if predecessor > row["id"]:
            return f"reordered: it follows #{predecessor}, which now comes after it."
        return (f"it follows #{predecessor}, so the records after #{predecessor} and before it are not part of "
                "the chain: inserted, or reordered.")
