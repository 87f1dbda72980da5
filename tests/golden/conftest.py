"""Report the golden classifiers' accuracies at the end of the run."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        str(value)
        for report in terminalreporter.stats.get("passed", [])
        for key, value in getattr(report, "user_properties", [])
        if key == "golden_accuracy"
    ]
    if lines:
        terminalreporter.section("golden accuracy")
        for line in lines:
            terminalreporter.write_line(line)
