"""The one progress-bar rule (recsys.progress.show_progress): a terminal and no truthy $CI, unless asked."""

from __future__ import annotations

import sys

import pytest

from recsys.progress import show_progress


class _Terminal:
    """A stand-in stderr that claims to be a terminal."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _stderr(monkeypatch, tty: bool) -> None:
    """Swap stderr inside the test body: pytest's capture re-sets sys.stderr after fixtures run."""
    monkeypatch.setattr(sys, "stderr", _Terminal(tty))


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", "yes", "Yes"])
def test_truthy_ci_silences_bars_even_on_a_terminal(monkeypatch, value):
    _stderr(monkeypatch, True)
    monkeypatch.setenv("CI", value)
    assert show_progress() is False


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_other_ci_values_leave_bars_on_at_a_terminal(monkeypatch, value):
    _stderr(monkeypatch, True)
    monkeypatch.setenv("CI", value)
    assert show_progress() is True


def test_bars_on_at_a_terminal_without_ci(monkeypatch):
    _stderr(monkeypatch, True)
    monkeypatch.delenv("CI", raising=False)
    assert show_progress() is True
    assert show_progress(None) is True


def test_no_terminal_silences_bars(monkeypatch):
    _stderr(monkeypatch, False)
    monkeypatch.delenv("CI", raising=False)
    assert show_progress() is False


@pytest.mark.parametrize("tty", [True, False])
@pytest.mark.parametrize("ci", ["1", ""])
def test_an_explicit_request_wins(monkeypatch, tty, ci):
    _stderr(monkeypatch, tty)
    monkeypatch.setenv("CI", ci)
    assert show_progress(True) is True
    assert show_progress(False) is False
