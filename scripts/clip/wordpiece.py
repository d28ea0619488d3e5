"""A small BERT WordPiece tokenizer driven by a Hugging Face `tokenizer.json`.

It implements exactly what all-MiniLM-L6-v2's tokenizer.json declares (BertNormalizer with lowercase
and accent stripping, BertPreTokenizer, WordPiece with '##', the [CLS] A [SEP] template) so the training
script needs no `tokenizers` wheel. `export_text_tower.py --check-tokenizer` compares it against the
reference `tokenizers` library when that is importable.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPiece:
    def __init__(self, tokenizer_json: Path | str | bytes):
        if isinstance(tokenizer_json, (str, Path)):
            spec = json.loads(Path(tokenizer_json).read_text())
        else:
            spec = json.loads(tokenizer_json)
        model = spec["model"]
        if model.get("type") != "WordPiece":
            raise ValueError(f"tokenizer.json: model.type is {model.get('type')!r}, expected 'WordPiece'")
        norm = spec["normalizer"]
        if norm.get("type") != "BertNormalizer":
            raise ValueError(f"tokenizer.json: normalizer.type is {norm.get('type')!r}, expected BertNormalizer")
        self.vocab: dict[str, int] = model["vocab"]
        self.unk = model["unk_token"]
        self.prefix = model["continuing_subword_prefix"]
        self.max_chars = model["max_input_chars_per_word"]
        self.lowercase = norm["lowercase"]
        # BertNormalizer: strip_accents=None means "follow lowercase".
        self.strip_accents = norm["strip_accents"] if norm["strip_accents"] is not None else self.lowercase
        self.clean_text = norm["clean_text"]
        self.cjk = norm["handle_chinese_chars"]
        self.max_len = (spec.get("truncation") or {}).get("max_length", 512)
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]
        self.pad_id = self.vocab["[PAD]"]

    def _normalize(self, text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if self.clean_text:
                if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                    continue
                if ch in "\t\n\r" or unicodedata.category(ch) == "Zs":
                    ch = " "
            if self.cjk and _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        s = "".join(out)
        if self.strip_accents:
            s = "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")
        if self.lowercase:
            s = s.lower()
        return s

    def _pre_tokenize(self, s: str) -> list[str]:
        words, cur = [], []
        for ch in s:
            if ch.isspace():
                if cur:
                    words.append("".join(cur))
                    cur = []
            elif _is_punct(ch):
                if cur:
                    words.append("".join(cur))
                    cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [self.vocab[self.unk]]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.vocab[self.unk]]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str) -> list[int]:
        ids = []
        for w in self._pre_tokenize(self._normalize(text)):
            ids.extend(self._wordpiece(w))
        ids = ids[: self.max_len - 2]
        return [self.cls_id] + ids + [self.sep_id]

    def batch(self, texts: list[str], pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Encode and right-pad to the longest sequence (or `pad_to`): (input_ids, attention_mask) int64."""
        enc = [self.encode(t) for t in texts]
        length = max(len(e) for e in enc) if pad_to is None else pad_to
        ids = np.full((len(enc), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(enc), length), dtype=np.int64)
        for i, e in enumerate(enc):
            ids[i, : len(e)] = e
            mask[i, : len(e)] = 1
        return ids, mask
