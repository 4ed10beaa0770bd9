"""Prompts for the collector: read a prompt file, tokenise without a tokenizer, cut and batch.

Sequences keep prompt boundaries (one prompt, one sequence of the trace); the collector pads each
batch on the right, so the order of tokens here is the order of tokens in the trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

from placer.errors import PlacerError
from placer.fileio import parse_json


def read_prompts(path: str | Path, text_field: str | None = None) -> Iterator[str]:
    """Yield the prompts of ``path``: one per non-blank line, or JSONL records' ``text_field``.

    JSONL is assumed when ``text_field`` is given or the file ends in ``.jsonl``/``.json``
    (field ``text`` by default). Raises :class:`PlacerError` on unreadable or malformed files.
    """
    path = Path(path)
    jsonl = text_field is not None or path.suffix.lower() in (".jsonl", ".json")
    text_field = text_field or "text"
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise PlacerError(f"{path}: no such prompt file; check the --prompts path") from None
    except OSError as exc:
        raise PlacerError(f"{path}: cannot read the prompt file ({exc.strerror}); check the path") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                if not jsonl:
                    yield line.rstrip("\r\n")
                    continue
                try:
                    rec = parse_json(line, f"{path}:{lineno}")
                except PlacerError:
                    raise PlacerError(f"{path}:{lineno}: not a JSON object; give one JSON object per line, or a plain-text file with one prompt per line") from None
                if not isinstance(rec, dict) or not isinstance(rec.get(text_field), str):
                    raise PlacerError(f"{path}:{lineno}: no string field '{text_field}'; name the text field with --text-field")
                yield rec[text_field]
        except UnicodeDecodeError:
            raise PlacerError(f"{path}: not UTF-8 text; give a UTF-8 prompt file") from None


def byte_tokens(text: str, vocab_size: int) -> list[int]:
    """Tokenise without a tokenizer: one token per UTF-8 byte, id = byte value mod ``vocab_size``.

    Used in from-config mode (random weights, no tokenizer); deterministic and documented.
    """
    return [b % vocab_size for b in text.encode("utf-8")]


def token_sequences(prompts: Iterable[str], encode: Callable[[str], list[int]], seq_len: int,
                    max_tokens: int | None) -> Iterator[list[int]]:
    """Encode prompts, truncate each to ``seq_len`` and stop after ``max_tokens`` tokens in all.

    Prompts that encode to no tokens are skipped; the last sequence is cut to fit ``max_tokens``.
    """
    total = 0
    for text in prompts:
        ids = list(encode(text))[:seq_len]
        if max_tokens is not None:
            ids = ids[:max_tokens - total]
        if not ids:
            if max_tokens is not None and total >= max_tokens:
                return
            continue
        total += len(ids)
        yield ids


def batches(seqs: Iterable[list[int]], batch_size: int) -> Iterator[list[list[int]]]:
    """Groups of up to ``batch_size`` sequences, in order (itertools.batched needs Python 3.12)."""
    batch: list[list[int]] = []
    for s in seqs:
        batch.append(s)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
