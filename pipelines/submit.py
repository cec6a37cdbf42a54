"""Submit, follow, resubmit and list emotion-hpo runs on an Argo server.

    python pipelines/submit.py --install-template               # install/update the WorkflowTemplate
    python pipelines/submit.py --param num-samples=16 --wait    # run it (all parameters sent explicitly)
    python pipelines/submit.py --one-off --dry-run              # print the inline Workflow it would send
    python pipelines/submit.py --resubmit emotion-hpo-x7k2p --memoized
    python pipelines/submit.py --list

Connection settings follow the Argo CLI: ARGO_SERVER (host:port, or a URL), ARGO_TOKEN,
ARGO_NAMESPACE, ARGO_INSECURE_SKIP_VERIFY, ARGO_BASE_HREF (and ARGO_SECURE=false for plain http);
flags override them. The token is sent as a Bearer header and never printed.

Exit codes: 0 submitted / Succeeded, 1 the run Failed, 2 bad usage (e.g. an unknown parameter),
3 the run ended in Error, 4 the server refused or could not be reached, 5 --timeout expired.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python pipelines/submit.py`: make `pipelines` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
import yaml  # noqa: E402
from hera.exceptions import AlreadyExists, Forbidden, HeraException, NotFound, Unauthorized  # noqa: E402
from hera.workflows import WorkflowsService  # noqa: E402
from hera.workflows.models import (  # noqa: E402
    Workflow as WorkflowModel,
)
from hera.workflows.models import (  # noqa: E402
    WorkflowCreateRequest,
    WorkflowResubmitRequest,
    WorkflowTemplateCreateRequest,
    WorkflowTemplateUpdateRequest,
)
from rich.console import Console  # noqa: E402
from rich.live import Live  # noqa: E402
from rich.table import Table  # noqa: E402

from pipelines import parameters  # noqa: E402
from pipelines.emotion_hpo import NAME, build_template_run, build_workflow, build_workflow_template  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR, EXIT_API, EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5
FINAL_PHASES = {"Succeeded": EXIT_OK, "Failed": EXIT_FAILED, "Error": EXIT_ERROR}
SHOWN_NODE_TYPES = {"Pod", "Skipped", "Suspend", "Resource"}
INSTALL_HINT = "python pipelines/submit.py --install-template"

warnings.filterwarnings("ignore", message=r".*`json` method is deprecated.*")
warnings.filterwarnings("ignore", message=r".*The `json` method is deprecated.*")


class SubmitError(Exception):
    """A failure with a message for the user and the exit code to end with."""

    def __init__(self, message: str, code: int = EXIT_API) -> None:
        super().__init__(message)
        self.code = code


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Connection:
    server: str
    namespace: str
    token: str | None
    verify_ssl: bool
    base_href: str = "/"
    secure: bool = True  # ARGO_SECURE: https to a server given without a scheme

    @property
    def host(self) -> str:
        """Base URL ending in '/': Hera joins `api/v1/...` to it, so a path prefix must end in '/'."""
        server = self.server.rstrip("/")
        if "://" not in server:
            scheme = "https" if self.secure else "http"
            server = f"{scheme}://{server}"
        href = "/" + self.base_href.strip("/") + "/" if self.base_href.strip("/") else "/"
        return server + href

    def service(self) -> WorkflowsService:
        return WorkflowsService(
            host=self.host, token=self.token, verify_ssl=self.verify_ssl, namespace=self.namespace
        )


def connection_from(args: argparse.Namespace, environ: dict[str, str]) -> Connection:
    server = args.server or environ.get("ARGO_SERVER")
    if not server:
        raise SubmitError(
            "no Argo server: pass --server or set ARGO_SERVER (e.g. localhost:2746)", EXIT_USAGE
        )
    insecure = args.insecure_skip_verify or _truthy(environ.get("ARGO_INSECURE_SKIP_VERIFY"))
    return Connection(
        server=server,
        namespace=args.namespace or environ.get("ARGO_NAMESPACE") or "argo",
        token=args.token or environ.get("ARGO_TOKEN") or None,
        verify_ssl=not insecure,
        base_href=args.base_href if args.base_href is not None else environ.get("ARGO_BASE_HREF", "/"),
        secure=environ.get("ARGO_SECURE", "true").strip().lower() not in {"false", "0", "no"},
    )


def _call(conn: Connection, what: str, fn: Callable, *, not_found: str | None = None):
    """Run one API call and turn transport/HTTP failures into clear SubmitErrors (token never shown)."""
    try:
        return fn()
    except requests.exceptions.SSLError as exc:
        raise SubmitError(
            f"TLS error talking to {conn.host} while trying to {what}: {type(exc).__name__}. "
            "For a self-signed certificate pass --insecure-skip-verify (or ARGO_INSECURE_SKIP_VERIFY=true)."
        ) from None
    except requests.exceptions.ConnectionError:
        raise SubmitError(
            f"cannot reach the Argo server at {conn.host} (while trying to {what}). "
            "Check ARGO_SERVER/--server, ARGO_BASE_HREF and that the server is running "
            "(e.g. `kubectl -n argo port-forward svc/argo-server 2746:2746`)."
        ) from None
    except requests.exceptions.Timeout:
        raise SubmitError(f"the Argo server at {conn.host} timed out while trying to {what}") from None
    except Unauthorized:
        raise SubmitError(
            f"the Argo server rejected the token (401) while trying to {what}. Set ARGO_TOKEN "
            '(e.g. `export ARGO_TOKEN="$(argo auth token)"`) or pass --token.'
        ) from None
    except Forbidden as exc:
        raise SubmitError(
            f"the token is not allowed to {what} in namespace {conn.namespace!r} (403): {exc}. "
            "Its service account needs RBAC for workflows/workflowtemplates there."
        ) from None
    except NotFound as exc:
        raise SubmitError(not_found or f"not found (404) while trying to {what}: {exc}") from None
    except AlreadyExists as exc:
        raise SubmitError(
            f"conflict (409) while trying to {what}: {exc}. The object already exists or was changed "
            "concurrently; retry, or use generateName (the default) instead of a fixed name."
        ) from None
    except HeraException as exc:
        raise SubmitError(f"the Argo server refused to {what}: {exc}") from None


def _template_missing(conn: Connection) -> str:
    return (
        f"WorkflowTemplate {NAME!r} is not installed in namespace {conn.namespace!r} (404). "
        "Install it with:\n"
        f"  ARGO_NAMESPACE={conn.namespace} {INSTALL_HINT}\n"
        "or submit the whole workflow inline with --one-off."
    )


def install_template(conn: Connection, svc: WorkflowsService, console: Console) -> int:
    template = build_workflow_template(namespace=conn.namespace).build()
    try:
        existing = svc.get_workflow_template(NAME, namespace=conn.namespace)
    except NotFound:
        existing = None
    except (HeraException, requests.exceptions.RequestException):
        existing = _call(conn, f"read WorkflowTemplate {NAME}", lambda: svc.get_workflow_template(NAME))
    if existing is None:
        _call(
            conn,
            f"create WorkflowTemplate {NAME}",
            lambda: svc.create_workflow_template(
                WorkflowTemplateCreateRequest(template=template, namespace=conn.namespace),
                namespace=conn.namespace,
            ),
        )
        console.print(f"created WorkflowTemplate {NAME} in {conn.namespace}")
    else:
        template.metadata.resource_version = existing.metadata.resource_version
        _call(
            conn,
            f"update WorkflowTemplate {NAME}",
            lambda: svc.update_workflow_template(
                NAME,
                WorkflowTemplateUpdateRequest(template=template, name=NAME, namespace=conn.namespace),
                namespace=conn.namespace,
            ),
        )
        console.print(f"updated WorkflowTemplate {NAME} in {conn.namespace}")
    return EXIT_OK


def submit(conn: Connection, svc: WorkflowsService, values: dict[str, str], one_off: bool) -> WorkflowModel:
    if one_off:
        workflow = build_workflow(values, namespace=conn.namespace).build()
    else:
        _call(
            conn,
            f"read WorkflowTemplate {NAME}",
            lambda: svc.get_workflow_template(NAME, namespace=conn.namespace),
            not_found=_template_missing(conn),
        )
        workflow = build_template_run(values, namespace=conn.namespace).build()
    return _call(
        conn,
        "create a workflow",
        lambda: svc.create_workflow(
            WorkflowCreateRequest(workflow=workflow, namespace=conn.namespace), namespace=conn.namespace
        ),
        not_found=_template_missing(conn),
    )


def _nodes_table(wf: WorkflowModel) -> Table:
    status = wf.status
    phase = (status.phase if status else None) or "Pending"
    table = Table(title=f"{wf.metadata.name}: {phase}", title_justify="left")
    for column in ("step", "phase", "started", "finished", "message"):
        table.add_column(column)
    nodes = sorted((status.nodes or {}).values() if status else [], key=lambda n: str(n.started_at or ""))
    for node in nodes:
        if node.type not in SHOWN_NODE_TYPES:
            continue
        table.add_row(
            node.display_name or node.name,
            node.phase or "",
            str(node.started_at or "")[11:19],
            str(node.finished_at or "")[11:19],
            (node.message or "")[:80],
        )
    return table


def wait_for(
    conn: Connection,
    svc: WorkflowsService,
    name: str,
    console: Console,
    *,
    interval: float,
    timeout: float | None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll the workflow until it ends; show its steps live; return the exit code for its final phase.

    Hera's own wait() stops polling while the phase is Pending or unset, so this loop polls itself.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: dict[str, str] = {}

    def fetch() -> WorkflowModel:
        return _call(conn, f"read workflow {name}", lambda: svc.get_workflow(name, namespace=conn.namespace))

    def log_changes(wf: WorkflowModel) -> None:  # plain lines where no live display is possible (CI logs)
        for node in (wf.status.nodes or {}).values() if wf.status else []:
            if node.type in SHOWN_NODE_TYPES and seen.get(node.id) != node.phase:
                seen[node.id] = node.phase or ""
                console.print(f"{node.display_name or node.name}: {node.phase}")

    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    try:
        if live:
            live.start()
        while True:
            wf = fetch()
            phase = wf.status.phase if wf.status else None
            if live:
                live.update(_nodes_table(wf), refresh=True)
            else:
                log_changes(wf)
            if phase in FINAL_PHASES:
                break
            if deadline is not None and time.monotonic() >= deadline:
                console.print(f"gave up waiting after {timeout:.0f}s; {name} is still {phase or 'Pending'}")
                return EXIT_TIMEOUT
            sleep(interval)
    finally:
        if live:
            live.stop()
    message = f": {wf.status.message}" if wf.status and wf.status.message else ""
    console.print(f"{name} {phase}{message}")
    return FINAL_PHASES[phase]


def list_runs(conn: Connection, svc: WorkflowsService, console: Console, selector: str, limit: int) -> int:
    result = _call(
        conn,
        "list workflows",
        lambda: svc.list_workflows(namespace=conn.namespace, label_selector=selector or None),
    )
    items = sorted(result.items or [], key=lambda w: str(w.metadata.creation_timestamp or ""), reverse=True)
    table = Table(title=f"workflows in {conn.namespace}" + (f" ({selector})" if selector else ""))
    for column in ("name", "phase", "started", "finished", "progress"):
        table.add_column(column)
    for wf in items[:limit]:
        s = wf.status
        table.add_row(
            wf.metadata.name or "",
            (s.phase if s else None) or "Pending",
            str(s.started_at or "") if s else "",
            str(s.finished_at or "") if s else "",
            (s.progress if s else None) or "",
        )
    console.print(table)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python pipelines/submit.py",
        description="Submit and follow emotion-hpo runs on an Argo server.",
        epilog=f"Valid --param names: {', '.join(parameters.NAMES)}",
    )
    conn = parser.add_argument_group("connection (flags override the Argo CLI environment variables)")
    conn.add_argument("--server", help="Argo server host:port or URL (ARGO_SERVER)")
    conn.add_argument("--namespace", "-n", help="namespace (ARGO_NAMESPACE, default argo)")
    conn.add_argument("--token", help="bearer token (ARGO_TOKEN); prefer the environment variable")
    conn.add_argument("--insecure-skip-verify", action="store_true", help="skip TLS verification")
    conn.add_argument("--base-href", help="path prefix the server is served under (ARGO_BASE_HREF)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--install-template", action="store_true", help=f"create or update the {NAME} template")
    mode.add_argument(
        "--resubmit", metavar="NAME", help="resubmit an earlier run (parameters may be overridden)"
    )
    mode.add_argument("--list", action="store_true", help="show recent runs")
    parser.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a workflow parameter (repeatable)",
    )
    parser.add_argument(
        "--one-off",
        action="store_true",
        help="submit the whole workflow inline instead of a run of the installed template",
    )
    parser.add_argument("--memoized", action="store_true", help="with --resubmit: reuse the successful steps")
    parser.add_argument("--dry-run", action="store_true", help="print what would be sent and exit")
    parser.add_argument("--wait", action="store_true", help="follow the run until it ends; exit by its phase")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="seconds between polls with --wait")
    parser.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds")
    parser.add_argument(
        "--selector",
        default=f"workflows.argoproj.io/workflow-template={NAME}",
        help="label selector for --list ('' for every workflow)",
    )
    parser.add_argument("--limit", type=int, default=20, help="rows shown by --list")
    return parser


def _dry_run(
    args: argparse.Namespace,
    values: dict[str, str],
    overrides: dict[str, str],
    console: Console,
    environ: dict[str, str],
) -> int:
    namespace = args.namespace or environ.get("ARGO_NAMESPACE") or "argo"
    if args.install_template:
        doc = build_workflow_template(namespace=namespace).to_dict()
    elif args.resubmit:
        doc = WorkflowResubmitRequest(
            name=args.resubmit,
            namespace=namespace,
            memoized=args.memoized or None,
            parameters=[f"{k}={v}" for k, v in overrides.items()] or None,
        ).model_dump(by_alias=True, exclude_none=True)
    elif args.one_off:
        doc = build_workflow(values, namespace=namespace).to_dict()
    else:
        doc = build_template_run(values, namespace=namespace).to_dict()
    console.print(yaml.safe_dump(doc, sort_keys=False), end="", markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None, environ: dict[str, str] | None = None, console: Console | None = None
) -> int:
    environ = dict(os.environ if environ is None else environ)
    console = console or Console()
    err = Console(stderr=True) if console.file is sys.stdout else console
    args = build_parser().parse_args(argv)
    try:
        overrides = parameters.parse_assignments(args.param)
        values = parameters.resolve(overrides)
    except parameters.ParameterError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    if args.memoized and not args.resubmit:
        err.print("error: --memoized only applies to --resubmit", markup=False)
        return EXIT_USAGE
    if args.dry_run:
        return _dry_run(args, values, overrides, console, environ)
    try:
        conn = connection_from(args, environ)
        with conn.service() as svc:
            if args.install_template:
                return install_template(conn, svc, console)
            if args.list:
                return list_runs(conn, svc, console, args.selector, args.limit)
            if args.resubmit:
                req = WorkflowResubmitRequest(
                    name=args.resubmit,
                    namespace=conn.namespace,
                    memoized=args.memoized or None,
                    parameters=[f"{k}={v}" for k, v in overrides.items()] or None,
                )
                wf = _call(
                    conn,
                    f"resubmit {args.resubmit}",
                    lambda: svc.resubmit_workflow(args.resubmit, req, namespace=conn.namespace),
                    not_found=f"no workflow named {args.resubmit!r} in namespace {conn.namespace!r} (404)",
                )
            else:
                wf = submit(conn, svc, values, args.one_off)
            name = wf.metadata.name
            console.print(f"submitted {name}: {svc.get_workflow_link(name)}", markup=False, highlight=False)
            if not args.wait:
                return EXIT_OK
            return wait_for(conn, svc, name, console, interval=args.poll_interval, timeout=args.timeout)
    except SubmitError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        return exc.code
    except KeyboardInterrupt:
        err.print("interrupted; the workflow keeps running on the server", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
