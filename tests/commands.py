"""The `dcgan-*` commands as the tests run them: each one a process of its own, with its exit
code, output, signals and kills, started from a warm fork server (tests/warm_commands.py) so
that it skips the interpreter start and the ~3 s of imports every command repeats.

DCGAN_TESTS_FRESH=1 starts every command as a fresh interpreter instead (the console script
itself), as a user's shell does; the suite passes both ways. Without it, test_startup.py
still runs each of the six commands from a fresh interpreter (an import that only the warm
server's preloading satisfied would fail there), and the tests of the installed wheel and
of torchrun start their own processes.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRESH = os.environ.get("DCGAN_TESTS_FRESH", "") not in ("", "0")



def _command(name: str) -> list[str]:
    """The console script beside this interpreter, or its module where the script is not."""
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script)]
    entry_point, = entry_points(group="console_scripts", name=name)
    return [sys.executable, "-m", entry_point.module]


class ForkServer:
    """One tests/warm_commands.py per test process, started on first use."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "warm_commands.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.exits: dict[int, int] = {}
        self.pending = b""
        atexit.register(self.close)

    def start(self, request: dict) -> int:
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        while True:
            message = self._next(timeout=120)
            if message is None:
                raise RuntimeError("the fork server did not start the command")
            if "started" in message:
                self.exits.pop(message["started"], None)  # an ended process's reused pid
                return message["started"]

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        """The child's exit code once it has ended; None if it runs on past `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self.exits:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._next(left) is None:
                return None
        return self.exits.pop(pid)

    def _next(self, timeout: float | None) -> dict | None:
        """Read one message (recording exits); None when nothing came within `timeout`."""
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the fork server ended (exit {self.process.wait()})")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        message = json.loads(line)
        if "exited" in message:
            self.exits[message["exited"]] = message["code"]
        return message

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


_server: ForkServer | None = None


def fork_server() -> ForkServer:
    global _server
    if _server is None or _server.process.poll() is not None:
        _server = ForkServer()
    return _server


@functools.lru_cache(maxsize=1)
def output_root() -> Path:
    """Where the commands' stdout and stderr files go; removed when this process ends."""
    root = Path(tempfile.mkdtemp(prefix="dcgan-commands-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


class CommandProcess:
    """A started command: pid, poll(), wait(), send_signal(), communicate(), as subprocess's
    Popen has them; its output is read when it has ended."""

    def __init__(self, name: str, args: tuple[str, ...], cwd: Path | None = None,
                 merge_stderr: bool = False, fresh: bool = FRESH) -> None:
        self.args = [name, *args]
        self.output_dir = Path(tempfile.mkdtemp(dir=output_root()))
        self.stdout_path = self.output_dir / "stdout"
        self.stderr_path = self.stdout_path if merge_stderr else self.output_dir / "stderr"
        self.returncode: int | None = None
        self._output: tuple[str, str] | None = None
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if fresh:
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "ab") as err:
                self._popen = subprocess.Popen([*_command(name), *args], cwd=cwd, env=env,
                                               stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            self.pid = self._popen.pid
        else:
            self._popen = None
            self.pid = fork_server().start({
                "name": name, "args": list(args), "cwd": str(cwd or Path.cwd()), "env": env,
                "stdout": str(self.stdout_path), "stderr": str(self.stderr_path)})

    def poll(self) -> int | None:
        return self.wait(timeout=0) if self.returncode is None else self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code; raises subprocess.TimeoutExpired when it runs past a timeout > 0."""
        if self.returncode is None:
            if self._popen is not None:
                try:
                    self.returncode = self._popen.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    if timeout:
                        raise
            else:
                self.returncode = fork_server().exit_code(self.pid, timeout)
                if self.returncode is None and timeout:
                    raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it ended just now
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def output(self) -> tuple[str, str]:
        """(stdout, stderr) of the ended command; stderr is "" when merged into stdout."""
        if self._output is None:
            stdout = self.stdout_path.read_text(errors="replace")
            merged = self.stderr_path == self.stdout_path
            self._output = (stdout, "" if merged else self.stderr_path.read_text(errors="replace"))
            shutil.rmtree(self.output_dir, ignore_errors=True)
        return self._output

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait()
            raise
        return self.output()


def start_cli(name: str, *args: str, cwd: Path | None = None, merge_stderr: bool = False,
              fresh: bool = FRESH) -> CommandProcess:
    """Start `dcgan-train` / `dcgan-sample` / ... and return at once; `fresh`: as a new
    interpreter running the console script, rather than a fork of the warm server."""
    return CommandProcess(name, args, cwd, merge_stderr, fresh)


def run_cli(name: str, *args: str, cwd: Path | None = None, check: bool = False,
            timeout: int = 300, fresh: bool = FRESH) -> subprocess.CompletedProcess:
    """Run a command as a user would and return the finished process."""
    process = start_cli(name, *args, cwd=cwd, fresh=fresh)
    stdout, stderr = process.communicate(timeout=timeout)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}")
    return result
