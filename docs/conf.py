"""
Sphinx configuration for the jmap-twisted documentation.
"""

project = "jmap-twisted"
author = "The jmap-twisted developers"
# repoze.sphinx.autointerface documents zope interfaces (their methods and
# attributes) wherever autodoc meets one, as in ``automodule``.  It extends
# autodoc's class-based documenters, which Sphinx 9 keeps behind
# autodoc_use_legacy_class_based (sphinx-doc/sphinx#14089).
extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode", "repoze.sphinx.autointerface"]
autodoc_use_legacy_class_based = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
