"""Atomic writes, stale-temporary clean-up and run locks: the one place kgan writes files from.

    with atomic.path("out/config.json") as tmp:            # a file
        write_something(tmp)
    with atomic.path("out/run", directory=True) as tmp:    # a whole directory
        write_files_into(tmp)
    atomic.write_json(value, "out/config.json")
    staging = atomic.stage("ckpt/epoch-000004", directory=True)   # write now ...
    atomic.publish(staging, "ckpt/epoch-000004", sync=[files])     # ... make durable later (a `Publisher`)

The temporary is a sibling of the destination, named `.kgan-tmp-<pid>-<random>-<name>` (so it
keeps the destination's extension: Keras and NumPy choose the format from it). On success it is
renamed over the destination (a directory: the old one is first moved aside to
`.kgan-tmp-<pid>-<random>.old-<name>`, then deleted); on any failure it is removed and the
destination is untouched. A disk-full error (ENOSPC) becomes `DiskFullError`: one line naming the
path, the free space and a lower bound of what was needed.

A process killed mid-write leaves its temporary behind: `clean_stale(directory)` removes those of
processes that no longer run (and moves a directory moved aside back if its replacement never
arrived), so the next run starts clean. Imports no TensorFlow.
"""

import concurrent.futures
import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import socket

from kgan.errors import DiskFullError, UsageError

PREFIX = ".kgan-tmp-"
_TEMP = re.compile(r"^\.kgan-tmp-(\d+)-[0-9a-f]+(\.old)?-(.+)$")
#: Temporaries of kgan before this module (checkpoint.py, run.py, export.py, generate.py).
_LEGACY = re.compile(r"^(\.tmp-epoch-\d+-(\d+)|.+\.tmp-(\d+)(\..*)?|generator\.(tmp|old)-\w+)$")


def is_disk_full(error):
    """True for an out-of-space error, whatever library raised it (OSError, h5py, TensorFlow)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "errno = 28" in text or "Disk quota exceeded" in text


def size(path):
    """Bytes of a file, or of every file under a directory (unreadable ones count 0)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def disk_full_error(destination, written=0, expected=None):
    """The `DiskFullError` for a write of `destination` that ran out of space after `written` bytes."""
    parent = os.path.dirname(os.path.abspath(destination))
    while parent and not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    free = shutil.disk_usage(parent or "/").free
    needed = max(int(written), int(expected or 0))
    return DiskFullError(f"no space left on device writing {destination}: {_human(free)} free on {parent}, "
                         f"about {_human(needed)} needed; free some space and run the same command again "
                         "(nothing already written was changed)")


def _human(size):
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory):
    with contextlib.suppress(OSError):
        _fsync(directory)


def stage(destination, directory=False, expected_bytes=None):
    """The temporary path next to `destination` that `publish` later renames into place (created
    as an empty directory, mode 0777 & ~umask, with `directory`).

    Raises:
        DiskFullError: the device has less free than `expected_bytes` (with a 10% margin).
    """
    destination = os.path.abspath(destination)
    parent, name = os.path.split(destination)
    os.makedirs(parent, exist_ok=True)
    if expected_bytes and shutil.disk_usage(parent).free < expected_bytes * 1.1 + 2**16:
        # Checked first: HDF5 (Keras .weights.h5) can crash the process (SIGSEGV) on a full disk.
        raise disk_full_error(destination, 0, expected_bytes)
    staging = os.path.join(parent, f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}")
    if directory:
        os.mkdir(staging)
    return staging


def publish(staging, destination, sync=()):
    """Renames `staging` (from `stage`) over `destination`, after fsyncing the files `sync`, then
    fsyncs the parent directory. An old directory at `destination` is first moved aside to
    `.kgan-tmp-<pid>-<random>.old-<name>`, then deleted."""
    destination = os.path.abspath(destination)
    parent, name = os.path.split(destination)
    if not os.path.lexists(staging):
        raise FileNotFoundError(f"nothing was written to {staging}")
    for file in sync:
        _fsync(file)
    is_directory = os.path.isdir(staging)
    if is_directory:
        _fsync_directory(staging)  # its entries (the files' names) before it is renamed into place
    if is_directory and os.path.isdir(destination):
        tag = os.path.basename(staging)[: -len(name) - 1]  # .kgan-tmp-<pid>-<random>
        aside = os.path.join(parent, f"{tag}.old-{name}")
        os.rename(destination, aside)
        os.rename(staging, destination)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(staging, destination)
    _fsync_directory(parent)


def abandon(staging, destination, error, expected_bytes=None):
    """Removes `staging` after `error`; returns the exception to raise: a `DiskFullError` for an
    out-of-space error, else `error` itself."""
    written = size(staging) if os.path.lexists(staging) else 0
    _remove(staging)
    return disk_full_error(destination, written, expected_bytes) if is_disk_full(error) else error


def reraise(error, raised):
    """Raises `raised` (from `abandon`) in place of `error`: `error` itself with its traceback."""
    if raised is error:
        raise error
    raise raised from None


@contextlib.contextmanager
def path(destination, directory=False, expected_bytes=None):
    """Yields a temporary path next to `destination`; renames it into place when the block succeeds.

    Args:
        destination: the file or directory to (re)place.
        directory: create the temporary as an empty directory (mode 0777 & ~umask) to fill.
        expected_bytes: the size the write is expected to need: when the device has less free
            (with a 10% margin), DiskFullError is raised before anything is written.

    Raises:
        DiskFullError: the device ran out of space (the temporary is removed first).
    """
    staging = stage(destination, directory, expected_bytes)
    try:
        yield staging
        publish(staging, destination)
    except BaseException as error:
        reraise(error, abandon(staging, destination, error, expected_bytes))


def write_json(value, destination, indent=2):
    """Writes `value` as JSON to `destination`, atomically. Returns the path.

    `indent=None` writes it on one line with `json`'s C encoder (with an indent, `json` encodes
    in Python: ~10x slower, 4 ms for a checkpoint's state with 200 epochs of history).
    """
    text = json.dumps(value, indent=indent) + "\n"
    with path(destination) as staging, open(staging, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return destination


def write_file(file, text):
    """Writes `text` to a new `file` inside a staging directory: no rename and no fsync of its
    own (`publish` syncs it with the directory)."""
    with open(file, "w") as handle:
        handle.write(text)


class Publisher:
    """Runs tasks (a `publish` and what follows it) in submission order on one background thread,
    so the fsyncs that make a write durable do not hold up the caller: on these VMs' disks one
    checkpoint's fsyncs took from a few milliseconds to 3.5 s. At most `max_pending` tasks wait
    (`submit` waits for the oldest beyond that), which bounds the disk held by staged writes and
    the time `wait` can take. A task's error is raised by the next `submit` or `check`, or by
    `wait`; `wait` also ends the thread (the next `submit` starts another). At interpreter exit
    Python waits for the thread's tasks."""

    def __init__(self, max_pending=4):
        self.max_pending = int(max_pending)
        self._executor = None
        self._pending = []

    @property
    def pending(self):
        """Tasks submitted and not finished."""
        return sum(not task.done() for task in self._pending)

    def submit(self, function, *args):
        self.check()
        while len(self._pending) >= self.max_pending:
            concurrent.futures.wait(self._pending[:1])
            self.check()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgan-publish")
        self._pending.append(self._executor.submit(function, *args))

    def check(self):
        """Raises the first error of the tasks that have finished; waits for none."""
        done = [task for task in self._pending if task.done()]
        self._pending = [task for task in self._pending if not task.done()]
        _first_error(done)

    def wait(self):
        """Waits for every task and ends the thread; raises the first error among the tasks. (An
        interruption while waiting leaves the tasks pending, for the next `wait`.)"""
        concurrent.futures.wait(self._pending)
        pending, self._pending = self._pending, []
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        _first_error(pending)


def _first_error(tasks):
    for task in tasks:
        if task.exception() is not None:
            raise task.exception()


def _running(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(directory, names=None):
    """Removes the temporaries killed processes left in `directory`; returns the names removed.

    Args:
        directory: where to look (not recursive); a missing directory is fine.
        names: only temporaries of these destination names (e.g. the run name in `<output>`);
            None: all.
    """
    if not os.path.isdir(directory):
        return []
    removed = []
    for entry in sorted(os.listdir(directory)):
        match = _TEMP.match(entry)
        if match:
            pid, aside, name = int(match.group(1)), match.group(2), match.group(3)
        else:
            legacy = _LEGACY.match(entry)
            if not legacy or names is not None:
                continue
            pid = int(legacy.group(2) or legacy.group(3) or 0) or None
            aside, name = None, entry
        if names is not None and name not in names:
            continue
        if pid is not None and _running(pid):
            continue
        full = os.path.join(directory, entry)
        if aside and not os.path.lexists(os.path.join(directory, name)):
            os.rename(full, os.path.join(directory, name))  # killed between the two renames: undo
            continue
        _remove(full)
        removed.append(entry)
    return removed


class Lock:
    """An exclusive `fcntl.flock` on a lock file, held until `release()` or the process ends.

    The OS drops the lock when the process dies (even by SIGKILL), so it is never stale. The file
    holds "<pid> <host>" of the holder, for the message the next process gets.

    Args:
        path: the lock file (created with its parent directories).
        what: what it protects, for the message ("run conc (checkpoints/conc)").
    """

    def __init__(self, path, what):
        self.path = os.path.abspath(path)
        self.what = what
        self._fd = None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            who = f"PID {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise UsageError(f"{self.what} is in use by {who} (lock {self.path}): wait for it to end, "
                             "or choose another --run-name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock; the file stays
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def lock_run(directories, run, what):
    """Locks `<directory>/.<run>.lock` in each distinct directory (an ExitStack to close)."""
    stack = contextlib.ExitStack()
    seen = set()
    try:
        for directory in directories:
            lock_path = os.path.realpath(os.path.join(directory, f".{run}.lock"))
            if lock_path in seen:
                continue
            seen.add(lock_path)
            stack.enter_context(Lock(lock_path, what))
    except BaseException:
        stack.close()
        raise
    return stack
