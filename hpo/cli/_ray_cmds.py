"""Commands for Ray clusters: ``submit`` a study as a Ray Job, follow it with ``job``.

``hpo submit`` uploads the directory holding the user's code (with the study file in it)
to the cluster's job server and runs ``hpo optimize STUDY --executor ray --address auto``
there; ``hpo job status|logs|stop`` follow a submitted job by its id.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.cli._common import EXIT_OK, EXIT_STUDY, add_command
from hpo.exceptions import HpoError, SpecError

if TYPE_CHECKING:
    from hpo.spec import StudySpec

__all__ = ["register", "with_executor"]

# Never uploaded with the working directory (Ray also honours .gitignore and .rayignore).
_EXCLUDES = [".git", ".venv", "venv", "__pycache__", "hpo_runs", "*.db", "*.db-wal", "*.db-shm"]
_LOG_TAIL_LINES = 40


def with_executor(spec: StudySpec, executor: str | None, address: str | None) -> StudySpec:
    """``spec`` with ``--executor``/``--address`` applied (``--executor ray`` implies process isolation).

    Raises:
        SpecError: ``--address`` without a ray executor, or an invalid address.
    """
    from hpo.spec import spec_from_dict

    if executor is None and address is None:
        return spec
    data = json.loads(spec.model_dump_json())
    ex = data["executor"]
    kind = executor or ex["type"]
    if address is not None and kind != "ray":
        raise SpecError(
            f"applies to --executor ray (the executor is {kind})", key="--address"
        )
    if kind == "ray":
        ex.update(type="ray", isolation="process")
        if address is not None:
            ex["address"] = address
    else:
        ex.update(type="local", address=None, cpus_per_worker=None)
    try:
        return spec_from_dict(data, check_entrypoint=False)
    except SpecError as e:
        if address is not None and e.key == "executor.address":  # the flag's value, not the file's
            raise SpecError(e.message, key="--address") from None
        raise


def _client(address: str) -> Any:
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as e:
        raise SpecError(f"needs Ray's job client ({e}); install it with: pip install 'hpo[ray]'") from None
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise HpoError(f"cannot reach the Ray job server at {address}: {e}") from None


def _entrypoint(study: Path, working_dir: Path) -> str:
    """The job's command, with the study file named relative to the uploaded directory."""
    try:
        rel = study.resolve().relative_to(working_dir)
    except ValueError:
        raise SpecError(
            f"the study file {study} is not inside the working directory {working_dir} (see --working-dir)"
        ) from None
    return f"hpo optimize {shlex.quote(rel.as_posix())} --executor ray --address auto"


def _check_storage(spec: StudySpec, file: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(spec.storage_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_absolute():
        raise SpecError(
            f"a relative SQLite path ({url.database}) would lie in the job's temporary copy of the working "
            "directory: give an absolute path on the head node, or a postgresql:// database",
            file=file,
            key="storage",
        )


def _cmd_submit(args: argparse.Namespace) -> int:
    from hpo.spec import load_spec

    study = Path(args.spec)
    # The entrypoint imports on the cluster; the engine config is checked here, before the upload.
    spec = load_spec(study, check_entrypoint=False, check_engine=True)
    _check_storage(spec, args.spec)
    working_dir = Path(args.working_dir).resolve()
    if not working_dir.is_dir():
        found = "does not exist" if not working_dir.exists() else "is not a directory"
        raise SpecError(f"{str(working_dir)!r} {found}", key="--working-dir")
    entrypoint = _entrypoint(study, working_dir)
    run_dir = Path(spec.run_dir or Path("hpo_runs") / spec.name)
    if not run_dir.is_absolute():
        print(f"note: run_dir {str(run_dir)!r} is relative: the trials' logs and checkpoints stay in the job's "
              "copy of the working directory on the head node (docs/RAY.md)", file=sys.stderr)
    client = _client(args.address)
    job_id = client.submit_job(
        entrypoint=entrypoint,
        runtime_env={"working_dir": str(working_dir), "excludes": _EXCLUDES},
        metadata={"hpo_study": spec.name},
    )
    print(job_id, flush=True)
    if not args.wait:
        return EXIT_OK
    return _wait(client, job_id)


def _wait(client: Any, job_id: str) -> int:
    """Wait for the job to end; print its status and last log lines; 0 if it succeeded."""
    from ray.job_submission import JobStatus

    while not (status := client.get_job_status(job_id)).is_terminal():
        time.sleep(1.0)
    tail = client.get_job_logs(job_id).splitlines()[-_LOG_TAIL_LINES:]
    print(f"job {job_id} {status.value}; last {len(tail)} log line(s):", file=sys.stderr)
    for line in tail:
        print(f"  {line}", file=sys.stderr)
    return EXIT_OK if status == JobStatus.SUCCEEDED else EXIT_STUDY


def _job_info(client: Any, job_id: str) -> Any:
    try:
        return client.get_job_info(job_id)
    except RuntimeError as e:  # the job server answers unknown ids with an HTTP error
        raise HpoError(f"no job {job_id!r}: {e}") from None


def _cmd_job_status(args: argparse.Namespace) -> int:
    client = _client(args.address)
    info = _job_info(client, args.job)
    if args.wait:
        return _wait(client, args.job)
    print(f"{args.job}: {info.status.value}" + (f" ({info.message})" if info.message else ""))
    return EXIT_OK


def _cmd_job_logs(args: argparse.Namespace) -> int:
    client = _client(args.address)
    _job_info(client, args.job)
    if not args.follow:
        sys.stdout.write(client.get_job_logs(args.job))
        return EXIT_OK

    async def follow() -> None:
        async for lines in client.tail_job_logs(args.job):
            sys.stdout.write(lines)
            sys.stdout.flush()

    asyncio.run(follow())
    return EXIT_OK


def _cmd_job_stop(args: argparse.Namespace) -> int:
    client = _client(args.address)
    _job_info(client, args.job)
    client.stop_job(args.job)
    print(f"{args.job}: stop requested")
    return EXIT_OK


def _job_server(text: str) -> str:
    """argparse type of ``--address``: the URL of a Ray job server."""
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"a job server URL is http://HOST:PORT, e.g. http://HOST:8265 (got {text!r})")
    return text


def _job_ref(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job id, as `hpo submit` printed it")
    p.add_argument("--address", required=True, type=_job_server, help="the cluster's job server, e.g. http://HOST:8265")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``submit`` and ``job status|logs|stop`` to the ``hpo`` parser."""
    p = add_command(sub, "submit", "run a study on a Ray cluster as a Ray Job", _cmd_submit,
                    "hpo submit studies/x.yaml --address http://HOST:8265 --wait")
    p.add_argument("spec", help="study file (YAML), inside the working directory")
    p.add_argument("--address", required=True, type=_job_server, help="the cluster's job server, e.g. http://HOST:8265")
    p.add_argument("--working-dir", default=".",
                   help="directory with the trial code and the study file, uploaded to the cluster "
                   "(default: .)")
    p.add_argument("--wait", action="store_true",
                   help="wait for the job; exit 0 if it succeeded, 1 otherwise, printing its last log lines")

    # Each of status/logs/stop sets its own ``run``, which replaces this one.
    p = add_command(sub, "job", "follow a study submitted with `hpo submit`", lambda a: EXIT_OK,
                    "hpo job status raysubmit_XYZ --address http://HOST:8265")
    jobs = p.add_subparsers(dest="job_command", metavar="{status,logs,stop}", required=True, parser_class=type(p))
    q = add_command(jobs, "status", "the job's state (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)", _cmd_job_status,
                    "hpo job status raysubmit_XYZ --address http://HOST:8265 --wait")
    _job_ref(q)
    q.add_argument("--wait", action="store_true", help="wait for the job to end; exit 0 if it succeeded")
    q = add_command(jobs, "logs", "the job's output (the `hpo optimize` progress lines)", _cmd_job_logs,
                    "hpo job logs raysubmit_XYZ --address http://HOST:8265 --follow")
    _job_ref(q)
    q.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    q = add_command(jobs, "stop", "stop the job (its running trials are retried by the study's next run)", _cmd_job_stop,
                    "hpo job stop raysubmit_XYZ --address http://HOST:8265")
    _job_ref(q)
