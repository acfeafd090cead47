"""The kernel template: a process that imported ipykernel once and forks kernels on request.

Run by the extension as ``python fork_template.py <socket fd>`` with the server's Python
(never forked from the server itself, which has threads and an event loop). It imports
ipykernel and IPython, freezes the garbage collector (so that children share those pages
instead of copying them as the collector touches them), and then waits on its socket,
starting no thread, event loop or ZMQ context: a fork of a process holding any of those
inherits them broken.

The protocol is one JSON object per line. Template to server: ``{"ready": pid}`` once
imported, ``{"forked": id, "pid": pid}`` per fork, ``{"exited": pid, "status": code}``
when a child ends (the template reaps them: it is their parent). Server to template:
``{"fork": id, "argv": [...], "env": {...}, "cwd": "..."}`` and ``{"ping": n}`` (answered
``{"pong": n}``). End of file on the socket (the server stopped or died) ends the template.

A child leaves the template's loop and starts the kernel the way ``python -m
ipykernel_launcher`` would, in a new session, after setting its working directory, its
environment (``JPY_PARENT_PID`` naming the template, its actual parent, so that the kernel
ends when the template does) and its arguments: the kernel initializes in exactly the
state of a freshly spawned one. This file uses the standard library only, so that it can
serve any environment that has ipykernel.
"""

import sys

# sys.path[0] is this file's folder, whose module names (metrics, request, ...) would
# shadow top-level packages; a kernel gets its own first entry after the fork
del sys.path[0]

import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402

#: what a kernel imports that takes time; importing them adds no thread or ZMQ context
PREIMPORTS = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.comm",
    "ipykernel.debugger",  # debugpy: the largest part of a kernel's start-up
    "IPython.core.completer",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.interactiveshell",
    "IPython.core.logger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",  # loaded by every shell at start
    "IPython.utils.wildcard",
    "jupyter_client.session",
    "psutil",  # jupyter_client's local interfaces, read when the connection file is
    "sqlite3",  # the history manager's, even in memory
    "pdb",
    "faulthandler",
    "tornado.platform.asyncio",  # the kernel's event loop
)


def preimport() -> None:
    """Import what a kernel needs, then check that no thread started (a ZMQ socket
    would have started its context's I/O threads): a fork keeps only the forking thread."""
    import importlib

    for name in PREIMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            if name == "ipykernel.kernelapp":
                raise
    if threading.active_count() != 1:
        raise RuntimeError(f"importing ipykernel started threads: {threading.enumerate()}")


class Template:
    """The template's loop: forks on request, reaps children, answers pings."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    def send(self, message: dict) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def serve(self):
        """Serve until the server goes; in a child, return its fork request."""
        # a handler (any) makes SIGCHLD write to the wake-up pipe; the server's
        # Ctrl-C is the server's business
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.send({"ready": os.getpid()})
        while True:
            try:
                readable, _, _ = select.select([self.sock, self.wake_r], [], [])
            except InterruptedError:
                continue
            if self.wake_r in readable:
                self.drain_wakeups()
                self.reap()
            if self.sock in readable:
                data = self.sock.recv(1 << 20)
                if not data:
                    return None
                self.buffer += data
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    request = json.loads(line)
                    if "ping" in request:
                        self.send({"pong": request["ping"]})
                    elif "fork" in request:
                        pid = os.fork()
                        if pid == 0:
                            self.become_child()
                            return request
                        self.send({"forked": request["fork"], "pid": pid})

    def drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"exited": pid, "status": os.waitstatus_to_exitcode(status)})

    def become_child(self) -> None:
        """Drop what is the template's: its socket, wake-up pipe and signal handlers."""
        signal.set_wakeup_fd(-1)
        os.close(self.wake_r)
        os.close(self.wake_w)
        self.sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def start_kernel(request: dict) -> None:
    """In a forked child: become a freshly started ``python -m ipykernel_launcher``."""
    os.setsid()  # as jupyter_client's launcher does: interrupts go to the group
    cwd = request["cwd"]
    os.chdir(cwd)
    env = dict(request["env"])
    parent = str(os.getppid())
    env["JPY_PARENT_PID"] = parent
    os.environ.clear()
    os.environ.update(env)
    # the kernel read JPY_PARENT_PID when the template imported it: say it again, so that
    # it watches its parent and ends when the template does
    sys.argv = ["-m", f"--IPKernelApp.parent_handle={parent}", *request["argv"][1:]]
    # python -m would put the working directory first, and ipykernel_launcher drops it
    # again (IPython adds '' back): the template's path already lacks its first entry
    from ipykernel import kernelapp

    sys.argv[0] = os.path.join(os.path.dirname(os.path.dirname(kernelapp.__file__)),
                               "ipykernel_launcher.py")
    kernelapp.launch_new_instance()


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        preimport()
    except BaseException:
        traceback.print_exc()
        sock.sendall(json.dumps({"failed": traceback.format_exc(limit=3)}).encode() + b"\n")
        sys.exit(1)
    gc.collect()
    gc.freeze()
    request = Template(sock).serve()
    if request is None:
        return  # the server went away
    # the kernel keeps the template's objects frozen: collecting them would only copy
    # the pages they share with the template
    start_kernel(request)


if __name__ == "__main__":
    main()
