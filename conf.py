"""Sphinx configuration of the akida-workflows site.

Build with ``nox -s gallery`` (or ``sphinx-build -c . docs build/html``): every
example in ``examples/`` is executed and the build fails if one of them errors.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))  # akida_site: pages made from files

# Quiet TensorFlow's start-up chatter in example outputs; headless plotting.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")

import akida_workflows  # noqa: E402

project = "akida-workflows"
author = "akida-workflows developers"
copyright = "2026, akida-workflows developers"
release = akida_workflows.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
    "akida_site",
]

templates_path = []
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "**.zip"]
root_doc = "index"

autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_mock_imports = []
napoleon_google_docstring = False
napoleon_numpy_docstring = True
nitpicky = False

html_theme = "pydata_sphinx_theme"
html_title = "akida-workflows"
html_static_path = ["docs/_static"]  # relative to conf.py
html_css_files = ["akida.css"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    # The landing and Results pages give their tables the full width.
    "secondary_sidebar_items": {"**": ["page-toc", "sourcelink"], "index": [], "results": []},
}
# No left sidebar on the landing, narrative and example pages: figures get the width.
html_sidebars = {"index": [], "getting_started": [], "guide": [], "results": [], "architecture": [],
                 "auto_examples/*": []}

# akida_site (docs/_ext/akida_site.py): the Results page renders docs/results/*.json, the
# landing page the key numbers the examples write while they run, and the site offers the
# wheel and the lock. `nox -s gallery` builds build/dist/<wheel> first; set
# akida_require_downloads (-D akida_require_downloads=1) to make their absence an error.
akida_results_dir = str(ROOT / "docs" / "results")
akida_wheel_dir = str(ROOT / "build" / "dist")
akida_lock_file = str(ROOT / "requirements" / "lock.txt")

sphinx_gallery_conf = {
    # Paths are relative to the source folder (docs/).
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": True,
    # Same seeds before every example, whatever ran before it.
    # (akida_site.patch_notebooks: the install cell, also in parallel workers;
    # akida_site.keep_gallery_workers: a worker runs all its examples, not replaced;
    # akida_site.fresh_keras_session: tf-keras' names and graphs as in a fresh process;
    # akida_site.lean_gallery_gc: rarer full garbage collections, none at the worker's exit.)
    "reset_modules": ("matplotlib", "akida_workflows.reset_seeds", "akida_site.patch_notebooks",
                      "akida_site.keep_gallery_workers", "akida_site.fresh_keras_session",
                      "akida_site.lean_gallery_gc"),
    "reset_modules_order": "before",
    "first_notebook_cell": "%matplotlib inline",
    "capture_repr": ("_repr_html_", "__repr__"),
    "image_scrapers": ("matplotlib",),
    # A failing example fails the build: no silently missing page.
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "min_reported_time": 0,
    "write_computation_times": True,
    "junit": "../gallery-junit.xml",  # relative to build/html
    "remove_config_comments": True,
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("akida_workflows",),
    "show_memory": False,
    "plot_gallery": "True",
    # Examples run in separate processes, two at a time (every example pins its own
    # seeds; `nox -s gallery` pins one thread and one instruction-set path per process,
    # so the pages show the numbers the golden notebooks hold). 1 runs them in turn.
    "parallel": int(os.environ.get("AKIDA_WORKFLOWS_GALLERY_JOBS", "2")),
}
