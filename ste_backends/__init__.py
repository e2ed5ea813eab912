"""Built-in backend plugins (together, openai, litellm, local), loaded via `ste` entry points."""
