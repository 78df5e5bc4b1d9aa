"""
Sphinx configuration for the jmap-twisted documentation.
"""

project = "jmap-twisted"
author = "The jmap-twisted developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
