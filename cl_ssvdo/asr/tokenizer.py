"""Tokenizers for CTC: characters by default, SentencePiece optional.

Both keep the CTC blank at id 0 (the convention of every model in this package) and are saved
with the model inside a pretrained folder (see :mod:`cl_ssvdo.asr.pretrained`).

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.utils.checkpoints import mark_as_loader, register_checkpoint_hooks

BLANK_ID = 0
BLANK_LABEL = "<blank>"

#: Characters of normalised transcripts (``cl_ssvdo.data.normalize_transcript``), in id order.
DEFAULT_CHARSET: tuple[str, ...] = (" ", "'", *string.ascii_lowercase)


@runtime_checkable
class Tokenizer(Protocol):
    """What the rest of the code needs from a CTC tokenizer (blank id 0)."""

    blank_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@register_checkpoint_hooks
class CharTokenizer(CTCTextEncoder):
    """Character tokenizer for CTC: id 0 is the blank, then one id per character.

    A :class:`speechbrain.dataio.encoder.CTCTextEncoder`, so SpeechBrain's ``EncoderASR``
    decodes with it directly and its ``save``/``load_if_possible`` checkpoint hooks store it
    in a pretrained folder (``tokenizer.ckpt``).

    Arguments
    ---------
    charset : Iterable[str]
        Single characters, in id order (ids 1..len(charset)). Default: space, apostrophe, a-z.

    Example
    -------
    >>> tok = CharTokenizer()
    >>> tok.vocab_size
    29
    >>> ids = tok.encode("turn on")
    >>> tok.decode(ids)
    'turn on'
    >>> tok.blank_id
    0
    """

    blank_id = BLANK_ID

    def __init__(self, charset: Iterable[str] = DEFAULT_CHARSET) -> None:
        super().__init__()
        chars = list(charset)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(
                f"CharTokenizer: charset entries must be single characters, got {bad!r}"
            )
        if len(set(chars)) != len(chars):
            raise ValueError(f"CharTokenizer: charset has duplicates: {chars!r}")
        if not chars:
            raise ValueError("CharTokenizer: charset is empty")
        self.insert_blank(BLANK_LABEL, index=BLANK_ID)
        for char in chars:
            self.add_label(char)
        self.expect_len(len(chars) + 1)

    @classmethod
    def from_text_encoder(cls, encoder: CTCTextEncoder) -> CharTokenizer:
        """Wraps a user's ``CTCTextEncoder`` (e.g. from their own pretrained folder).

        Raises ``ValueError`` unless the blank is id 0 and every other label is one character.
        """
        if isinstance(encoder, CharTokenizer):
            return encoder
        blank = getattr(encoder, "blank_label", None)
        if blank is None or encoder.lab2ind.get(blank) != BLANK_ID:
            raise ValueError(
                "tokenizer: the CTCTextEncoder must have its blank label at id 0 "
                f"(found blank_label={blank!r} at id {encoder.lab2ind.get(blank)!r})"
            )
        n = len(encoder.lab2ind)
        chars = [encoder.ind2lab[i] for i in range(1, n)]
        return cls(chars)

    @property
    def charset(self) -> str:
        """The characters this tokenizer can encode, in id order (blank excluded)."""
        return "".join(self.ind2lab[i] for i in range(1, len(self.lab2ind)))

    @property
    def vocab_size(self) -> int:
        """Number of output classes, blank included."""
        return len(self.lab2ind)

    def encode(self, text: str) -> list[int]:
        """Maps a normalised transcript to ids (no blanks). Unknown characters raise."""
        try:
            return [self.lab2ind[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.lab2ind})
            raise ValueError(
                f"CharTokenizer.encode: characters {unknown!r} of {text!r} are not in the "
                f"charset {self.charset!r}; normalise transcripts first"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        """Maps ids back to text; blank ids are dropped (no CTC repeat merging here)."""
        return "".join(self.ind2lab[int(i)] for i in ids if int(i) != BLANK_ID)

    def load(self, path: str | Path) -> None:
        """Loads a saved mapping (SpeechBrain literal format) and re-checks the blank id."""
        super().load(path)
        if self.lab2ind.get(getattr(self, "blank_label", None)) != BLANK_ID:
            raise ValueError(f"tokenizer file {path}: the blank label is not at id 0")
        self.expect_len(len(self.lab2ind))

    @mark_as_loader
    def load_strict(self, path: str | Path, end_of_epoch: bool = False) -> None:
        """Checkpoint/pretrainer load hook: unlike ``load_if_possible``, a bad file raises."""
        del end_of_epoch
        self.load(path)


class SentencePieceTokenizer:
    """CTC wrapper around a ``sentencepiece.SentencePieceProcessor`` (optional dependency).

    Id 0 is used as the CTC blank, as in SpeechBrain's CTC recipes: train the model with
    ``unk_id`` != 0 or accept that piece 0 is never emitted. ``decode`` drops id 0.

    Arguments
    ---------
    processor : sentencepiece.SentencePieceProcessor
        A loaded model.
    """

    blank_id = BLANK_ID

    def __init__(self, processor) -> None:
        self.processor = processor

    @classmethod
    def train(
        cls, texts: Iterable[str], model_prefix: str | Path, vocab_size: int = 64
    ) -> SentencePieceTokenizer:
        """Trains a unigram model on ``texts`` (written to ``<model_prefix>.model``).

        Piece 0 is reserved as the blank (``<blank>``, via ``pad_id=0``).
        """
        import sentencepiece as spm

        prefix = Path(model_prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        text_file = prefix.with_suffix(".txt")
        text_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(text_file),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=1.0,
            pad_id=0,
            pad_piece=BLANK_LABEL,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            hard_vocab_limit=False,
        )
        return cls.load(prefix.with_suffix(".model"))

    @classmethod
    def load(cls, model_file: str | Path) -> SentencePieceTokenizer:
        """Loads ``model_file`` (a ``.model`` file)."""
        import sentencepiece as spm

        if not Path(model_file).is_file():
            raise FileNotFoundError(f"SentencePiece model file not found: {model_file}")
        processor = spm.SentencePieceProcessor()
        processor.load(str(model_file))
        return cls(processor)

    @property
    def vocab_size(self) -> int:
        """Number of output classes (pieces), blank included."""
        return int(self.processor.vocab_size())

    def encode(self, text: str) -> list[int]:
        """Maps text to piece ids."""
        return list(self.processor.encode_as_ids(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Maps piece ids to text, dropping blanks."""
        return self.processor.decode_ids([int(i) for i in ids if int(i) != BLANK_ID])


def as_tokenizer(obj) -> CharTokenizer | SentencePieceTokenizer:
    """Converts a SpeechBrain pretrained folder's ``tokenizer`` into one of ours.

    Accepts a ``CTCTextEncoder`` (blank at id 0) or a ``SentencePieceProcessor``.
    """
    if isinstance(obj, CharTokenizer | SentencePieceTokenizer):
        return obj
    if isinstance(obj, CTCTextEncoder):
        return CharTokenizer.from_text_encoder(obj)
    try:
        import sentencepiece as spm
    except ImportError:  # pragma: no cover - sentencepiece ships with speechbrain
        spm = None
    if spm is not None and isinstance(obj, spm.SentencePieceProcessor):
        return SentencePieceTokenizer(obj)
    raise TypeError(
        f"tokenizer: expected a CTCTextEncoder or SentencePieceProcessor, got {type(obj).__name__}"
    )
