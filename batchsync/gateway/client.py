"""BatchGateway: the portal's one door to Azure Batch, taking specs and returning records and our errors."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from itertools import islice
from urllib.parse import parse_qs, quote, urljoin, urlparse

import requests
import requests.adapters
from azure.batch import BatchClient, models
from azure.batch.models._models import BatchJobTerminateOptions  # not exported by azure.batch.models
from azure.core.credentials import AzureNamedKeyCredential, TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from urllib3.util.retry import Retry

from . import convert
from .adding import AddOutcome, Stopped, settle, sleep_before_retry
from .budget import RequestBudget
from .errors import AuthFailed, GatewayError, Rejected, Transient, translate
from .records import (
    AddTasksResult,
    FileRecord,
    JobRecord,
    NodeRecord,
    PoolRecord,
    PrepTaskRecord,
    ReactivateResult,
    TaskCountsRecord,
    TaskFailure,
    TaskRecord,
)
from .specs import JobSpec, PoolSpec, TaskSpec

# Batch's limit for one addtaskcollection request.
TASKS_PER_REQUEST = 100
# add_tasks keeps this many requests queued per thread: enough that the threads keep sending while the caller's
# thread builds the next specs or records progress (a commit can take 100 ms on a busy database).
REQUESTS_AHEAD_PER_THREAD = 4

# The SDK's own retries stay short so they don't multiply with ours (add_tasks here, Celery above), and
# a read timeout keeps one call from outliving the Celery task that made it.
SDK_RETRY_SETTINGS = dict(retry_total=2, retry_backoff_factor=0.5, retry_backoff_max=4,
                          connection_timeout=10, read_timeout=60)


class BatchGateway:
    """A Batch account. Every method raises only `GatewayError` subclasses."""

    def __init__(self, account_url: str, account_name: str, account_key: str = "", *,
                 credential: TokenCredential | None = None, ca_bundle: str | None = None,
                 budget: RequestBudget | None = None, connections: int | None = None):
        """Signed with the shared key, or, given `credential`, with Entra ID bearer tokens (the SDK asks it for the
        scope `https://batch.core.windows.net//.default`; azure-core sends them only over https).

        `ca_bundle`: a CA file to trust instead of the system's, for a test or private endpoint (localbatch's own
        certificate); `budget`: every request takes a token from it; `connections`: how many requests this gateway
        may have open at once without reconnecting (requests' default pool keeps 10)."""
        if credential is not None and not account_url.lower().startswith("https://"):
            # azure-core would refuse every call with a connection error, which reads as Batch being down.
            raise AuthFailed(f"Microsoft Entra ID tokens are sent only over HTTPS, and this account's URL is "
                             f"{account_url!r}: give its https:// URL.")
        self.budget = budget
        options: dict = dict(SDK_RETRY_SETTINGS)
        if ca_bundle:
            options["connection_verify"] = ca_bundle
        if budget is not None:
            # The budget sees every attempt: the SDK's CustomHookPolicy sits inside its retry policy.
            options.update(raw_request_hook=budget.before_request, raw_response_hook=budget.after_response)
        if connections is not None and connections > 10:
            session = requests.Session()
            # With trust_env, requests reads the environment (proxy and CA variables, ~/.netrc) again for every
            # request: a fifth of a request's CPU in a sync pass of hundreds. The account is one host, so what the
            # environment says about it is read once, here. (A netrc entry would only have replaced the SDK's
            # Authorization header.)
            session.trust_env = False
            session.proxies.update(requests.utils.get_environ_proxies(account_url))
            ca_bundle = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
            if ca_bundle:
                options["connection_verify"] = ca_bundle
            # As azure-core's own transport mounts it: no urllib3 retries under the SDK's.
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=1, pool_maxsize=connections,
                max_retries=Retry(total=False, redirect=False, raise_on_status=False))
            for scheme in ("http://", "https://"):
                session.mount(scheme, adapter)
            options["transport"] = RequestsTransport(session=session, session_owner=True,
                                                     **({"connection_verify": ca_bundle} if ca_bundle else {}))
        signer = credential if credential is not None else AzureNamedKeyCredential(account_name, account_key)
        self._client = BatchClient(account_url, signer, **options)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> BatchGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ping(self, *, timeout: float) -> None:
        """One cheap signed request (at most one pool id), without retries, each wait at most `timeout` seconds:
        returns if the account answers and takes the credentials, else raises a GatewayError (readiness)."""
        with _translated():
            pages = self._client.list_pools(max_results=1, select=["id"], retry_total=0,
                                            connection_timeout=timeout, read_timeout=timeout).by_page()
            for _ in next(pages):
                break

    # --- pools and nodes -------------------------------------------------------------------------

    def list_pools(self) -> list[PoolRecord]:
        return [convert.pool_record(pool) for pool in self._each(self._client.list_pools())]

    def get_pool(self, pool_id: str) -> PoolRecord:
        with _translated():
            return convert.pool_record(self._client.get_pool(pool_id))

    def create_pool(self, spec: PoolSpec) -> None:
        """Raises AlreadyExists if the id is taken; the caller decides whether that is success."""
        with _translated():
            self._client.create_pool(convert.pool_create_options(spec))

    def resize_pool(self, pool_id: str, *, dedicated: int, low_priority: int) -> None:
        """Returns once Batch has accepted the resize; the pool is `resizing` until the nodes are there."""
        options = models.BatchPoolResizeOptions(target_dedicated_nodes=dedicated,
                                                target_low_priority_nodes=low_priority)
        with _translated():
            # The public begin_resize_pool starts a thread that polls every 5 s until the resize ends;
            # the initial request alone is what we need (same for delete and terminate below).
            self._client._resize_pool_internal(pool_id, options)

    def delete_pool(self, pool_id: str) -> None:
        """Returns once Batch has accepted; the pool is `deleting` until it is gone."""
        with _translated():
            self._client._delete_pool_internal(pool_id)

    def list_nodes(self, pool_id: str) -> list[NodeRecord]:
        return [convert.node_record(pool_id, node) for node in self._each(self._client.list_nodes(pool_id))]

    # --- jobs ------------------------------------------------------------------------------------

    def list_jobs(self, *, changed_since: datetime | None = None) -> list[JobRecord]:
        # A job's lastModified moves with its settings, stateTransitionTime with its state.
        since = None if changed_since is None else (
            f"{_since_filter('stateTransitionTime', changed_since)} or {_since_filter('lastModified', changed_since)}")
        query = {"$select": ",".join(convert.JOB_RECORD_FIELDS)}
        if since is not None:
            query["$filter"] = since
        # Read as plain JSON, as the task listing is (see convert.job_record_from_wire).
        return [convert.job_record_from_wire(job) for job in self._json_pages("/jobs", query)]

    def get_job(self, job_id: str) -> JobRecord:
        with _translated():
            return convert.job_record(self._client.get_job(job_id))

    def create_job(self, spec: JobSpec) -> None:
        """Raises AlreadyExists if the id is taken; the caller decides whether that is success."""
        with _translated():
            self._client.create_job(convert.job_create_options(spec))

    def set_terminate_on_complete(self, job_id: str) -> None:
        """Let the job complete by itself once all its tasks have completed."""
        with _translated():
            self._client.update_job(job_id, models.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"))

    def terminate_job(self, job_id: str, *, reason: str) -> None:
        """Returns once Batch has accepted; the job is `terminating` until its running tasks are stopped."""
        with _translated():
            # Without an options object the SDK fails client-side before sending anything.
            self._client._terminate_job_internal(job_id, BatchJobTerminateOptions(termination_reason=reason))

    def delete_job(self, job_id: str) -> None:
        """Returns once Batch has accepted; the job is `deleting` until it and its tasks are gone."""
        with _translated():
            self._client._delete_job_internal(job_id)

    def get_task_counts(self, job_id: str) -> TaskCountsRecord:
        # Read as plain JSON, as the task listing is: the SDK's model of this small answer was a fifth of the
        # request's CPU, paid for every unfinished job in every sync pass.
        return convert.task_counts_record_from_wire(self._json_get(f"/jobs/{quote(job_id, safe='')}/taskcounts"))

    # --- tasks -----------------------------------------------------------------------------------

    def list_tasks(self, job_id: str, *, changed_since: datetime | None = None, page_size: int = 1000,
                   versions_only: bool = False) -> TaskListing:
        """The job's tasks, fetched page by page as the caller iterates; with `changed_since`, only
        those whose state changed at or after that moment. The listing's `server_time` is Batch's clock when it
        answered the first page (None before that, or if Batch sent no Date).

        `versions_only`: records with only what tells whether a task changed (id, stateTransitionTime, constraints),
        a fraction of the bytes and parsing of the whole record: what a reconcile compares with the mirror."""
        fields = convert.TASK_VERSION_FIELDS if versions_only else convert.TASK_RECORD_FIELDS
        query = {"maxresults": str(page_size), "$select": ",".join(fields)}
        if changed_since is not None:
            query["$filter"] = _since_filter("stateTransitionTime", changed_since)
        listing = TaskListing()
        # Pages are read as plain JSON (see convert.task_record_from_wire for why), through the SDK's own
        # pipeline: the same shared-key signing, retry policy and timeouts as every other call.
        pages = self._json_pages(f"/jobs/{quote(job_id, safe='')}/tasks", query, listing.answered)
        listing.records = (convert.task_record_from_wire(job_id, task) for task in pages)
        return listing

    def get_task(self, job_id: str, task_id: str) -> TaskRecord:
        with _translated():
            return convert.task_record(job_id, self._client.get_task(job_id, task_id))

    def add_tasks(self, job_id: str, specs: Iterable[TaskSpec], *, budget_seconds: float = 120,
                  max_concurrency: int = 4, on_progress: Callable[[int], None] | None = None,
                  request_budget_seconds: float | None = None,
                  on_sending: Callable[[], None] | None = None) -> AddTasksResult:
        """Add tasks in requests of 100, `max_concurrency` at a time, retrying busy or failed requests until
        `budget_seconds` is spent, or until one request has been retried for `request_budget_seconds`.

        `specs` is read lazily, one request's worth at a time, just ahead of the requests: a generator that
        builds its tasks as they are taken overlaps that work with the requests in flight, and a generator that
        stops early (a run out of time) ends the call once what it gave is added.

        A task that exists already counts as added, so calling again with the same ids after a Transient
        is safe. Tasks Batch refuses come back in `failures`. Raises Transient when the budget runs out,
        and the error of the whole request when Batch refuses it (e.g. JobNotFound, JobCompleted).

        `on_progress(n)` is called in the caller's thread, while requests are still running, whenever the first
        n specs (in order) have all been added: a caller can record progress without pausing the requests.
        `on_sending()` is called once, in the caller's thread, when the first requests have been handed to the
        request threads and before any answer to them is looked at: a caller can record that adding has begun
        while they are on their way. If either (or `specs`) raises, the remaining requests stop and its exception
        propagates."""
        deadline = time.monotonic() + budget_seconds
        outcome = AddOutcome()
        futures: list[Future[int]] = []
        with ThreadPoolExecutor(max_workers=max(1, max_concurrency), thread_name_prefix="add-tasks") as pool:
            try:
                sizes = self._run_requests(pool, job_id, iter(specs), futures, deadline, outcome, on_progress,
                                           ahead=REQUESTS_AHEAD_PER_THREAD * max(1, max_concurrency),
                                           request_budget_seconds=request_budget_seconds, on_sending=on_sending)
            except BaseException:
                outcome.stop.set()
                raise
        errors = [error for f in futures if (error := f.exception()) and not isinstance(error, Stopped)]
        if errors:
            first = next((e for e in errors if not isinstance(e, Transient)), errors[0])
            if isinstance(first, Transient):
                raise Transient(f"Added {len(outcome.added)} of {sum(sizes)} tasks to job {job_id} within "
                                f"{budget_seconds:g}s; Batch is busy or unreachable. Retry with the same task "
                                f"ids. Last error: {first.message}", retry_after=first.retry_after,
                                code=first.code, status=first.status, request_id=first.request_id)
            raise first
        return AddTasksResult(added=tuple(outcome.added), failures=tuple(outcome.failures))

    def _run_requests(self, pool: ThreadPoolExecutor, job_id: str, specs: Iterator[TaskSpec],
                      futures: list[Future[int]], deadline: float, outcome: AddOutcome,
                      on_progress: Callable[[int], None] | None, *, ahead: int,
                      request_budget_seconds: float | None,
                      on_sending: Callable[[], None] | None = None) -> list[int]:
        """Keep `ahead` requests submitted, so a thread that finishes one starts the next at once while this thread
        takes the specs after it, or waits on `on_progress` (a database write, slow on a busy server); call
        `on_progress` as the run of fully added leading requests grows. Returns the size of every request made."""
        sizes: list[int] = []
        settled, prefix, reported = 0, 0, 0
        pending: set[Future[int]] = set()
        exhausted = False
        while True:
            while not exhausted and len(pending) < ahead:
                chunk = list(islice(specs, TASKS_PER_REQUEST))
                if not chunk:
                    exhausted = True
                    break
                future = pool.submit(self._add_chunk, job_id, chunk, deadline, outcome,
                                     budget_seconds=request_budget_seconds)
                futures.append(future)
                sizes.append(len(chunk))
                pending.add(future)
            if on_sending is not None:
                on_sending()
                on_sending = None
            # Reported once the queue is topped up: the threads keep sending while the caller records it.
            if on_progress is not None and prefix > reported:
                on_progress(prefix)
                reported = prefix
            if not pending:
                return sizes
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            if any(future.exception() for future in done):
                outcome.stop.set()   # the other requests give up at their next attempt
                wait(pending)
                return sizes
            # A request counts towards the prefix only if none of its tasks was refused.
            while settled < len(futures) and futures[settled].done() and futures[settled].result() == 0:
                prefix += sizes[settled]
                settled += 1

    def _add_chunk(self, job_id: str, chunk: list[TaskSpec], deadline: float, outcome: AddOutcome,
                   wire: dict[str, dict] | None = None, *, budget_seconds: float | None = None) -> int:
        """Add one request's worth of tasks; returns how many of them Batch refused. `budget_seconds`: from when
        it starts, not from when it was queued."""
        if budget_seconds is not None:
            deadline = min(deadline, time.monotonic() + budget_seconds)
        pending = {spec.id: spec for spec in chunk}
        # Each task's JSON is built once, however often the request is retried or split.
        wire = wire if wire is not None else {spec.id: convert.task_wire(spec) for spec in chunk}
        attempt, refused = 0, 0
        while pending:
            if outcome.stop.is_set():
                raise Stopped()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Transient(f"time budget for adding tasks to job {job_id} ran out")
            try:
                # One attempt per call, no longer than what is left: this loop does the retrying.
                results = self._post_task_collection(job_id, [wire[s.id] for s in pending.values()],
                                                     read_timeout=max(1.0, min(60.0, remaining)))
            except Transient as error:
                attempt += 1
                sleep_before_retry(attempt, error.retry_after, deadline, outcome.stop, error)
                continue
            except Rejected as error:
                if error.code != "RequestBodyTooLarge":
                    raise
                if len(pending) == 1:
                    outcome.fail(TaskFailure(next(iter(pending)), error.code, error.message))
                    return refused + 1
                # Too big for one request: send each half on its own.
                specs = list(pending.values())
                return (refused + self._add_chunk(job_id, specs[:len(specs) // 2], deadline, outcome, wire)
                        + self._add_chunk(job_id, specs[len(specs) // 2:], deadline, outcome, wire))

            refused += settle(results, pending, outcome)
            if pending:
                # Tasks Batch answered with servererror, or not at all, are in an unknown state; resending
                # them is safe because a task that exists already counts as added.
                attempt += 1
                sleep_before_retry(attempt, None, deadline, outcome.stop,
                                    Transient(f"Batch did not add {len(pending)} tasks to job {job_id}"))
        return refused

    def _post_task_collection(self, job_id: str, tasks: list[dict], *, read_timeout: float) -> list[dict]:
        """One addtaskcollection request through the SDK's pipeline (its signing, policies and transport), with
        JSON in and out: on a 10,000-task submission the SDK's models cost more than the requests
        (bench/submit_sweep.py). Returns Batch's per-task results; raises our errors for the whole request."""
        request = HttpRequest(
            "POST", f"/jobs/{quote(job_id, safe='')}/addtaskcollection",
            params={"api-version": self._client._config.api_version},
            headers={"Accept": "application/json",
                     "content-type": "application/json; odata=minimalmetadata"},
            content=json.dumps({"value": tasks}, separators=(",", ":")))
        with _translated():
            response = self._client.send_request(request, retry_total=0, read_timeout=read_timeout)
            if response.status_code != 200:
                raise HttpResponseError(response=response)
            return response.json().get("value") or []

    def terminate_task(self, job_id: str, task_id: str) -> None:
        with _translated():
            self._client.terminate_task(job_id, task_id)

    def delete_task(self, job_id: str, task_id: str) -> None:
        with _translated():
            self._client.delete_task(job_id, task_id)

    def reactivate_task(self, job_id: str, task_id: str) -> None:
        """Run a failed, completed task again (its retry count starts from zero)."""
        with _translated():
            self._client.reactivate_task(job_id, task_id)

    def reactivate_tasks(self, job_id: str, task_ids: Sequence[str], *, max_concurrency: int = 16,
                         budget_seconds: float = 20.0) -> ReactivateResult:
        """Reactivate many tasks of one job, `max_concurrency` calls at a time (Batch has no bulk call for it).

        A task Batch refuses (no longer failed, gone) is reported in `refused` and the rest go on; a busy Batch is
        retried with backoff until `budget_seconds` is spent, and tasks not reached by then come back in
        `not_tried`. An error about the job itself (JobNotFound, JobCompleted, JobBeingTerminated, …) stops the
        remaining calls and is raised, since no other task of that job can be reactivated either."""
        deadline = time.monotonic() + budget_seconds
        pending = iter(list(dict.fromkeys(task_ids)))
        lock, stop = threading.Lock(), threading.Event()
        reactivated: list[str] = []
        refused: list[TaskFailure] = []
        not_tried: list[str] = []
        job_errors: list[GatewayError] = []

        def next_id() -> str | None:
            with lock:
                return next(pending, None)

        def work() -> None:
            while (task_id := next_id()) is not None:
                if stop.is_set() or time.monotonic() >= deadline:
                    with lock:
                        not_tried.append(task_id)
                    continue
                outcome = self._reactivate_within(job_id, task_id, deadline, stop)
                with lock:
                    if outcome is None:
                        reactivated.append(task_id)
                    elif _is_job_error(outcome):
                        job_errors.append(outcome)
                        not_tried.append(task_id)
                        stop.set()
                    else:
                        refused.append(TaskFailure(task_id, outcome.code, outcome.message))

        workers = max(1, min(max_concurrency, len(task_ids)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reactivate") as pool:
            for future in [pool.submit(work) for _ in range(workers)]:
                future.result()
        if job_errors:
            raise job_errors[0]
        return ReactivateResult(reactivated=tuple(reactivated), refused=tuple(refused), not_tried=tuple(not_tried))

    def _reactivate_within(self, job_id: str, task_id: str, deadline: float,
                           stop: threading.Event) -> GatewayError | None:
        """One task's reactivation, retried while Batch is busy and time is left; the error Batch ended with."""
        attempt = 0
        while True:
            try:
                self.reactivate_task(job_id, task_id)
                return None
            except Transient as error:
                attempt += 1
                try:
                    sleep_before_retry(attempt, error.retry_after, deadline, stop, error)
                except Stopped:
                    return error
                except Transient:
                    return error
            except GatewayError as error:
                return error

    # --- files -----------------------------------------------------------------------------------

    def list_task_files(self, job_id: str, task_id: str, *, recursive: bool = True) -> list[FileRecord]:
        files = self._client.list_task_files(job_id, task_id, recursive=recursive)
        return [convert.file_record(file) for file in self._each(files)]

    def read_task_file(self, job_id: str, task_id: str, path: str, *, start: int = 0,
                       length: int | None = None) -> bytes:
        """Bytes `start` .. `start + length` of a file in the task's folder (to the end without `length`)."""
        return self._read(lambda **range_: self._client.download_task_file(job_id, task_id, path, **range_),
                          start, length)

    def get_task_file_size(self, job_id: str, task_id: str, path: str) -> int:
        with _translated():
            return int(self._client.get_task_file_properties(job_id, task_id, path).content_length)

    def list_node_files(self, pool_id: str, node_id: str, *, recursive: bool = True,
                        prefix: str | None = None) -> list[FileRecord]:
        """Files under the node's root; with `prefix` (e.g. "startup/"), only names starting with it, filtered by
        Batch: a busy node's workitems folder holds every task's files."""
        query = None if prefix is None else f"startswith(name,'{prefix.replace(chr(39), chr(39) * 2)}')"
        files = self._client.list_node_files(pool_id, node_id, recursive=recursive, filter=query)
        return [convert.file_record(file) for file in self._each(files)]

    def read_node_file(self, pool_id: str, node_id: str, path: str, *, start: int = 0,
                       length: int | None = None) -> bytes:
        """Bytes `start` .. `start + length` of a file under the node's root folder."""
        return self._read(lambda **range_: self._client.download_node_file(pool_id, node_id, path, **range_),
                          start, length)

    def get_node_file_size(self, pool_id: str, node_id: str, path: str) -> int:
        with _translated():
            return int(self._client.get_node_file_properties(pool_id, node_id, path).content_length)

    def list_job_preparation_status(self, job_id: str) -> list[PrepTaskRecord]:
        """The nodes where the job's preparation task ran (or runs), one record each; [] for a job without one."""
        try:
            return [convert.prep_task_record(status)
                    for status in self._each(self._client.list_job_preparation_and_release_task_status(job_id))]
        except Rejected as error:
            if error.code == "JobPreparationTaskNotSpecified":
                return []
            raise

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _each(items: Iterable) -> Iterator:
        """Iterate an SDK pager; pages are fetched during iteration, so errors are translated here."""
        with _translated():
            yield from items

    def _send_json(self, request: HttpRequest) -> tuple[dict, Mapping[str, str]]:
        """The JSON Batch answers `request` with, and the answer's headers, through the SDK's own pipeline (signing,
        retries, timeouts); our errors otherwise."""
        with _translated():
            response = self._client.send_request(request)
            if response.status_code != 200:
                raise HttpResponseError(response=response)
            return response.json(), response.headers

    def _json_get(self, path: str) -> dict:
        """The JSON Batch answers a GET of `path` with."""
        body, _ = self._send_json(HttpRequest("GET", path, params={"api-version": self._client._config.api_version},
                                              headers={"Accept": "application/json"}))
        return body

    def _json_pages(self, path: str, query: dict[str, str],
                    on_answer: Callable[[Mapping[str, str]], None] | None = None) -> Iterator[dict]:
        """The items of a Batch list, following odata.nextLink, as the JSON Batch sent; `on_answer` is given the
        headers of each page's answer."""
        api_version = self._client._config.api_version   # the version the SDK speaks everywhere else
        params = {name: quote(value, safe=",") for name, value in query.items()}
        request: HttpRequest | None = HttpRequest("GET", path, params={**params, "api-version": api_version},
                                                  headers={"Accept": "application/json"})
        while request is not None:
            body, headers = self._send_json(request)
            if on_answer is not None:
                on_answer(headers)
            yield from body.get("value") or ()
            next_link = body.get("odata.nextLink")
            request = None
            if next_link:
                # As the SDK's own pagers do: the link's query as sent, with the client's api-version.
                parsed = urlparse(next_link)
                page_params: dict[str, str | list[str]] = {
                    name: [quote(value) for value in values] for name, values in parse_qs(parsed.query).items()}
                page_params["api-version"] = api_version
                request = HttpRequest("GET", urljoin(next_link, parsed.path), params=page_params,
                                      headers={"Accept": "application/json"})

    @staticmethod
    def _read(download: Callable[..., Iterator[bytes]], start: int, length: int | None) -> bytes:
        if start < 0 or (length is not None and length < 0):
            raise ValueError("start and length must not be negative")
        if length == 0:
            return b""
        byte_range = None
        if length is not None:
            byte_range = f"bytes={start}-{start + length - 1}"   # the end is inclusive
        elif start:
            byte_range = f"bytes={start}-"
        with _translated():
            return b"".join(download(ocp_range=byte_range))


class TaskListing(Iterator[TaskRecord]):
    """The records of a task listing, as they are fetched, and Batch's clock at its first answer."""

    def __init__(self) -> None:
        self.records: Iterator[TaskRecord] = iter(())
        self.server_time: datetime | None = None

    def answered(self, headers: Mapping[str, str]) -> None:
        if self.server_time is None and headers.get("Date"):
            try:
                self.server_time = parsedate_to_datetime(headers["Date"])
            except (TypeError, ValueError):
                pass   # a listing without Batch's clock: the caller falls back to its own

    def __iter__(self) -> TaskListing:
        return self

    def __next__(self) -> TaskRecord:
        return next(self.records)


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except AzureError as exc:
        # `from None`: the SDK's exception text includes response bodies, which may echo SAS URLs.
        raise translate(exc) from None


# Batch's answers to a task call that are about the job, not the task: no other task of the job would fare better.
_JOB_ERROR_CODES = frozenset({"JobNotFound", "JobCompleted", "JobBeingTerminated", "JobBeingDeleted",
                              "JobNotActive", "JobDisabled"})


def _is_job_error(error: GatewayError) -> bool:
    return error.code in _JOB_ERROR_CODES or isinstance(error, AuthFailed)


def _since_filter(field: str, moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("changed_since must be timezone-aware")
    return f"{field} ge datetime'{moment.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%S.%fZ}'"
