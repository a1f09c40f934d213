"""Optional pieces say which extra to install."""

import pytest

from spacy_mulcot.extras import require


def test_a_missing_extra_names_the_pip_command():
    with pytest.raises(ImportError, match=r"pip install 'spacy-mulcot\[serve\]'"):
        require("no_such_module_for_mulcot", "serve", "the demo app")
    assert require("json", "serve", "x").dumps([]) == "[]"
