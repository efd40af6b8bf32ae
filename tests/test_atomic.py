"""Files written for the user are replaced whole or not at all (`crmvae_jax.common.atomic`)."""

from __future__ import annotations

import concurrent.futures
import errno
import json
import os
import stat

import numpy as np
import pytest

from crmvae_jax.common import atomic

from crmvae_jax.config import runs
from crmvae_jax.config import defaults as config_lib
from crmvae_jax.common.errors import UserError
from crmvae_jax.evaluation import driver
from crmvae_jax.reporting import summaries


def _no_space(*args, **kwargs):
  raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_writes_and_replaces_with_the_usual_mode(tmp_path):
  path = tmp_path / "sub" / "results.json"
  atomic.write_json(str(path), {"a": 1})
  atomic.write_json(str(path), {"a": 2})
  assert json.loads(path.read_text()) == {"a": 2}
  assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
  assert os.listdir(tmp_path / "sub") == ["results.json"]


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def test_a_full_disk_keeps_the_old_file_and_says_how_much_is_needed(tmp_path, monkeypatch):
  path = tmp_path / "results.json"
  path.write_text('{"good": true}\n')
  monkeypatch.setattr(atomic.os, "fsync", _no_space)
  with pytest.raises(UserError) as raised:
    atomic.write_text(str(path), "x" * 2_000_000)
  assert path.read_text() == '{"good": true}\n'
  assert os.listdir(tmp_path) == ["results.json"]  # no temporary left behind
  message = str(raised.value)
  assert str(path) in message and "disk is full" in message
  assert "it needs 2.0 MB" in message and "is free" in message
  assert "\n" not in message


def test_a_writer_failing_midway_keeps_the_old_file(tmp_path):
  path = tmp_path / "cache.npz"
  path.write_bytes(b"old")

  def write(f):
    f.write(b"y" * 1000)
    raise OSError(errno.ENOSPC, "No space left on device")

  with pytest.raises(UserError, match=r"disk is full \(it needs more than 1\.0 kB"):
    atomic.write_with(str(path), write)
  assert path.read_bytes() == b"old"
  assert os.listdir(tmp_path) == ["cache.npz"]


def test_an_unwritable_directory_is_one_sentence_naming_it(tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied")

  monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
  with pytest.raises(UserError, match=r"Cannot write .*tables\.md \(Permission denied\); make "
                     ".* writable or write elsewhere"):
    atomic.write_text(str(tmp_path / "tables.md"), "# tables\n")


def test_a_bug_in_the_writer_keeps_its_traceback_and_no_temporary(tmp_path):
  path = tmp_path / "figure.png"

  def broken(f):
    raise ValueError("a bug")

  with pytest.raises(ValueError, match="a bug"):
    atomic.write_with(str(path), broken)
  assert os.listdir(tmp_path) == []


def test_every_user_file_writer_goes_through_the_helper(tmp_path, monkeypatch):
  """results.json, tables/summaries and config.json keep their old content on a full disk."""
  workdir = tmp_path / "run"
  config = config_lib.quickstart_config()
  runs.save_config(str(workdir), config)
  saved = (workdir / runs.CONFIG_FILE).read_text()
  results_path = workdir / "eval" / driver.RESULTS_FILE
  good, bad = ({"kept": kept, "seed": 0, "beta": 1.0, "step": 1} for kept in (True, False))
  no_figure = lambda directory, title: ()
  driver._write_outputs(config, str(workdir), 0, good, "# good\n", no_figure, False)
  summaries.write_markdown(str(workdir), "sweep.md", "# good\n")
  monkeypatch.setattr(atomic.os, "fsync", _no_space)
  for write in (lambda: runs.save_config(str(workdir), config),
                lambda: driver._write_outputs(config, str(workdir), 0, bad, "# bad\n",
                                              no_figure, False),
                lambda: summaries.write_markdown(str(workdir), "sweep.md", "# bad\n")):
    with pytest.raises(UserError, match="disk is full"):
      write()
  assert (workdir / runs.CONFIG_FILE).read_text() == saved
  assert json.loads(results_path.read_text()) == good  # the evaluation's set kept whole
  assert (workdir / "eval" / driver.TABLES_FILE).read_text() == "# good\n"
  assert (workdir / "sweep.md").read_text() == "# good\n"


def test_figures_and_caches_are_written_whole(tmp_path, monkeypatch):
  from crmvae_jax.reporting import plotting

  path = tmp_path / "grid.png"
  plotting.save_text_grid(["a", "b"], [("mean", np.zeros((2, 4, 4, 3)))], str(path), "t")
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  before = path.read_bytes()
  monkeypatch.setattr(atomic.os, "fsync", _no_space)
  with pytest.raises(UserError, match="grid.png: the disk is full"):
    plotting.save_text_grid(["c"], [("mean", np.ones((1, 4, 4, 3)))], str(path), "t")
  assert path.read_bytes() == before


@pytest.mark.parametrize("size, words", [(0, "0 bytes"), (512, "512 bytes"), (12_400, "12.4 kB"),
                                         (3_210_000, "3.2 MB")])
def test_sizes_in_messages_are_read_in_their_own_unit(size, words):
  # A results file of a few kB was once reported as needing "0.0 MB" with "0.0 MB" free.
  error = atomic.write_error("/tmp/x", OSError(errno.ENOSPC, "No space left"), needed=size)
  assert f"it needs {words}" in str(error)


def _append_many(path: str, writer: int, count: int) -> None:
  for i in range(count):
    atomic.update_json(path, lambda document: [*document, [writer, i]], [])


def test_updates_side_by_side_keep_each_others_changes(tmp_path):
  # Four writers append to one file at once: every entry stays, each writer's in order.
  # (Threads: each opens the lock file itself, and flock locks one open file against
  # another whether they are in one process or two.)
  path = str(tmp_path / "records.json")
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    for done in [pool.submit(_append_many, path, w, 25) for w in range(4)]:
      done.result()
  with open(path) as f:
    entries = json.load(f)
  assert len(entries) == 100
  for w in range(4):
    assert [i for writer, i in entries if writer == w] == list(range(25))
  # A change that fails writes nothing and keeps the file.
  with pytest.raises(ZeroDivisionError):
    atomic.update_json(path, lambda document: 1 / 0)
  with open(path) as f:
    assert json.load(f) == entries
