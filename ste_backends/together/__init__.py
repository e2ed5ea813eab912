"""Together AI backend (the reference plugin): inference, Batch API, fine-tuning and serving.

Nothing here imports the `together` SDK at module import time: the SDK is imported inside the
functions that need it, so `ste backends` and `ste --help` stay fast.
"""
