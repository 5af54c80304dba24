"""Speaker-attributed transcripts: Whisper output read, labelled with diarization turns
(in one pass or live, as both arrive), and written as subtitles, JSON or text."""
