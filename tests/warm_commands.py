"""A fork server for the commands the tests run: every `dcgan-*` command line a test starts is
a new process, forked from this one, running the command's real entry point (the function
its console script calls) with its own argv, working directory, environment, stdin, stdout
and stderr; it exits, is signalled and is killed like any process.

What it saves is the interpreter start and the imports every command repeats: torch, the
networks, Hydra, and torch._dynamo (which torch.optim imports on its first step), about 3 s of
every command on a 2-core CPU, over 200 commands in the suite. This process runs no torch
computation (it only imports), so forking is safe, as for a DataLoader's workers.

Protocol: one JSON request a line on stdin, {"name", "args", "cwd", "env", "stdout", "stderr"}
(file paths; the same path twice merges them), answered {"started": pid}; when a child ends,
{"exited": pid, "code": code} (a negative code: killed by that signal, as subprocess says).
When stdin closes (the test process ends) the server kills the commands still running, which
a test that failed half-way may have left behind, and ends.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import select
import signal
import sys
import threading
from importlib.metadata import distribution

import numpy as np
import torch._dynamo  # noqa: F401  (imported on torch.optim's first step)

import dcgan.cli.run  # noqa: F401  (what dcgan-train imports once a config is composed)

# the six commands' entry points, as pyproject.toml declares them (loading imports each module)
ENTRY_POINTS = {entry_point.name: entry_point.load()
                for entry_point in distribution("dcgan").entry_points
                if entry_point.group == "console_scripts"}


def redirect(stdout: str, stderr: str) -> None:
    """The child's fds 0-2: /dev/null and the two files, in place of this server's pipes."""
    opened = [os.open(os.devnull, os.O_RDONLY),
              os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
    if stderr != stdout:
        opened.append(os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
    for target, descriptor in zip((0, 1, 2), (*opened, opened[-1])):
        os.dup2(descriptor, target)
    for descriptor in set(opened):
        os.close(descriptor)


def become_the_command(request: dict) -> None:
    """In the child: run the entry point as its console script would, then end as the
    interpreter ends a program (non-daemon threads joined, atexit handlers run, streams
    flushed, the same exit code) without tearing down the modules, which for a process with
    torch loaded takes a second that a fresh `--help` never pays."""
    redirect(request["stdout"], request["stderr"])
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    random.seed()  # a fresh interpreter's unseeded generators differ from run to run
    np.random.seed()
    sys.argv = [request["name"], *request["args"]]
    interrupted = False
    try:
        code = exit_code(ENTRY_POINTS[request["name"]]())
    except SystemExit as leaving:
        code = exit_code(leaving.code)
    except BaseException as error:  # noqa: BLE001  (what the interpreter does with any)
        sys.excepthook(type(error), error, error.__traceback__)
        interrupted, code = isinstance(error, KeyboardInterrupt), 1
    threading._shutdown()  # the interpreter's own first steps at exit (CPython 3.9-3.13)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    if interrupted:  # the interpreter ends by SIGINT then, so the parent sees it
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def exit_code(code: object) -> int:
    """sys.exit(code) as the interpreter turns it into an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def answer(message: dict) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def reap(children: set[int]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        children.discard(pid)
        answer({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def serve() -> None:
    children: set[int] = set()
    pending, stdin_open = b"", True
    while stdin_open or children:
        ready, _, _ = select.select([0] if stdin_open else [], [], [], 0.005 if children else None)
        if ready:
            chunk = os.read(0, 65536)
            pending += chunk
            if not chunk:
                stdin_open = False
                for pid in children:
                    os.kill(pid, signal.SIGKILL)
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                become_the_command(request)
            children.add(pid)
            answer({"started": pid})
        reap(children)


if __name__ == "__main__":
    serve()
