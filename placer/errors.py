"""The one exception type for problems a user can fix.

Every user-facing failure (bad file, impossible constraint, missing backend) raises
:class:`PlacerError` with one line that names the problem and the fix. The CLI turns it into
that line on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations


class PlacerError(Exception):
    """A problem the user can fix: bad input, impossible constraints, missing optional package.

    The message is a single line: what is wrong (naming the file when there is one) and what to
    do about it.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split("\n")))


def missing_package(package: str, feature: str, pip_name: str | None = None) -> PlacerError:
    """The error for an optional dependency that is not installed."""
    pip_name = pip_name or package
    return PlacerError(
        f"{feature} needs the Python package '{package}', which is not installed; "
        f"install it with: pip install {pip_name}"
    )
