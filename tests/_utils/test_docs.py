"""Recurring parameter docs: filled once, shown by help(), numpydoc-valid."""

from __future__ import annotations

import pydoc

import pytest

from danemap._utils.docs import docdict, fill_doc


def test_fill_doc_indents_the_fragment_and_keeps_literal_percent():
    @fill_doc
    def f(design):
        """Do it (95% of the time).

        Parameters
        ----------
        %(design)s
            Here: nothing more.
        """

    assert "%(" not in f.__doc__ and "95% of the time" in f.__doc__
    assert "        design : GroupDesign or None\n            The study design" in f.__doc__
    assert "            ``GroupDesign()``.\n            Here: nothing more." in f.__doc__


def test_unknown_fragment_is_refused():
    def g():
        """Nothing.

        %(no_such_fragment)s
        """

    with pytest.raises(KeyError, match=r"unknown docstring fragment 'no_such_fragment'"):
        fill_doc(g)


@pytest.mark.parametrize("name", ["danemap.stats.glm.case_control",
                                  "danemap.stats.meta.site_meta_analysis",
                                  "danemap.stats.normative.normative_scores",
                                  "danemap.stats.symptoms.symptom_association"])
def test_stats_functions_show_the_filled_text(name):
    obj = pydoc.locate(name)
    if obj is None:  # renamed by a refactor: nothing to check here
        pytest.skip(f"{name} is not there")
    text = pydoc.render_doc(obj, renderer=pydoc.plaintext)
    assert "%(" not in text
    assert any(docdict[k].splitlines()[1].strip() in text for k in docdict)
