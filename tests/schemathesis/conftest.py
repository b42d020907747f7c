"""Prints how many cases each schemathesis run sent, at the end of the session."""

from rradistill_service import SUMMARY


def pytest_terminal_summary(terminalreporter):
    if SUMMARY:
        terminalreporter.section("schemathesis cases")
        for line in SUMMARY:
            terminalreporter.write_line(line)
