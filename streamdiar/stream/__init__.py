"""Async plumbing: audio sources, windowing, the pipeline and its sinks."""
