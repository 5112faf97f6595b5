"""write_text_atomically: a reader finds the old file or the new one, whole, even when the writer is SIGKILLed;
what a killed writer left is removed by the next write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from recsys.storage.atomic import write_text_atomically

WRITER = """
import sys
from recsys.storage.atomic import write_text_atomically
path, i = sys.argv[1], 0
while True:  # whole versions, each 4 MB of one letter: a torn file would mix letters or be short
    write_text_atomically(path, "abcdefgh"[i % 8] * (4 << 20))
    i += 1
"""


def _leftovers(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def test_writes_replace_whole_and_leave_nothing(tmp_path):
    path = tmp_path / "sub" / "result.json"
    assert write_text_atomically(path, '{"a": 1}\n') == path
    write_text_atomically(path, '{"a": 2}\n')
    assert path.read_text() == '{"a": 2}\n'
    assert _leftovers(path) == []


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "best.yaml"
    write_text_atomically(path, "old\n")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomically(path, "new\n")
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert _leftovers(path) == []


def test_a_sigkilled_writer_leaves_a_whole_file_and_the_next_write_cleans_up(tmp_path):
    path = tmp_path / "trials.json"
    write_text_atomically(path, "z" * 10)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    try:
        deadline = time.monotonic() + 60
        while path.read_text()[:1] == "z" and time.monotonic() < deadline:  # wait for its first whole version
            time.sleep(0.01)
        time.sleep(0.3)  # then kill it at some point of its loop, most likely mid-write (writing is most of it)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    text = path.read_text()
    assert len(text) == 4 << 20 and text == text[0] * len(text)  # one whole version
    write_text_atomically(path, "after\n")
    assert path.read_text() == "after\n"
    assert _leftovers(path) == []  # the killed writer's temporary, if it left one, is gone
