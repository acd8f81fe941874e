"""Speech, with no UI: speaking text (text rules, language check, pieces streamed into an audio file), transcribing
recordings (checked and decoded through backends/speech/codecs.py), subtitles, and each user's kept items."""
