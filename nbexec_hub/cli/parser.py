"""The `nbexec` command line: its arguments, exit codes and where settings come from."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from typing import Any

import yaml

from ..client import RESERVED_PARAMS, NbexecClient

EXIT_OK = 0
EXIT_EXECUTION_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_READY = 3
EXIT_HTTP_ERROR = 4
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    success (for run/progress: the execution completed; for status: the server is ready)
  1    the execution ended in error (its error is printed)
  2    usage error (bad arguments, missing hub URL, user or token)
  3    the server is not ready (status; or the service answered 409 and --start was not given)
  4    authentication, HTTP or connection error (the server's message is printed)
  130  interrupted with Ctrl-C (the execution was shut down or left running, as chosen)
"""

SETTINGS_HELP = """\
where settings come from (flags win over the environment):
  hub service: --hub-url, else NBEXEC_HUB_URL, else JUPYTERHUB_PUBLIC_HUB_URL or
               JUPYTERHUB_API_URL without their hub/ part (set inside a user server);
               --token, else JUPYTERHUB_API_TOKEN; --user, else JUPYTERHUB_USER;
               --server, else JUPYTERHUB_SERVER_NAME when acting on your own server
  one server:  --server-url, else JUPYTER_SERVER_URL; --token, else JUPYTER_TOKEN
               or JUPYTERHUB_API_TOKEN (talks to <server-url>/api/executions directly)
"""


LOG_OUTPUT_HELP = (
    "print the cells' outputs as they arrive: printed text to stdout or stderr as the "
    "kernel sent it, other outputs (images, results, errors) as one line saying what they are"
)


class UsageError(Exception):
    """Arguments or settings that cannot work (exit code 2)."""


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of the exit-code and settings epilog."""


def _common_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    target = parent.add_argument_group("target")
    target.add_argument("--hub-url", help="the hub's public URL (e.g. https://hub.example.org/)")
    target.add_argument("--token", help="hub API token, or the server's token with --server-url")
    target.add_argument("--user", help="whose server to act on (default: yourself)")
    target.add_argument("--server", dest="server_name", metavar="NAME",
                        help="named server of the user (default: the default server)")
    target.add_argument("--server-url",
                        help="talk straight to this Jupyter server instead of the hub service")
    parent.add_argument("--json", action="store_true",
                        help="print events and models as JSON lines, for scripts")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `nbexec` with every sub-command of CONTRACT C.2."""
    common = _common_options()
    epilog = EXIT_CODES_HELP + "\n" + SETTINGS_HELP
    parser = argparse.ArgumentParser(
        prog="nbexec",
        description="Run notebooks with parameters on a Jupyter server, through the JupyterHub "
        "service nbexec or straight to one server, and follow them live.",
        epilog=epilog,
        formatter_class=Formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[common],
                              epilog=epilog, formatter_class=Formatter)

    run = add("run", "Run a notebook and (by default) wait for it, showing its progress.")
    run.add_argument("notebook", help="notebook path relative to the server's root")
    run.add_argument("-p", "--param", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"),
                     help="a notebook parameter; sent as a string, converted by the server to "
                     "the declared type (repeatable)")
    run.add_argument("--params-file", metavar="FILE",
                     help="JSON or YAML mapping of parameters with typed values (-p wins)")
    run.add_argument("--output", dest="output_path", metavar="PATH",
                     help="output notebook path (default: <stem>-Executed<N>.ipynb)")
    run.add_argument("--overwrite", action="store_true", help="overwrite an existing --output")
    run.add_argument("--kernel", help="kernel name (default: the notebook's)")
    run.add_argument("--cell-timeout", type=_positive_int, metavar="N",
                     help="end the run when a cell runs longer than N seconds")
    run.add_argument("--start", action="store_true",
                     help="start the server first if it is stopped (hub service only)")
    run.add_argument("--start-timeout", type=_positive_int, default=60, metavar="N",
                     help="with --start: seconds to wait for the server (default: 60)")
    run.add_argument("--no-wait", dest="wait", action="store_false",
                     help="print the new execution's id and return at once")
    run.add_argument("--on-interrupt", choices=["ask", "shutdown", "leave"], default="ask",
                     help="what Ctrl-C does to the running execution: ask (the default; "
                     "leave when there is no terminal to ask on), shutdown, leave")

    run.add_argument("--log-output", action="store_true", help=LOG_OUTPUT_HELP)

    listing = add("list", "List the executions of the server.")
    listing.add_argument("--all-servers", action="store_true",
                         help="every ready server you may access (hub service only)")
    for name, text in [("show", "Show one execution's model."),
                       ("progress", "Follow an execution's progress until it ends."),
                       ("shutdown", "Shut an execution's kernel down.")]:
        one = add(name, text)
        one.add_argument("exec_id", metavar="ID", help="execution id")
        if name == "progress":
            one.add_argument("--log-output", action="store_true", help=LOG_OUTPUT_HELP)
    delete = add("delete", "Delete one execution, or all with --all (kernels are shut down).")
    which = delete.add_mutually_exclusive_group(required=True)
    which.add_argument("exec_id", metavar="ID", nargs="?", help="execution id")
    which.add_argument("--all", action="store_true", help="delete every execution")
    add("status", "Show the server's state; exit code 0 only when it is ready, else 3.")
    params = add("parameters", "List the parameters a notebook declares.")
    params.add_argument("notebook", help="notebook path relative to the server's root")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


def _hub_url_from_env(env: Mapping[str, str]) -> str | None:
    if env.get("NBEXEC_HUB_URL"):
        return env["NBEXEC_HUB_URL"]
    # the public URL goes through the proxy, which routes /services/; the hub's own
    # API address (JUPYTERHUB_API_URL) reaches the service only when it is the proxy's too
    public = env.get("JUPYTERHUB_PUBLIC_HUB_URL", "")
    if public.startswith(("http://", "https://")):
        return _strip_suffix(public, "hub/")
    api = env.get("JUPYTERHUB_API_URL")
    if api:
        return _strip_suffix(api, "hub/api")
    return None


def _strip_suffix(url: str, suffix: str) -> str:
    url = url.rstrip("/")
    suffix = suffix.rstrip("/")
    if url.endswith("/" + suffix):
        url = url[: -len(suffix)]
    return url.rstrip("/") + "/"


def make_client(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> NbexecClient:
    """The client the arguments and the environment point at; `UsageError` when incomplete."""
    env = os.environ if env is None else env
    server_url = args.server_url or env.get("JUPYTER_SERVER_URL")
    if server_url:
        if args.hub_url or args.user or args.server_name:
            raise UsageError("--server-url talks to one server: drop --hub-url/--user/--server")
        token = args.token or env.get("JUPYTER_TOKEN") or env.get("JUPYTERHUB_API_TOKEN")
        return NbexecClient.for_server(server_url, token)
    hub_url = args.hub_url or _hub_url_from_env(env)
    if not hub_url:
        raise UsageError("no hub URL: pass --hub-url (or --server-url for one server), "
                         "or set NBEXEC_HUB_URL")
    token = args.token or env.get("JUPYTERHUB_API_TOKEN")
    if not token:
        raise UsageError("no token: pass --token or set JUPYTERHUB_API_TOKEN")
    me = env.get("JUPYTERHUB_USER")
    user = args.user or me
    if not user:
        raise UsageError("no user: pass --user or set JUPYTERHUB_USER")
    server_name = args.server_name
    if server_name is None:
        server_name = env.get("JUPYTERHUB_SERVER_NAME", "") if user == me else ""
    return NbexecClient.for_hub(hub_url, token, user, server_name)


def load_params(args: argparse.Namespace) -> dict[str, Any]:
    """Notebook parameters from --params-file (typed) overlaid with -p pairs (strings)."""
    params: dict[str, Any] = {}
    if args.params_file:
        try:
            with open(args.params_file, encoding="utf-8") as f:
                if args.params_file.endswith(".json"):
                    loaded = json.load(f)
                else:
                    loaded = yaml.safe_load(f)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise UsageError(f"cannot read --params-file {args.params_file}: {e}") from e
        if not isinstance(loaded, dict):
            raise UsageError(f"--params-file {args.params_file} must hold a mapping")
        # YAML dates and the like are not JSON: send their text
        params = {str(k): json.loads(json.dumps(v, default=str)) for k, v in loaded.items()}
    for name, value in args.param:
        params[name] = value
    clash = sorted(set(params) & RESERVED_PARAMS)
    if clash:
        raise UsageError(f"{', '.join(clash)}: reserved, use the matching option instead")
    return params
