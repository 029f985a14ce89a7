"""Atomic output files, input globs, and the checks every command makes before writing."""

import collections
import concurrent.futures
import contextlib
import ctypes
import errno
import fcntl
import glob
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import zipfile

import numpy as np

from bert.errors import InputError, Terminated


class CommitOrAbort:
    """A `with` block over an output that has `commit()` and `abort()`: it commits when the block ends
    normally and aborts on any exception, Ctrl-C included, which it lets through."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


# The names Linux gives a process's open file descriptors: /dev/stdout, /dev/fd/3, /proc/self/fd/1.
_DESCRIPTOR_ALIAS = re.compile(r"/dev/(?P<std>stdout|stderr)|/dev/fd/(?P<fd>\d+)|/proc/(?P<pid>self|thread-self|\d+)/fd/(?P<pfd>\d+)")


def _own_descriptor(path):
    """The number of this process's open file descriptor that `path` names (/dev/stdout: 1), else None."""
    match = _DESCRIPTOR_ALIAS.fullmatch(os.path.abspath(path))
    if not match:
        return None
    if match["std"]:
        return 1 if match["std"] == "stdout" else 2
    if match["fd"]:
        return int(match["fd"])
    return int(match["pfd"]) if match["pid"] in ("self", "thread-self", str(os.getpid())) else None


def is_stream(path):
    """Whether `path` names a stream rather than a file: an existing pipe, terminal, socket or device, or
    an open file descriptor (/dev/stdout, /dev/fd/3), which its reader or the shell holds open.

    A stream is written in place: renaming a finished file over it would replace the pipe, the device or
    the /dev/stdout link itself, and hand the reader nothing.
    """
    if _DESCRIPTOR_ALIAS.fullmatch(os.path.abspath(path)):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _check_stream(path, flag):
    """Raises InputError naming the flag unless the stream `path` can take an output: an open descriptor,
    a pipe or a character device (a terminal, /dev/null), not a socket or a disk."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise InputError(f"{flag}: {path} is not open (no such file descriptor, pipe or device)") from None
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        kind = "socket" if stat.S_ISSOCK(mode) else "block device" if stat.S_ISBLK(mode) else "special file"
        raise InputError(f"{flag}: {path} is a {kind}, not a file, pipe or terminal to write to")


def is_stdout(path):
    """Whether `path` is this process's standard output (--output_file=/dev/stdout): where a summary line
    printed to stdout would land inside the output."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


class AtomicFile(CommitOrAbort):
    """A file written under a temporary name beside its destination and renamed into place on commit.

    Until `commit()` the destination is untouched: an existing file keeps its content and a crash
    leaves at most a hidden `.<name>.tmp-*` file, never a truncated file under the final name. A
    symbolic link stays a link: the file it points to is the one replaced. A stream (`is_stream`) is
    written in place and cannot be taken back: this process's own descriptors (/dev/stdout) through a
    copy that shares their position, as the shell's redirection set it, others opened to append.
    Text goes to a stream a line at a time, so a run that fails midway leaves no half line.
    """

    def __init__(self, path, mode="w"):
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise InputError(f"cannot write {self.path}: it is a directory")
        encoding = None if "b" in mode else "utf-8"
        self.done = False
        if is_stream(self.path):
            self.temp_path = None
            self._file = self._open_stream(mode, encoding)
            return
        self._destination = os.path.realpath(self.path)
        directory = os.path.dirname(self._destination)
        try:
            fd, self.temp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(self._destination)}.tmp-")
        except OSError as e:
            raise InputError(f"cannot write {self.path}: {e.strerror or e}") from None
        # Held while the file is written, so that remove_leftover_temporaries passes over it.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file = os.fdopen(fd, mode, encoding=encoding)

    def _open_stream(self, mode, encoding):
        buffering = -1 if "b" in mode else 1
        descriptor = _own_descriptor(self.path)
        try:
            if descriptor is None:
                return open(self.path, mode.replace("w", "a"), buffering=buffering, encoding=encoding)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            return os.fdopen(os.dup(descriptor), mode, buffering=buffering, encoding=encoding)
        except OSError as e:
            raise InputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def write(self, data):
        try:
            return self._file.write(data)
        except OSError as e:
            raise self._write_error(e) from None

    def write_with(self, writer):
        """Returns `writer(stream)` on the open temporary file, for writers that need a real file object
        (numpy, zipfile, matplotlib). An OSError (a full disk) aborts the file and becomes an InputError
        naming the destination, not the temporary file."""
        try:
            return writer(self._file)
        except OSError as e:
            raise self._write_error(e) from None

    def _write_error(self, error):
        self.abort()
        return InputError(f"cannot write {self.path}: {error.strerror or error}")

    def sync(self):
        """Puts the content on disk, the slow part of `commit()`, which then only renames. The file stays open,
        and so locked against remove_leftover_temporaries, until it is renamed."""
        if self.done:
            return
        try:
            self._file.flush()
            # A pipe or terminal has nothing to put on disk (fsync fails there).
            if self.temp_path is not None:
                os.fsync(self._file.fileno())
        except OSError as e:
            # A full disk.
            raise self._write_error(e) from None

    def commit(self):
        if self.done:
            return
        try:
            self.sync()
            if self.temp_path is not None:
                os.chmod(self.temp_path, _replacement_mode(self._destination))
                os.replace(self.temp_path, self._destination)
            self._file.close()
        except OSError as e:
            # A destination that became a directory.
            raise self._write_error(e) from None
        except BaseException:
            # Ctrl-C or a signal during the fsync of a large file: no temporary file is left behind.
            self.abort()
            raise
        self.done = True

    def abort(self):
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self._file.close()
        if self.temp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.temp_path)


def _replacement_mode(destination):
    """The permissions a file written at `destination` gets: those of the file it replaces (a private one
    stays private), or else what the shell's redirection would give a new one (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(destination).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask():
    """This process's umask, read without setting it (os.umask sets it, for every thread meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0o022


def copy_file(source, target):
    """Copies `source` to `target` atomically (through AtomicFile)."""
    with open(source, "rb") as f, AtomicFile(target, "wb") as out:
        out.write_with(lambda stream: shutil.copyfileobj(f, stream))


def expand_inputs(patterns, flag="--input_file", streams=False):
    """Comma-separated paths or globs -> the matching files, each pattern's matches sorted; with `streams`, also
    a pipe or /dev/stdin named as it is, for a reader that reads its input once, in order.

    Raises InputError naming the flag and the pattern that matches no readable file.
    """
    files = []
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        if streams and not glob.has_magic(pattern) and is_stream(pattern) and os.path.exists(pattern):
            files.append(pattern)
            continue
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not glob.has_magic(pattern) and os.path.isdir(pattern):
            raise InputError(f"{flag}: {pattern} is a directory; name its files (e.g. '{os.path.join(pattern, '*')}')")
        directories = [m for m in matches if os.path.isdir(m)]
        matches = [m for m in matches if not os.path.isdir(m)]
        if not matches and directories:
            raise InputError(f"{flag}: '{pattern}' matches only directories ({directories[0]}); name their files "
                             f"(e.g. '{os.path.join(directories[0], '*')}')")
        if not matches:
            raise InputError(f"{flag}: no file matches '{pattern}'")
        for path in matches:
            if not os.path.isfile(path):
                raise InputError(f"{flag}: file not found: {path}")
            if not os.access(path, os.R_OK):
                raise InputError(f"{flag}: file not readable: {path}")
        files.extend(matches)
    if not files:
        raise InputError(f"{flag}: no input files given")
    return files


def warn_if_named_twice(files, log, flag="--input_file"):
    """Warns through `log` of the first of `files` named more than once (overlapping globs, one path in two
    spellings), which is then read as many times, as the reference reads it."""
    counts = collections.Counter(os.path.realpath(path) for path in files)
    repeated = next((path for path in files if counts[os.path.realpath(path)] > 1), None)
    if repeated is not None:
        times = counts[os.path.realpath(repeated)]
        log(f"warning: {flag} names {repeated} {times} times (overlapping globs?): it is read {times} times")


def make_output_dir(directory, flag):
    """Creates `directory` and any missing parents, as the reference's MakeDirs does; raises InputError
    naming the flag unless it ends up a writable directory."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise InputError(f"{flag}: {directory} exists and is not a directory")
    if not os.path.isdir(directory):
        nearest = os.path.abspath(directory)
        while not os.path.exists(nearest) and os.path.dirname(nearest) != nearest:
            nearest = os.path.dirname(nearest)
        check_writable_dir(nearest, flag)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise InputError(f"{flag}: cannot create {directory}: {e.strerror or e}") from None
        _created_dirs.append((os.path.abspath(directory), nearest))
    check_writable_dir(directory, flag)


# (directory, the existing one it was made under) for each output directory this process made.
_created_dirs = []


def remove_empty_created_dirs():
    """Removes the output directories this process made, and the parents it made for them, that are still
    empty: a command refusing its input after making them leaves nothing behind."""
    for directory, existing in reversed(_created_dirs):
        _release_lock_of_empty(directory)
        while directory != existing:
            try:
                os.rmdir(directory)
            except OSError:
                break
            directory = os.path.dirname(directory)
    _created_dirs.clear()


LOCK_FILE = ".lock"
# The open lock files of this process, by directory: the kernel releases a lock when its holder ends, however it
# ends (a child forked without exec would hold it on).
_held_locks = {}


def lock_directory(directory, flag, holder="training process"):
    """Locks `directory` to this process until it ends; raises InputError naming the flag if another holds it.

    Two training processes writing the same run would interleave their checkpoints. The lock is an
    flock on `directory/.lock`, created empty and never written; on a file system without locks the
    directory stays unlocked. Opened for writing: NFS, where two jobs most easily meet, grants an exclusive
    lock only on such a file. Returns whether this call created the file, which a command refused after it
    took the lock removes (unlock_directory) to leave the directory as it was.
    """
    key = os.path.realpath(directory)
    if key in _held_locks:
        return False
    path = os.path.join(directory, LOCK_FILE)
    created = not os.path.exists(path)
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise InputError(f"{flag}: cannot create {path}: {e.strerror or e}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(descriptor)
            if e.errno == errno.EWOULDBLOCK:
                raise InputError(f"{flag}: {directory} is in use by another {holder} (it holds {path}); wait "
                                 f"for it to end or use another {flag}") from None
            return created
        # The holder may have deleted the file before releasing it (see _release_lock_of_empty): a lock on it
        # would lock nothing.
        try:
            if os.stat(path).st_ino == os.fstat(descriptor).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)
    _held_locks[key] = descriptor
    return created


def unlock_directory(directory, remove_file):
    """Releases this process's lock on `directory`, deleting its lock file first if `remove_file`."""
    descriptor = _held_locks.pop(os.path.realpath(directory), None)
    if descriptor is None:
        return
    if remove_file:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, LOCK_FILE))
    os.close(descriptor)


def _release_lock_of_empty(directory):
    """Unlocks `directory` and deletes its lock file where this process holds the lock and nothing else is there."""
    descriptor = _held_locks.get(os.path.realpath(directory))
    try:
        if descriptor is None or os.listdir(directory) != [LOCK_FILE]:
            return
        os.unlink(os.path.join(directory, LOCK_FILE))
    except OSError:
        return
    os.close(descriptor)
    del _held_locks[os.path.realpath(directory)]


def decode_dropping_invalid(raw):
    """(`raw` bytes as UTF-8 text with its invalid bytes dropped, as the reference's convert_to_unicode drops
    them; how many bytes were dropped)."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "ignore")
        return text, len(raw) - len(text.encode("utf-8"))


def read_lines_as_gfile(path):
    """The lines of UTF-8 text `path` as TensorFlow's GFile, through which the reference reads its inputs, gives
    them: ended by a newline alone, every carriage return dropped wherever it is, no empty line after a final
    newline. Text that is not UTF-8 is refused in one line naming the byte and the line."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}: not UTF-8 (byte {e.start}, line {line})") from None
    lines = text.replace("\r", "").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def ignore_interrupts(parent):
    """In a worker process started by process `parent` (its pid, taken before the fork): Ctrl-C, which the
    terminal sends to every process of the job, is left to the parent, which stops the workers and reports it in
    one line (a worker would print its own traceback). SIGTERM, and SIGHUP unless nohup ignores it, end a worker
    silently, whatever handler it inherited from the parent, and so does the parent's end, however it ends
    (`kill -9` too): the worker would otherwise finish its task and print a BrokenPipeError traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for number in (signal.SIGTERM, *unignored(signal.SIGHUP)):
        signal.signal(number, signal.SIG_DFL)
    end_with_parent(parent)


@contextlib.contextmanager
def worker_pool(processes, parent, initializer=None, initargs=()):
    """A process pool (concurrent.futures) of `processes` workers, forked where the platform can, each running
    ignore_interrupts(`parent`) then `initializer(*initargs)`; leaving the block on an error cancels the tasks
    not started.

    Not multiprocessing.Pool: a worker that dies (the kernel's out-of-memory killer ends the largest process,
    with SIGKILL) breaks this pool, whose results then raise (see ordered_results), where Pool starts another worker
    and waits for ever for the task the dead one took with it, or for the queue lock it held."""
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    pool = concurrent.futures.ProcessPoolExecutor(processes, mp_context=context, initializer=_start_worker,
                                                  initargs=(parent, initializer, initargs))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _start_worker(parent, initializer, initargs):
    ignore_interrupts(parent)
    if initializer is not None:
        initializer(*initargs)


def ordered_results(pool, function, tasks, window):
    """(arguments, function(*arguments)) for each argument tuple of `tasks`, in order, run in the `worker_pool`
    `pool` with at most `window` tasks given to it at once, so that `tasks` is read no faster than the results
    are taken; an InputError once a worker process has died."""
    pending = collections.deque()
    try:
        for arguments in tasks:
            pending.append((arguments, pool.submit(function, *arguments)))
            if len(pending) >= window:
                arguments, future = pending.popleft()
                yield arguments, future.result()
        while pending:
            arguments, future = pending.popleft()
            yield arguments, future.result()
    except concurrent.futures.process.BrokenProcessPool:
        raise InputError("a worker process ended before it finished its task (killed: out of memory? the kernel's "
                         "out-of-memory killer sends SIGKILL)") from None


_PR_SET_PDEATHSIG = 1


def end_with_parent(parent=None):
    """Has Linux send this process SIGKILL when the process that started it ends (elsewhere does nothing); with
    `parent`, its pid from before the fork, also when that process has already ended."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def sigterm_interrupts():
    """Within it SIGTERM (`docker stop`, Slurm, `kill`) and SIGHUP (a closed terminal or ssh session, unless nohup
    ignores it) raise `Terminated`, which unwinds as Ctrl-C does: files written under temporary names are removed
    and the command says so in one line, instead of dying silently and leaving them behind."""

    def terminate(signum, frame):
        raise Terminated(signum)

    with handling_signals((signal.SIGTERM, *unignored(signal.SIGHUP)), terminate):
        yield


def unignored(*numbers):
    """The signals among `numbers` this process does not ignore (nohup ignores SIGHUP, a job started with `&`
    SIGINT): those stay ignored."""
    return [number for number in numbers if signal.getsignal(number) is not signal.SIG_IGN]


@contextlib.contextmanager
def handling_signals(numbers, handler):
    """Within it `handler` handles the signals `numbers`; the handlers before it are put back at its end."""
    previous = {number: signal.signal(number, handler) for number in numbers}
    try:
        yield
    finally:
        restore_signal_handlers(previous)


def restore_signal_handlers(previous):
    """Puts back the handlers of `previous` ({signal: handler}, as signal.signal returned them)."""
    for number, handler in previous.items():
        # None: a handler installed outside Python, which cannot be put back; the default stands for it.
        signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def remove_leftover_temporaries(directory, name_pattern):
    """Deletes the hidden temporary files that writers of files named `name_pattern` (a glob) in `directory`
    left there when they were killed (see AtomicFile): a killed run's are as large as its output. Those a
    running writer holds locked (another run writing the same output) are left to it."""
    pattern = os.path.join(glob.escape(directory or "."), f".{name_pattern}.tmp-*")
    for leftover in glob.glob(pattern):
        try:
            # For writing: NFS grants an exclusive lock only on a file opened so.
            fd = os.open(leftover, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        except OSError:
            pass  # a file system without locks: as before them, a leftover is anything of the name
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)


def check_output_file(path, flag, inputs=()):
    """Raises InputError naming the flag unless `path` can be written as a file that is none of `inputs`."""
    if os.path.isdir(path):
        raise InputError(f"{flag}: {path} is a directory")
    if path.endswith(os.sep):
        raise InputError(f"{flag}: {path} names a directory, which does not exist; name a file")
    if is_stream(path):
        _check_stream(path, flag)
    else:
        check_writable_dir(os.path.dirname(os.path.realpath(path)), flag)
    for source in inputs:
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            raise InputError(f"{flag}: {path} is an input file too; writing it would replace the input")


# The first bytes of the compressed files a corpus most often comes in.
_COMPRESSED_MAGIC = (
    (re.compile(rb"BZh[1-9]1AY&SY|BZh[1-9]\x17rE8P\x90"), "bzip2", "bunzip2 -k"),
    (re.compile(rb"\x1f\x8b"), "gzip", "gunzip -k"),
    (re.compile(rb"\xfd7zXZ\x00"), "xz", "unxz -k"),
    (re.compile(rb"\x28\xb5\x2f\xfd"), "zstd", "unzstd"),
    (re.compile(rb"PK\x03\x04"), "zip", "unzip"),
)


# Enough of a file to tell text from binary.
_TEXT_CHECK_BYTES = 1 << 16
# Text has a stray NUL at most (the tokenizer drops it, as the reference's does); records have one in the length
# header that starts them and in every zero of a feature.
_BINARY_NUL_SHARE = 0.01
# A few invalid bytes in UTF-8 text are dropped and counted, as the reference drops them; text in another encoding
# has one in every accented or non-Latin character, and would lose them all: in Latin-1 nearly every byte past
# ASCII is invalid UTF-8 (in GBK or Shift JIS most are), in UTF-8 text only the stray ones. A file in another
# encoding whose text is mostly ASCII (French, German) has few of them, but as large a share of its non-ASCII bytes.
_OTHER_ENCODING_SHARE = 0.1
_OTHER_ENCODING_NON_ASCII_SHARE = 0.5


def check_text_files(paths, flag):
    """Raises InputError naming the flag and the file where one of the text files `paths` is compressed, binary
    (records), or text in another encoding than UTF-8 (UTF-16, Latin-1), which read as UTF-8 text give a
    vocabulary or records of garbage, their invalid UTF-8 dropped, the rest kept."""
    for path in paths:
        if is_stream(path):
            continue
        with open(path, "rb") as f:
            head = f.read(_TEXT_CHECK_BYTES)
        for magic, kind, command in _COMPRESSED_MAGIC:
            if magic.match(head):
                dump = ", or if it is a Wikipedia dump, run bert-prepare-wiki on it" if kind == "bzip2" else ""
                raise InputError(f"{flag}: {path} is {kind}-compressed, not text; decompress it first ({command} "
                                 f"{path}){dump}")
        encoding = _wide_encoding(head)
        if encoding:
            raise InputError(f"{flag}: {path} is {encoding} text, not UTF-8; convert it first (iconv -f {encoding} "
                             f"-t UTF-8)")
        nuls = head.count(b"\0")
        if nuls >= 4 and nuls >= _BINARY_NUL_SHARE * len(head):
            raise InputError(f"{flag}: {path} is binary ({nuls} NUL bytes in its first {len(head)} bytes: records?), "
                             f"not UTF-8 text")
        invalid = len(head) - len(head.decode("utf-8", "ignore").encode("utf-8"))
        non_ascii = len(head) - len(head.decode("ascii", "ignore"))
        if invalid >= 4 and (invalid >= _OTHER_ENCODING_SHARE * len(head)
                             or invalid >= _OTHER_ENCODING_NON_ASCII_SHARE * non_ascii):
            raise InputError(f"{flag}: {path} is not UTF-8 text ({invalid} of the {non_ascii} non-ASCII bytes in its "
                             f"first {len(head)} are no UTF-8: Latin-1 or another encoding?); convert it first, e.g. "
                             f"iconv -f LATIN1 -t UTF-8")


def _wide_encoding(head):
    """"UTF-16LE", "UTF-32BE", ... where `head` reads as such text, by its byte-order mark (bytes no UTF-8 holds)
    or, without one, by which of every four bytes are NUL in its ASCII characters, and which hardly ever (iconv
    takes a BOM-less one as big-endian)."""
    for mark, encoding in ((b"\xff\xfe\0\0", "UTF-32"), (b"\0\0\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
                           (b"\xfe\xff", "UTF-16")):
        if head.startswith(mark):
            return encoding
    shares = [head[i::4].count(b"\0") / max(1, len(head[i::4])) for i in range(4)]
    pattern = "".join("0" if share > 0.4 else "x" if share < 0.05 else "?" for share in shares)
    return {"x000": "UTF-32LE", "000x": "UTF-32BE", "x0x0": "UTF-16LE", "0x0x": "UTF-16BE"}.get(pattern)


def check_writable_dir(directory, flag):
    """Raises InputError naming the flag unless `directory` exists and is writable."""
    directory = directory or "."
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise InputError(f"{flag}: {directory} is a file, not a directory")
    if not os.path.isdir(directory):
        raise InputError(f"{flag}: directory does not exist: {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: directory is not writable: {directory}")


def fingerprint(named_paths, settings):
    """A short hash of the bytes of the files of {name: path} (in its order) and a JSON-able dict of settings,
    which names what an output was made from; and what it was made of, {"files": {name: a short hash of that
    file}, "settings": settings as JSON reads them back}, which says what differs between two fingerprints."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    parts = {}
    for name, path in named_paths.items():
        own = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                own.update(block)
        parts[name] = own.hexdigest()[:16]
    return digest.hexdigest()[:16], {"files": parts, "settings": json.loads(json.dumps(settings))}


def cached_arrays(path, build, save=True):
    """The arrays saved at `path` (.npz), or `build()`'s, saved there atomically first (also over a damaged file)
    if `save`."""
    if os.path.isfile(path):
        try:
            with np.load(path) as data:
                return {key: data[key] for key in data.files}
        except (ValueError, EOFError, zipfile.BadZipFile):
            pass
    arrays = build()
    if save:
        with AtomicFile(path, "wb") as f:
            f.write_with(lambda stream: np.savez(stream, **arrays))
    return arrays
