"""The HTTP inference service: loads the champion, validates, predicts, logs."""
