"""Testing helpers for ste users and its own test-suite: a fake provider server and cassettes."""
