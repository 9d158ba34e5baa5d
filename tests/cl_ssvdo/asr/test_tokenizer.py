"""CharTokenizer / SentencePieceTokenizer: ids, round trips, persistence, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from speechbrain.dataio.encoder import CTCTextEncoder

from cl_ssvdo.asr.tokenizer import (
    BLANK_ID,
    DEFAULT_CHARSET,
    CharTokenizer,
    SentencePieceTokenizer,
    as_tokenizer,
)

TEXT = st.text(alphabet="".join(DEFAULT_CHARSET), max_size=60)


def test_default_layout(char_tokenizer: CharTokenizer) -> None:
    assert char_tokenizer.blank_id == BLANK_ID == 0
    assert char_tokenizer.vocab_size == 29
    assert char_tokenizer.charset == " '" + "abcdefghijklmnopqrstuvwxyz"
    assert char_tokenizer.get_blank_index() == 0
    assert 0 not in char_tokenizer.encode("turn on the light")


@given(TEXT)
@settings(max_examples=200, deadline=None)
def test_encode_decode_round_trip(text: str) -> None:
    tok = CharTokenizer()
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(1 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@given(TEXT)
@settings(max_examples=50, deadline=None)
def test_decode_drops_blanks(text: str) -> None:
    tok = CharTokenizer()
    ids = []
    for i in tok.encode(text):
        ids += [BLANK_ID, i]
    assert tok.decode(ids + [BLANK_ID]) == text


def test_unknown_character_is_named() -> None:
    with pytest.raises(ValueError, match=r"\['!', 'T'\]"):
        CharTokenizer().encode("Turn on!")


@pytest.mark.parametrize("charset", [["ab"], ["a", "a"], []])
def test_bad_charset(charset: list[str]) -> None:
    with pytest.raises(ValueError, match="charset"):
        CharTokenizer(charset)


def test_save_load_round_trip(tmp_path) -> None:
    tok = CharTokenizer(["x", "y", " "])
    tok.save(tmp_path / "tok.ckpt")
    loaded = CharTokenizer()
    loaded.load_strict(tmp_path / "tok.ckpt")
    assert loaded.charset == "xy "
    assert loaded.encode("yx y") == tok.encode("yx y")


def test_load_strict_raises_on_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        CharTokenizer().load_strict(tmp_path / "missing.ckpt")


def test_wraps_a_user_ctc_text_encoder() -> None:
    enc = CTCTextEncoder()
    enc.insert_blank(index=0)
    enc.update_from_iterable("abc ", sequence_input=False)
    tok = as_tokenizer(enc)
    assert isinstance(tok, CharTokenizer)
    assert tok.encode("cab") == [enc.lab2ind[c] for c in "cab"]


def test_rejects_encoder_with_blank_elsewhere() -> None:
    enc = CTCTextEncoder()
    enc.update_from_iterable("abc", sequence_input=False)
    enc.add_blank()  # blank gets the last id
    with pytest.raises(ValueError, match="id 0"):
        CharTokenizer.from_text_encoder(enc)
    with pytest.raises(TypeError, match="tokenizer"):
        as_tokenizer(object())


def test_sentencepiece_round_trip(tmp_path) -> None:
    texts = ["turn on the kitchen light", "one two three four", "lock the front door now"] * 20
    tok = SentencePieceTokenizer.train(texts, tmp_path / "spm", vocab_size=40)
    assert tok.processor.id_to_piece(BLANK_ID) == "<blank>"
    ids = tok.encode("turn on the light")
    assert BLANK_ID not in ids
    assert tok.decode([BLANK_ID, *ids, BLANK_ID]) == "turn on the light"
    assert tok.vocab_size <= 40
