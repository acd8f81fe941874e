"""Speech engines: text to speech (one file per voice engine) and speech to text, behind base.py's two protocols."""
