from hypothesis import given
from hypothesis import strategies as st

from cl_ssvdo.data import ALLOWED_CHARS, normalize_transcript


def test_examples():
    assert (
        normalize_transcript("Turn OFF the kitchen-light, please!")
        == "turn off the kitchen light please"
    )
    assert normalize_transcript("Room 42") == "room four two"
    assert normalize_transcript("  'Café'  isn\u2019t open ") == "cafe isn't open"
    assert normalize_transcript("Straße") == "strasse"
    assert normalize_transcript("...") == ""


@given(st.text())
def test_output_charset_and_idempotent(text):
    out = normalize_transcript(text)
    assert set(out) <= ALLOWED_CHARS
    assert "  " not in out and out == out.strip()
    assert normalize_transcript(out) == out


def test_rejects_non_str():
    import pytest

    with pytest.raises(TypeError):
        normalize_transcript(None)  # type: ignore[arg-type]
