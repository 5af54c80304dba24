"""Streaming speaker diarization that keeps pace with transcription."""

__version__ = "0.1.0"
