"""The shipped configs: this folder is packaged as `hmgnn.configs` (pyproject.toml), so `hmgnn ... -c demo` finds
them after a plain `pip install`; `hmgnn init` copies one out to edit."""
