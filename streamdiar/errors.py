"""The errors streamdiar raises for what its caller can fix.

Each kind has its class beside the code that finds it (SettingsError in settings, AudioError
in stream.sources, ...), and all derive from StreamdiarError: a program catches that one class,
and the command line prints any of them as one line, `streamdiar: error: MESSAGE`, with exit
code 2.
"""


class StreamdiarError(Exception):
    """Something the caller can fix: a file, a setting, a block of samples, a transcript.

    str(error) is one line, the one the command line prints.
    """


class UserError(StreamdiarError):
    """A command-line flag or value that no run can use."""


class SessionClosedError(StreamdiarError):
    """Samples pushed to a session after it was closed."""
