"""Models, device choice and the math of streaming diarization: arrays in, arrays out."""
