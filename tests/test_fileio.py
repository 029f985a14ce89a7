"""Atomic output files: the destination holds its old content or the whole new one, and no temporary file stays."""

import os
import resource
import signal
import socket
import stat

import numpy as np
import pytest

from bert.errors import InputError
from bert.fileio import (AtomicFile, check_output_file, expand_inputs, make_output_dir, ordered_results,
                         remove_empty_created_dirs, remove_leftover_temporaries, worker_pool)


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def test_the_destination_changes_only_when_the_whole_file_is_written(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), AtomicFile(path) as f:
        f.write("half of the new")
        assert path.read_text() == "old\n"
        raise RuntimeError("the writer failed")
    assert path.read_text() == "old\n" and leftovers(tmp_path) == []
    with AtomicFile(path) as f:
        f.write("new\n")
    assert path.read_text() == "new\n" and leftovers(tmp_path) == []


def test_leftovers_of_killed_writers_are_removed_and_a_running_writers_file_is_left_to_it(tmp_path):
    killed = tmp_path / ".out.txt.tmp-killed"
    killed.write_text("partial")
    other = tmp_path / ".other.txt.tmp-killed"
    other.write_text("partial")
    running, synced = AtomicFile(tmp_path / "out.txt"), AtomicFile(tmp_path / "out.txt")
    running.write("whole\n")
    # On disk, waiting to be renamed (the shards of bert-create-data wait for each other).
    synced.write("synced\n")
    synced.sync()
    remove_leftover_temporaries(str(tmp_path), "out.txt")
    assert not killed.exists() and other.exists()
    assert os.path.exists(running.temp_path) and os.path.exists(synced.temp_path)
    synced.commit()
    assert (tmp_path / "out.txt").read_text() == "synced\n"
    running.commit()
    assert (tmp_path / "out.txt").read_text() == "whole\n"


def test_a_replaced_file_keeps_its_permissions_and_a_new_one_gets_the_umasks(tmp_path):
    private, protected, new = tmp_path / "private.txt", tmp_path / "protected.txt", tmp_path / "new.txt"
    for path, mode in ((private, 0o600), (protected, 0o444)):
        path.write_text("old\n")
        path.chmod(mode)
    previous = os.umask(0o027)
    try:
        for path in (private, protected, new):
            with AtomicFile(path) as f:
                f.write("new\n")
    finally:
        os.umask(previous)
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (private, protected, new)}
    assert modes == {"private.txt": 0o600, "protected.txt": 0o444, "new.txt": 0o640}
    assert private.read_text() == "new\n"


def test_a_rename_that_fails_is_one_error_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(InputError, match=f"^cannot write {path}: Is a directory$"), AtomicFile(path) as f:
        f.write("data\n")
        path.mkdir()  # what the destination became while the file was written
        (path / "kept.txt").write_text("mine")
    assert (path / "kept.txt").read_text() == "mine" and leftovers(tmp_path) == []


def test_a_write_that_fails_midway_names_the_destination_and_leaves_it_as_it_was(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Writes past 4 KiB fail with EFBIG (Python ignores SIGXFSZ), as writes to a full disk fail with ENOSPC.
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(InputError, match=f"^cannot write {path}: File too large$"), AtomicFile(path, "wb") as f:
            f.write(b"x" * 100_000)
        with pytest.raises(InputError, match=f"^cannot write {path}: File too large$"), AtomicFile(path, "wb") as f:
            f.write_with(lambda stream: np.savez(stream, values=np.zeros(100_000)))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert path.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_a_directory_or_an_input_is_refused_as_output_before_anything_is_written(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        AtomicFile(tmp_path)
    source = tmp_path / "input.txt"
    source.write_text("text\n")
    with pytest.raises(InputError, match=r"^--output_file: .*input.txt is an input file too"):
        check_output_file(str(tmp_path / "." / "input.txt"), "--output_file", [str(source)])
    with pytest.raises(InputError, match=r"^--output_file: .* is a directory$"):
        check_output_file(str(tmp_path), "--output_file")
    with pytest.raises(InputError, match=r"^--output_file: .*input.txt is a file, not a directory$"):
        check_output_file(str(source / "out.jsonl"), "--output_file")
    check_output_file(str(tmp_path / "new.jsonl"), "--output_file", [str(source)])
    assert source.read_text() == "text\n" and leftovers(tmp_path) == []


def test_an_output_dir_is_made_with_its_parents_unless_a_file_or_an_unwritable_directory_is_in_the_way(tmp_path):
    nested = tmp_path / "runs" / "wiki" / "phase1"
    make_output_dir(str(nested), "--output_dir")
    assert nested.is_dir()
    make_output_dir(str(nested), "--output_dir")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine\n")
    with pytest.raises(InputError, match=r"^--output_dir: .*notes.txt exists and is not a directory$"):
        make_output_dir(str(blocker), "--output_dir")
    with pytest.raises(InputError, match=r"^--output_dir: .*notes.txt is a file, not a directory$"):
        make_output_dir(str(blocker / "a" / "b"), "--output_dir")
    # root may write anywhere by os.access, and then the kernel refuses the directory itself
    unwritable = r"(directory is not writable: /proc|cannot create /proc/bert/run: No such file or directory)"
    with pytest.raises(InputError, match=rf"^--output_dir: {unwritable}$"):
        make_output_dir("/proc/bert/run", "--output_dir")
    assert blocker.read_text() == "mine\n" and not (tmp_path / "a").exists()


def test_output_dirs_made_and_left_empty_are_removed_with_their_made_parents_and_no_other(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    make_output_dir(str(existing), "--output_dir")
    make_output_dir(str(tmp_path / "a" / "b" / "run"), "--output_dir")
    make_output_dir(str(tmp_path / "kept" / "run"), "--output_dir")
    (tmp_path / "kept" / "run" / "eval_results.txt").write_text("written\n")
    remove_empty_created_dirs()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "kept"]
    assert (tmp_path / "kept" / "run" / "eval_results.txt").read_text() == "written\n"


def test_a_symbolic_link_stays_a_link_and_the_file_it_points_to_is_replaced(tmp_path):
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / "features.jsonl"
    target.write_text("old\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(os.path.join("models", "features.jsonl"))
    check_output_file(str(link), "--output_file")
    with AtomicFile(link) as f:
        f.write("new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert leftovers(tmp_path) == leftovers(tmp_path / "models") == []


def test_a_pipe_is_written_in_place_and_stays_a_pipe(tmp_path):
    fifo = tmp_path / "features.fifo"
    os.mkfifo(fifo)
    # The reader holds the pipe open, as `bert-extract-features --output_file=fifo` with `jq < fifo` does.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        check_output_file(str(fifo), "--output_file")
        with AtomicFile(fifo) as f:
            f.write("line 1\n")
            f.write("line 2\n")
        assert os.read(reader, 1 << 16) == b"line 1\nline 2\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and leftovers(tmp_path) == []


def test_this_processs_own_descriptor_is_written_at_its_position_which_it_leaves_after_the_output(tmp_path):
    # `{ bert-vocab --output_file=/dev/stdout; echo done; } > out`: the shell's later writes follow the output.
    path = tmp_path / "redirected.txt"
    with open(path, "w") as redirected:
        descriptor = redirected.fileno()
        os.write(descriptor, b"before\n")
        with AtomicFile(f"/proc/self/fd/{descriptor}") as f:
            f.write("the output\n")
        os.write(descriptor, b"done\n")
    assert path.read_text() == "before\nthe output\ndone\n" and leftovers(tmp_path) == []


def test_a_stream_that_cannot_take_the_output_is_refused_naming_the_flag(tmp_path):
    closed = os.open(tmp_path, os.O_RDONLY)
    os.close(closed)
    with pytest.raises(InputError, match=f"^--output_file: /dev/fd/{closed} is not open"):
        check_output_file(f"/dev/fd/{closed}", "--output_file")
    listening = socket.socket(socket.AF_UNIX)
    try:
        listening.bind(str(tmp_path / "socket"))
        with pytest.raises(InputError, match="^--output_file: .*/socket is a socket, not a file, pipe or terminal"):
            check_output_file(str(tmp_path / "socket"), "--output_file")
    finally:
        listening.close()
    check_output_file("/dev/null", "--output_file")


def test_input_patterns_name_what_they_matched_when_it_is_no_file(tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "a.txt").write_text("x\n")
    (tmp_path / "b.txt").write_text("y\n")
    assert expand_inputs(f"{tmp_path}/b*,{tmp_path}/shards/*") == [str(tmp_path / "b.txt"), str(tmp_path / "shards" / "a.txt")]
    with pytest.raises(InputError) as only_directories:
        expand_inputs(f"{tmp_path}/sh*")
    assert str(only_directories.value) == (f"--input_file: '{tmp_path}/sh*' matches only directories ({tmp_path}/shards); "
                                           f"name their files (e.g. '{tmp_path}/shards/*')")
    with pytest.raises(InputError, match="no file matches"):
        expand_inputs(f"{tmp_path}/nothing*")
    with pytest.raises(InputError, match="is a directory; name its files"):
        expand_inputs(str(tmp_path / "shards"), flag="--input_file")



def test_a_worker_that_dies_is_an_error_not_a_wait_for_ever():
    with worker_pool(2, os.getpid()) as pool:
        assert list(ordered_results(pool, abs, iter([(-3,), (4,), (-5,)]), window=2)) == [((-3,), 3), ((4,), 4), ((-5,), 5)]
        # As the out-of-memory killer ends a worker.
        with pytest.raises(InputError, match="^a worker process ended before it finished its task"):
            list(ordered_results(pool, signal.raise_signal, [(signal.SIGKILL,)], window=1))
