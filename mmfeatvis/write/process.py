"""The drawing process: rendering and encoding outside the training process.

A writer *thread* shares the training process's interpreter lock: on a GPU,
whose training loop is bound by how fast Python launches kernels, every
millisecond of the thread's Python is taken from training. A
:class:`DrawingProcess` runs such calls in a separate interpreter instead,
at idle priority, so that on a busy CPU it takes only cores that training
leaves idle (at normal priority it would also stall the other intra-op
threads of training at every barrier).

Protocol: one call at a time (the writer thread waits for each), a call
and its answer pickled over a pipe. The process is a fresh interpreter
(not a fork, which CUDA and threads forbid, and not ``multiprocessing``'s
spawn, which would import the training script again); it ignores Ctrl-C
and SIGTERM, so that the training process can finish what is queued,
and it ends when the training process does (its pipe closes).
"""
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Optional

from .background import log_warning

_BOOTSTRAP = (
    'import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); '
    'signal.signal(signal.SIGTERM, signal.SIG_IGN); import json, sys; '
    'sys.path[:0] = json.loads(sys.argv[1]); '
    'from mmfeatvis.write.process import serve; '
    'serve(int(sys.argv[2]), int(sys.argv[3]))')


#: glibc's allocator settings for the drawing process. By default it hands
#: a freed array of a few megabytes back to the system, and the next
#: firing's canvas faults in every page again: on a virtual machine that
#: took about as long as the drawing itself. Kept, a firing's memory is
#: reused; what stays is at most the drawing's own peak.
_ALLOCATOR_ENV = {
    'MALLOC_MMAP_THRESHOLD_': str(64 << 20),
    'MALLOC_TRIM_THRESHOLD_': str(256 << 20),
}


class DrawingProcessGone(RuntimeError):
    """The drawing process cannot take calls (it never started or died)."""


class DrawingProcess:
    """A separate Python process that runs ``fn(argument)`` calls in order.

    It starts at the first :meth:`start` or :meth:`call`; a call waits
    while it imports. If it dies, :meth:`call` raises
    :class:`DrawingProcessGone` from then on, and the caller draws in its
    own process instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: Optional[subprocess.Popen] = None
        self._connection: Optional[Connection] = None
        self.gone: Optional[str] = None

    @property
    def pid(self) -> Optional[int]:
        """The process's id, once started."""
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the process runs (or has not been started yet)."""
        return self.gone is None and (self._process is None
                                      or self._process.poll() is None)

    def start(self) -> None:
        """Start the process, if it is not running; it imports in the
        background while the caller goes on."""
        if self._process is not None and self.gone is None:
            return  # started: no need to wait for a call in progress
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self.gone is not None:
            raise DrawingProcessGone(self.gone)
        if self._process is not None:
            return
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable, '-c', _BOOTSTRAP,
                    json.dumps([p for p in sys.path if p]),
                    str(to_child), str(from_child)
                ],
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
                env={**_ALLOCATOR_ENV, **os.environ},
                close_fds=True)
        except Exception as error:  # no such interpreter, no pass_fds
            for fd in (to_child, from_parent, to_parent, from_child):
                os.close(fd)
            self.gone = f'it could not start ({error})'
            raise DrawingProcessGone(self.gone) from error
        os.close(to_child)
        os.close(from_child)
        self._connection = _Duplex(to_parent, from_parent)

    def call(self, fn: Callable[[Any], Any], argument: Any) -> Any:
        """``fn(argument)`` in the drawing process; both must pickle
        (``fn`` by reference: a module-level function).

        Raises:
            DrawingProcessGone: The process is not there to answer.
            RuntimeError: ``fn`` raised there; the message names the error.
        """
        request = pickle.dumps((fn, argument),
                               protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._start()
            try:
                self._connection.send_bytes(request)
                status, answer = pickle.loads(self._connection.recv_bytes())
            except (EOFError, OSError) as error:
                code = self._exit_status()
                self.gone = ('it ended' if code is None else
                             f'it ended with exit status {code}') + (
                                 f' ({type(error).__name__})')
                self._stop()
                raise DrawingProcessGone(self.gone) from error
        if status == 'error':
            raise RuntimeError(answer)
        return answer

    def _exit_status(self) -> Optional[int]:
        """The exit status of a process whose pipe closed (it may take a
        moment after the pipe to become reapable), or None if it runs."""
        try:
            return self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """End the process (it finishes the call it is in)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


class _Duplex:
    """One read and one write end of two pipes, as one connection."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read = Connection(read_fd, writable=False)
        self._write = Connection(write_fd, readable=False)

    def send_bytes(self, data: bytes) -> None:
        self._write.send_bytes(data)

    def recv_bytes(self) -> bytes:
        return self._read.recv_bytes()

    def close(self) -> None:
        self._write.close()
        self._read.close()


_SHARED: Optional[DrawingProcess] = None
_SHARED_LOCK = threading.Lock()


def drawing_process() -> DrawingProcess:
    """The drawing process of this interpreter, shared by every hook in it
    (each run of a test session, say, would otherwise pay its start)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or not _SHARED.alive:
            if _SHARED is not None and _SHARED.gone:
                log_warning(f'mmfeatvis: the drawing process is gone '
                            f'({_SHARED.gone}); a new one starts.')
            _SHARED = DrawingProcess()
        return _SHARED


def serve(read_fd: int, write_fd: int) -> None:
    """The drawing process's loop: answer calls until the pipe closes."""
    _lower_priority()
    _exit_with_parent()
    import cv2
    import torch

    # Calls run one at a time, beside training: one thread each.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    connection = _Duplex(read_fd, write_fd)
    while True:
        try:
            request = connection.recv_bytes()
        except (EOFError, OSError):
            return  # the training process has ended
        try:
            fn, argument = pickle.loads(request)
            answer = ('ok', fn(argument))
        except Exception as error:
            answer = ('error', f'{type(error).__name__}: {error}')
        try:
            data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # an answer that does not pickle
            data = pickle.dumps(
                ('error', f'the answer did not pickle ({error})'))
        try:
            connection.send_bytes(data)
        except OSError:
            return


def _exit_with_parent() -> None:
    """End this process within a second of the training process, even in
    the middle of a call: it holds the training process's standard output
    and error, which whoever started training may be reading to the end."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name='parent-watch', daemon=True).start()


def _lower_priority() -> None:
    """Idle priority (Linux), else the lowest nice value: the process runs
    on what training leaves idle."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.nice(19)
    except (AttributeError, OSError):
        pass
