"""Teacher prompt templates (jinja, rendered in a sandbox), shipped with the package."""
