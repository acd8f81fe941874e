"""The HTTP edge in front of every Gradio route: the guard, API argument checks, session bounds."""
