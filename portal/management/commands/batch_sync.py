"""`manage.py batch_sync [--full]`: one sync pass from Batch into the mirror, by hand, with a summary."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from batchsync import sync
from batchsync.accounts import AccountNotConfigured, synced_accounts
from batchsync.gateway import GatewayError
from portal.models import BatchAccount


class Command(BaseCommand):
    help = ("Sync pools, nodes, jobs and the tasks of unfinished jobs from Batch into the portal's database, "
            "once, and print what changed. The same pass the worker runs every few seconds.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--full", action="store_true",
                            help="List every job and task instead of the changes, and mark what Batch deleted as gone.")
        parser.add_argument("--account", metavar="NAME",
                            help="Only this account (its short name in the portal). Default: every account.")
        parser.add_argument("--retry-seconds", type=float, default=sync.DEFAULT_RETRY.budget_seconds,
                            help="How long to keep retrying when Batch is busy or unreachable (default %(default)s).")

    def handle(self, *args: Any, full: bool = False, account: str | None = None, retry_seconds: float = 30.0,
               **options: Any) -> None:
        # Every enabled account (the configured one is created if new); one named explicitly even if disabled.
        accounts = BatchAccount.objects.filter(pk__in=synced_accounts())
        if account:
            accounts = BatchAccount.objects.filter(name=account)
            if not accounts:
                names = ", ".join(BatchAccount.objects.values_list("name", flat=True))
                raise CommandError(f"No account named {account!r}. Known accounts: {names}.")
        retry = sync.RetryPolicy(budget_seconds=retry_seconds)
        for each in accounts:
            try:
                stats = sync.sync_account(each, full=full, retry=retry)
            except AccountNotConfigured as exc:
                raise CommandError(str(exc)) from None
            except GatewayError as exc:
                raise CommandError(
                    f"Account {each.name}: Batch at {each.account_url} refused or did not answer ({exc}). "
                    "Nothing after that point was synced; check that Batch is reachable and the account "
                    "name and key are right, then run the command again.") from None
            self.stdout.write(self.summary(each, stats, full))

    @staticmethod
    def summary(account: BatchAccount, stats: sync.SyncStats, full: bool) -> str:
        line = (f"{account.name}{' (full)' if full else ''}: {stats.pools} pools, {stats.nodes} nodes, "
                f"{stats.jobs} jobs, {stats.tasks:,} tasks upserted ({stats.tasks_listed:,} listed), "
                f"{stats.gone:,} marked gone, in {stats.seconds:.2f} s")
        if stats.quiet:
            line += f"; {stats.quiet} unchanged jobs not listed"
        if stats.failed:
            line += f"; Batch did not answer for jobs {', '.join(stats.failed)} (tried again next pass)"
        if stats.busy:
            line += f"; skipped, another sync was running: {', '.join(stats.busy)}"
        return line
