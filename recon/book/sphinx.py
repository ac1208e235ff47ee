"""The book's Sphinx extension (``_config.yml`` lists ``recon.book.sphinx``): a chapter's
launch buttons open its source notebook, ``notebooks/NAME.ipynb`` (the executed copy in
``book/chapters/`` is not committed), and identical ``<script>`` entries load once."""

from __future__ import annotations

from pathlib import Path

from recon.book import notebooks


def _launch_source_notebooks(app, pagename, templatename, context, doctree):
    """Point a chapter's launch buttons (Colab, Binder) at ``notebooks/NAME.ipynb``."""
    if Path(app.srcdir).resolve() not in (notebooks.SITE, notebooks.ROOT):
        return  # not a build of this checkout's book
    chapters = notebooks.CHAPTERS_IN_SITE
    sources = notebooks.NOTEBOOKS.relative_to(notebooks.ROOT).as_posix()
    if not pagename.startswith(chapters + "/"):
        return
    name = pagename[len(chapters) + 1:]
    if not (notebooks.NOTEBOOKS / f"{name}.ipynb").is_file():
        return
    executed, source = f"{chapters}/{name}.ipynb", f"{sources}/{name}.ipynb"
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if button.get("url"):
                button["url"] = button["url"].replace(executed, source)


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    """Keep the first of identical ``<script>`` entries of a page (same file or same inline
    body, same attributes)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        key = (str(getattr(script, "filename", script) or ""),
               tuple(sorted((str(k), str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    """Sphinx entry point (``sphinx.extra_extensions`` in ``_config.yml``)."""
    # after sphinx-book-theme's own launch buttons (priority 501)
    app.connect("html-page-context", _launch_source_notebooks, priority=600)
    # last, once every other handler has added its scripts
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
