"""The `ste` command line. Each command lives in its own module; all of them import only the
standard library, typer and rich at module level so that `ste --help` stays fast."""
