"""The `nbexec` command: run notebooks with parameters and follow them, from any shell.

`main()` is the console script. Each sub-command is one function taking the parsed
arguments and a `NbexecClient`, returning the exit code (see `parser.EXIT_CODES_HELP`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ..client import NbexecAPIError, NbexecClient
from .display import ProgressView, describe, print_answer, print_json, table
from .parser import (
    EXIT_EXECUTION_ERROR,
    EXIT_HTTP_ERROR,
    EXIT_INTERRUPTED,
    EXIT_NOT_READY,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    build_parser,
    load_params,
    make_client,
)

__all__ = ["main", "build_parser"]

Command = Callable[[argparse.Namespace, NbexecClient], int]


def _is_error(model: dict) -> bool:
    """Whether an execution model ended in error."""
    return str(model.get("status", "")).startswith("error")


def _finish(args: argparse.Namespace, view: ProgressView, model: dict) -> int:
    """Report a finished execution: its output on stdout, its error on stderr."""
    if args.json:
        return EXIT_EXECUTION_ERROR if _is_error(model) else EXIT_OK
    if _is_error(model):
        error = (view.final or {}).get("error") or model.get("status")
        print(f"execution {model.get('exec_id')} failed:\n{error}", file=sys.stderr)
        if model.get("output_path"):
            print(f"partial output: {model['output_path']}", file=sys.stderr)
        return EXIT_EXECUTION_ERROR
    print(f"completed {model.get('exec_id')}: {model.get('output_path')}")
    return EXIT_OK


def _ask_shutdown(args: argparse.Namespace) -> bool:
    """After Ctrl-C: whether to shut the execution down (asking on a terminal)."""
    if args.on_interrupt != "ask":
        return args.on_interrupt == "shutdown"
    if not sys.stdin.isatty():
        return False
    try:
        answer = input("\nShut the execution down? [y/N] (no: leave it running) ")
    except (KeyboardInterrupt, EOFError):
        return False
    return answer.strip().lower() in ("y", "yes")


def _interrupted(args: argparse.Namespace, client: NbexecClient, exec_id: str | None) -> int:
    """Ctrl-C during run: shut the execution down or leave it, as chosen."""
    if exec_id is None:
        print("\ninterrupted before the server named the execution; see `nbexec list`",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if _ask_shutdown(args):
        model = client.shutdown(exec_id)
        print(f"\nshut down {exec_id}" + (f": {model['status']}" if model else ""),
              file=sys.stderr)
    else:
        print(f"\nleft {exec_id} running; follow it with: nbexec progress {exec_id}",
              file=sys.stderr)
    return EXIT_INTERRUPTED


def cmd_run(args: argparse.Namespace, client: NbexecClient) -> int:
    """Run a notebook, by default waiting for it with a progress display."""
    params = load_params(args)
    if args.start:
        if not client.target.can_start:
            raise UsageError("--start needs the hub service (a plain server cannot be started)")
        client.start_if_needed(args.start_timeout)
    options = dict(output_path=args.output_path, overwrite=args.overwrite,
                   kernel=args.kernel, cell_timeout=args.cell_timeout)
    if not args.wait:
        model = client.run(args.notebook, params, wait=False, **options)
        print_answer(args.json, model, model["exec_id"])
        return EXIT_OK
    view = ProgressView.for_terminal(args.json, log_output=args.log_output)
    try:
        model = client.run(args.notebook, params, wait=True, on_event=view, **options)
    except KeyboardInterrupt:
        view.close()
        return _interrupted(args, client, view.exec_id)
    finally:
        view.close()
    return _finish(args, view, model)


def cmd_progress(args: argparse.Namespace, client: NbexecClient) -> int:
    """Follow an execution until it ends; exit code as for run."""
    view = ProgressView.for_terminal(args.json, log_output=args.log_output)
    try:
        model = client.follow(args.exec_id, on_event=view)
    except KeyboardInterrupt:
        view.close()
        return EXIT_INTERRUPTED
    finally:
        view.close()
    return _finish(args, view, model)


def cmd_list(args: argparse.Namespace, client: NbexecClient) -> int:
    """List executions as a table (or JSON)."""
    if args.all_servers:
        if not client.target.can_list_all_servers:
            raise UsageError("--all-servers needs the hub service")
        body = client.list_all_servers()
        executions = body.get("executions", [])
    else:
        body = None
        executions = client.list()
    if args.json:
        print_json(body if body is not None else {"executions": executions})
        return EXIT_OK
    header = ["ID", "STATUS", "PROGRESS", "PATH", "OUTPUT"]
    if args.all_servers:
        header = ["USER", "SERVER"] + header
    rows = []
    for m in executions:
        row = [m["exec_id"], str(m["status"]), m.get("progress") or "-", m["path"],
               m.get("output_path") or "-"]
        if args.all_servers:
            row = [m.get("user", ""), m.get("server_name", "")] + row
        rows.append(row)
    print(table(rows, header))
    return EXIT_OK


def cmd_show(args: argparse.Namespace, client: NbexecClient) -> int:
    """Print one execution's model."""
    model = client.get(args.exec_id)
    print_answer(args.json, model, describe(model))
    return EXIT_OK


def cmd_shutdown(args: argparse.Namespace, client: NbexecClient) -> int:
    """Shut an execution down and print its model."""
    model = client.shutdown(args.exec_id)
    print_answer(args.json, model,
                 f"shut down {args.exec_id}" + (f": {model['status']}" if model else ""))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, client: NbexecClient) -> int:
    """Delete one execution or all of them."""
    if args.all:
        client.delete_all()
        message = "deleted all executions"
    else:
        client.delete(args.exec_id)
        message = f"deleted {args.exec_id}"
    print_answer(args.json, {"deleted": "all" if args.all else args.exec_id}, message)
    return EXIT_OK


def cmd_status(args: argparse.Namespace, client: NbexecClient) -> int:
    """Print the server's state; 0 when ready, 3 otherwise."""
    try:
        status = client.server_status()
    except NbexecAPIError as e:
        status = client.target.unreachable_status(e)
        if status is None:
            raise
    pending = f" ({status['pending']})" if status.get("pending") else ""
    print_answer(args.json, status, f"{status.get('state')}{pending}")
    return EXIT_OK if status.get("ready") else EXIT_NOT_READY


def cmd_parameters(args: argparse.Namespace, client: NbexecClient) -> int:
    """List a notebook's declared parameters."""
    body = client.parameters(args.notebook)
    if args.json:
        print_json(body)
        return EXIT_OK
    rows = [[p["name"], p.get("type") or "-", str(p.get("default")), p.get("help") or ""]
            for p in body.get("parameters", [])]
    print(table(rows, ["NAME", "TYPE", "DEFAULT", "HELP"]) if rows else "no parameters")
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    "run": cmd_run,
    "list": cmd_list,
    "show": cmd_show,
    "progress": cmd_progress,
    "shutdown": cmd_shutdown,
    "delete": cmd_delete,
    "status": cmd_status,
    "parameters": cmd_parameters,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nbexec` console script; returns (and exits with) the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        client = make_client(args)
        code = COMMANDS[args.command](args, client)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"nbexec: error: {e}", file=sys.stderr)
        code = EXIT_USAGE
    except NbexecAPIError as e:
        code = _api_error(args, e)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    if argv is None:
        sys.exit(code)
    return code


def _api_error(args: argparse.Namespace, e: NbexecAPIError) -> int:
    """Print the server's message; 409 (server not ready) is exit 3, the rest exit 4."""
    if args.json:
        print_json({"error": e.message, "status": e.status, "body": e.body}, sys.stderr)
    else:
        status = f"{e.status}: " if e.status else ""
        print(f"nbexec: {status}{e.message}", file=sys.stderr)
        if e.status == 409 and args.command == "run":
            print("nbexec: add --start to start the server first", file=sys.stderr)
    if e.status == 409:
        return EXIT_NOT_READY
    return EXIT_HTTP_ERROR
