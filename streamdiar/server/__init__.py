"""Live diarization over WebSockets (`streamdiar serve`): the server in `app`, the page in
`static/`, a Python client in `client`. This module imports nothing heavy: the command's
defaults live here."""

BACKLOG_SECONDS = 5.0  # audio a stream may hold waiting for the models, as `live`'s capture
DEFAULT_MAX_STREAMS = 8
