"""The `dg` defs folder of the project (`[tool.dg.project] defs_module` in pyproject.toml).

`pipelines/definitions.py` loads whatever lives here with `dagster.load_from_defs_folder` and
merges it with the usage pipeline (every asset of the `assets` package, found by loading the
package, not from a hand-kept list). Definitions scaffolded with `dg scaffold defs ...` land here
and are picked up without further wiring.
"""
