"""Speech: engines, transcription, audio files, the Speech tab and its endpoints."""
