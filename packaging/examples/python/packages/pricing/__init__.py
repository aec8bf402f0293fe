# -*- coding: utf-8 -*-
"""An example of a Python package the cluster's services import: `[python] packages` in
cluster.toml names this directory, and every server installs it beside itself, onto its import
path, with the cluster's other Python dependencies (a change restarts the servers one at a time)."""
