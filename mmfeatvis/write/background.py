"""The writer thread: drawing and writing off the training loop."""
import atexit
import logging
import queue
import threading
import time
from typing import Callable, List, Optional

from mmengine.logging import print_log


class BackgroundWriter:
    """Runs drawing-and-writing jobs on one worker thread, in order.

    The training thread only captures and reduces; colouring, resizing,
    encoding and file I/O happen here, off the training loop.

    Lifecycle and protocol:

    * :meth:`submit` queues a job; while ``max_pending`` jobs wait it
      waits up to ``submit_timeout`` seconds for room (a slow disk delays
      training a little), then drops the job with a warning rather than
      stall the loop. If the worker has died, jobs run on the caller's
      thread instead.
    * A job that raises is logged as a warning naming what was skipped,
      and counted in :attr:`failures`; the worker goes on.
    * :meth:`flush` waits for the queued jobs, at most ``timeout`` seconds.
    * :meth:`close` lets the worker finish what is queued (at most
      ``timeout`` seconds), stops it and joins it. It runs at interpreter
      exit too (``atexit``), so that an interrupted run (Ctrl-C) neither
      loses the firing being written nor ends while the worker is inside
      OpenCV or torch, which aborts the process.

    The worker never changes process-wide state (torch's thread count,
    signal handlers); the value ranges it settles are guarded by the range
    tracker's lock.

    Args:
        max_pending (int): Jobs that may wait. Defaults to 2.
        submit_timeout (float): Seconds :meth:`submit` waits for room.
            Defaults to 60.
    """

    def __init__(self, max_pending: int = 2,
                 submit_timeout: float = 60.0) -> None:
        self._jobs: 'queue.Queue' = queue.Queue(maxsize=max_pending)
        self.submit_timeout = submit_timeout
        self.failures: List[str] = []
        self._closed = False
        self._thread = threading.Thread(
            target=self._work, name='mmfeatvis-writer', daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs."""
        return self._thread.is_alive()

    def submit(self, job: Callable[[], None], description: str) -> None:
        """Queue ``job``; a failure is logged as a warning with
        ``description``."""
        if self._closed or not self.alive:
            if not self._closed:
                log_warning(f'{description}: the writer thread has '
                            'stopped, so this firing is drawn on the '
                            'training thread.')
            self._run(job, description)
            return
        try:
            self._jobs.put((job, description), timeout=self.submit_timeout)
        except queue.Full:
            self._fail(description, f'{self._jobs.maxsize} earlier firings '
                       f'were still being written after '
                       f'{self.submit_timeout:.0f} s (a slow disk?), so it '
                       'was dropped')

    def flush(self, timeout: Optional[float] = 600.0) -> bool:
        """Wait until every queued job has finished, at most ``timeout``
        seconds (None: no limit).

        Returns:
            bool: Whether everything was done in time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._jobs.all_tasks_done:
            while self._jobs.unfinished_tasks:
                if not self.alive:
                    return False
                left = None if deadline is None else (
                    deadline - time.monotonic())
                if left is not None and left <= 0:
                    return False
                self._jobs.all_tasks_done.wait(
                    0.5 if left is None else min(left, 0.5))
        return True

    def close(self, timeout: float = 60.0) -> None:
        """Finish the queued jobs (at most ``timeout`` seconds), stop and
        join the worker. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        pending = self._jobs.unfinished_tasks
        done = self.flush(timeout)
        if self.alive:
            try:
                self._jobs.put((None, ''), timeout=1)
            except queue.Full:
                pass
            self._thread.join(timeout=5 if done else 1)
        if not done:
            log_warning(f'the writer thread did not finish the {pending} '
                        f'queued firing(s) within {timeout:.0f} s; those not '
                        'written yet are lost.')

    def _work(self) -> None:
        while True:
            job, description = self._jobs.get()
            try:
                if job is None:
                    return
                self._run(job, description)
            finally:
                self._jobs.task_done()

    def _run(self, job: Callable[[], None], description: str) -> None:
        try:
            job()
        except Exception as error:  # a failed image never stops training
            self._fail(description, f'{type(error).__name__}: {error}')

    def _fail(self, description: str, reason: str) -> None:
        self.failures.append(f'{description}: {reason}')
        log_warning(f'{description} failed and was skipped ({reason}); '
                    'training goes on.')


def log_warning(message: str) -> None:
    """A warning in the current mmengine logger (the run's log file)."""
    print_log(message, logger='current', level=logging.WARNING)
