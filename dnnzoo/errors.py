"""The one exception type every stage raises for a problem the user can fix."""


class UserError(Exception):
    """Bad input, a missing file, an unknown name: printed as one line, exit status 2, no traceback."""
