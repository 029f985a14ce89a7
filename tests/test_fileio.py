"""Atomic output files: the destination holds its old content or the whole new one, and no temporary file stays."""

import pytest

from bert.errors import InputError
from bert.fileio import AtomicFile, check_output_file


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


def test_a_rename_that_fails_is_one_error_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(InputError, match=f"^cannot write {path}: Is a directory$"), AtomicFile(path) as f:
        f.write("data\n")
        path.mkdir()  # what the destination became while the file was written
        (path / "kept.txt").write_text("mine")
    assert (path / "kept.txt").read_text() == "mine" and leftovers(tmp_path) == []


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
