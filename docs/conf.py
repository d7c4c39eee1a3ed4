"""Sphinx configuration of nnfast's documentation (``pip install ".[docs]"``).

Build, strictly as CI does::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The benchmark tables of the performance page are generated here, at every build, by
``nnfast report --docs`` from the kept runs in ``docs/bench/*.json`` into ``docs/_generated/``
(not kept in git): no figure in the documentation is typed by hand.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import nnfast               # the installed package (pip install ".[docs]")
except ImportError:             # a source checkout without an install: the pure-Python layer
    sys.path.insert(0, os.path.join(HERE, "..", "src"))
    import nnfast
from nnfast import report  # noqa: E402

project = "nnfast"
author = "the nnfast developers"
copyright = "2026, the nnfast developers"
release = version = nnfast.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated", "bench", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
# Optional extras (torch) are documented where installed; elsewhere autodoc would fail on them.
autodoc_mock_imports = [] if __import__("importlib").util.find_spec("torch") else ["torch"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
templates_path = ["_templates"]     # autosummary's class page: the class and its own members
# Docstrings write ``code`` as literals; a single-backquoted name is a literal too.
default_role = "literal"

html_theme = "furo"
html_title = f"nnfast {release}"

report.docs_pages(os.path.join(HERE, "bench"), os.path.join(HERE, "_generated", "bench"))


# --- docstrings -----------------------------------------------------------------------------

def _foreign(obj):
    """True for what nnfast inherits from another library (scikit-learn's, torch's methods):
    documented there, not here."""
    return not (getattr(obj, "__module__", None) or "nnfast").startswith("nnfast")


def skip_member(app, what, name, obj, skip, options):
    if what == "class" and _foreign(obj):
        return True
    return None


def own_docstring(app, what, name, obj, options, lines):
    """A class of the scikit-learn or PyTorch front whose docstring is its base class's (torch's
    optimizers), written for another documentation: point to that class instead."""
    if what != "class":
        return
    bases = [b for b in obj.__mro__[1:] if _foreign(b) and b is not object]
    base = next((b for b in bases if b.__doc__ and b.__doc__ == obj.__doc__), None)
    if base is None:
        return
    lines[:] = [f"A subclass of ``{base.__module__.split('.')[0]}``'s "
                f"``{base.__qualname__}``: its constructor, parameters and methods are that "
                "class's (see that library's documentation); the update runs through nnfast's "
                "fused kernels. What nnfast adds and where it falls back is in the module's "
                "documentation and the user guide."]


_PARAMETER = re.compile(r"^[A-Za-z_]\w* : ")


def plain_text_lists(app, what, name, obj, options, lines):
    """Two plain-text habits of the docstrings, read as they are meant: a run of
    ``name : text`` lines outside any numpydoc section is a parameter list (made one for
    napoleon, which runs next: the name, then its text as the description), and a paragraph
    straight after a bullet list starts after a blank line."""
    out, in_list, in_params, in_section = [], False, False, False
    for line in lines:
        if set(line.strip()) == {"-"} and out and out[-1].strip():
            in_section = True              # a numpydoc section: napoleon reads it as it is
        if _PARAMETER.match(line) and not in_section:
            if not in_params:
                out += ["", "Other Parameters", "----------------"]
                in_params = True
            name, text = line.split(" : ", 1)
            out += [name, "    " + text]
            continue
        if line and not line[0].isspace():
            if in_list and not line.startswith("- "):
                out.append("")
            in_params = False
        if line.startswith("- "):
            in_list = True
        elif not line or not line[0].isspace():
            in_list = False
        out.append(line)
    lines[:] = out


def setup(app):
    app.connect("autodoc-skip-member", skip_member)
    app.connect("autodoc-process-docstring", own_docstring, priority=100)
    app.connect("autodoc-process-docstring", plain_text_lists, priority=200)   # napoleon: 500
