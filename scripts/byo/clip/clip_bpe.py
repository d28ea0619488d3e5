"""CLIP's byte-level BPE tokenizer as a Hugging Face `tokenizers` tokenizer.json.

Built from the vocabulary file that open_clip ships (bpe_simple_vocab_16e6.txt.gz, OpenAI's CLIP
merges). The reference behaviour is open_clip's SimpleTokenizer with clean='lower' (what ViT-B/32 and
the other OpenAI-vocabulary models use):

    text -> ftfy.fix_text -> html.unescape twice -> strip -> collapse whitespace -> lower()
         -> regex  <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+
         -> each piece's UTF-8 bytes mapped to printable characters (GPT-2 byte table)
         -> BPE over the characters with '</w>' on the last one, merges by rank
    ids = [49406] + pieces + [49407], truncated to 77 keeping 49407 last, padded with 0.

The file written here declares:
  normalizer     the parts of ftfy.fix_text that act on ordinary text (C1 controls read as
                 Windows-1252, Latin ligatures, full-/half-width forms, curly quotes, ANSI escapes,
                 control characters, NFC), two passes over the common HTML entities, Python's
                 whitespace set collapsed to one space, strip, Python's final-sigma rule, lower case.
                 Every regex is written for fancy-regex (zoom's tokenizers build) as well as
                 Oniguruma (the Python wheel): constant-size look-behinds only.
                 The tables come from ftfy's own data (ftfy.chardata) at build time.
                 Not replicated: ftfy's mojibake repair (fix_encoding) and rare HTML entities.
  pre_tokenizer  CLIP's regex (\\s replaced by the explicit set Python's `regex` module matches),
                 matches kept, gaps removed; then byte-level mapping without a prefix space.
  model          BPE, vocabulary of 49408 (256 bytes, 256 bytes+'</w>', 48894 merges, 2 specials),
                 end_of_word_suffix '</w>', no unknown token (every byte is in the vocabulary).
  post_processor <start_of_text> $A <end_of_text>, both marked special (special_tokens_mask = 1).
  truncation     77 tokens including the two specials (the sequence is cut to 75 first), so the
                 end token stays last, as in open_clip.
  padding        none: zoom pads with 0 itself (CLIP's padding id), up to clip.max_tokens.
"""

from __future__ import annotations

import gzip
import html
import json
from pathlib import Path

SOT = "<start_of_text>"
EOT = "<end_of_text>"
SOT_ID = 49406
EOT_ID = 49407
VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77
N_MERGES = 49152 - 256 - 2  # 48894: the merges OpenAI's CLIP uses (file lines 2 .. 48895)

# CLIP's pre-tokenisation regex without the special tokens (added tokens are split out first).
_WORD_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^WS\p{L}\p{N}]+"

# Entities decoded by the normaliser, as (regex, replacement) applied in this order, in each of two
# passes (open_clip calls html.unescape twice). html.unescape decodes each '&...' once per call;
# ordering '&amp' last within a pass keeps that: '&amp;lt;' -> '&lt;' after one pass, '<' after two.
_ENTITIES = [
    ("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&#39;", "'"), ("&#x27;", "'"),
    ("&#34;", '"'), ("&#60;", "<"), ("&#62;", ">"), ("&nbsp;", "\u00a0"), ("&#160;", "\u00a0"), ("&#38;", "&"),
    # legacy names html.unescape also decodes without the semicolon
    ("&lt(?!;)", "<"), ("&gt(?!;)", ">"), ("&quot(?!;)", '"'), ("&nbsp(?!;)", "\u00a0"),
    ("&amp;", "&"), ("&amp(?!;)", "&"),
]


class TokenizerBuildError(RuntimeError):
    """The vocabulary file is missing or not CLIP's."""


def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable character table of byte-level BPE (GPT-2 / CLIP).

    Printable Latin-1 bytes map to themselves; the other 68 bytes map, in byte order, to
    U+0100, U+0101, ...
    """
    keep = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def read_merges(bpe_path: Path) -> list[tuple[str, str]]:
    """The first 48894 merges of the gzipped merges file (line 1 is a version header)."""
    if not bpe_path.is_file():
        raise TokenizerBuildError(f"BPE vocabulary file not found: {bpe_path}")
    try:
        lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    except OSError as e:
        raise TokenizerBuildError(f"{bpe_path}: not a gzip file ({e})") from e
    body = lines[1:N_MERGES + 1]
    if len(body) != N_MERGES:
        raise TokenizerBuildError(f"{bpe_path}: {len(body)} merges, CLIP's vocabulary needs {N_MERGES}")
    merges = []
    for i, line in enumerate(body, start=2):
        parts = line.split()
        if len(parts) != 2:
            raise TokenizerBuildError(f"{bpe_path}: line {i} is not a merge pair: {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + [a + b for a, b in merges] + [SOT, EOT]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE or vocab[SOT] != SOT_ID or vocab[EOT] != EOT_ID:
        raise TokenizerBuildError(
            f"vocabulary has {len(vocab)} distinct tokens (SOT {vocab.get(SOT)}, EOT {vocab.get(EOT)}); "
            f"CLIP's has {VOCAB_SIZE} with SOT {SOT_ID}, EOT {EOT_ID}")
    return vocab


def _class(codepoints) -> str:
    """A regex character class body (Oniguruma syntax) for a set of code points, as ranges."""
    cps = sorted(set(codepoints))
    out, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        lo, hi = cps[i], cps[j]
        out.append(f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}")
        i = j + 1
    return "".join(out)


def _python_whitespace() -> list[int]:
    """Code points str.split() treats as whitespace (what open_clip's whitespace_clean collapses)."""
    return [c for c in range(0x110000) if chr(c).isspace()]


def _regex_whitespace() -> list[int]:
    """Code points the `regex` module's \\s matches (the gaps of CLIP's pre-tokenisation regex)."""
    import regex
    pat = regex.compile(r"\s")
    return [c for c in range(0x110000) if pat.match(chr(c))]


def _ftfy_tables() -> tuple[dict[str, str], list[int], str, str]:
    """(single-character replacements, control characters to delete, single-quote class, double-quote
    class) from ftfy's own data, in the order ftfy applies them."""
    import ftfy.chardata as cd
    repl: dict[str, str] = {}
    # fix_c1_controls: C1 controls decoded as (sloppy) Windows-1252, as browsers do.
    import ftfy.bad_codecs  # noqa: F401  (registers 'sloppy-windows-1252')
    for b in range(0x80, 0xA0):
        repl[chr(b)] = bytes([b]).decode("sloppy-windows-1252")
    for cp, s in cd.LIGATURES.items():
        repl[chr(cp)] = s
    for cp, s in cd.WIDTH_MAP.items():
        repl[chr(cp)] = s
    controls = sorted(cd.CONTROL_CHARS)
    single = cd.SINGLE_QUOTE_RE.pattern
    double = cd.DOUBLE_QUOTE_RE.pattern
    return repl, controls, single, double


def _escape_literal(s: str) -> str:
    return "".join(f"\\x{{{ord(c):X}}}" for c in s)


def build_tokenizer(bpe_path: Path, context_length: int = CONTEXT_LENGTH):
    """Returns a tokenizers.Tokenizer equivalent to open_clip's SimpleTokenizer (clean='lower')."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors

    merges = read_merges(bpe_path)
    vocab = build_vocab(merges)
    bpe = models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>", continuing_subword_prefix="",
                     unk_token=None, fuse_unk=False, byte_fallback=False, ignore_merges=False)
    tok = Tokenizer(bpe)

    repl, controls, single_q, double_q = _ftfy_tables()
    steps = []
    # --- ftfy.fix_text (the fixers that apply to text that is not mojibake) ---
    # unescape_html runs first in ftfy ('auto': only when the text has no '<'); the two
    # html.unescape passes below cover the entities listed in _ENTITIES in either case.
    # fix_c1_controls, fix_latin_ligatures, fix_character_width: single-character tables.
    # Characters mapping to the same string share one Replace (a character class).
    by_target: dict[str, list[int]] = {}
    for src, dst in repl.items():
        by_target.setdefault(dst, []).append(ord(src))
    for dst, srcs in by_target.items():
        steps.append(normalizers.Replace(Regex(f"[{_class(srcs)}]"), dst))
    # uncurl_quotes
    steps.append(normalizers.Replace(Regex(double_q), '"'))
    steps.append(normalizers.Replace(Regex(single_q), "'"))
    # fix_line_breaks: every line break is whitespace, collapsed below anyway.
    # remove_terminal_escapes, remove_control_chars
    steps.append(normalizers.Replace(Regex(r"\x{1B}\[(?:[0-9]|;)*[a-zA-Z]"), ""))
    steps.append(normalizers.Replace(Regex(f"[{_class(controls)}]"), ""))
    steps.append(normalizers.NFC())
    # --- html.unescape(html.unescape(text)) for the common entities ---
    for _ in range(2):
        for ent, ch in _ENTITIES:
            steps.append(normalizers.Replace(Regex(ent), ch))
    # --- strip + " ".join(text.split()) ---
    ws = f"[{_class(_python_whitespace())}]+"
    steps.append(normalizers.Replace(Regex(ws), " "))
    steps.append(normalizers.Strip(left=True, right=True))
    # --- str.lower(): Python applies the final-sigma rule; per-character lower-casing does not ---
    # (Unicode's Final_Sigma: a cased letter before, skipping case-ignorables, and none after.) zoom's
    # tokenizers build uses fancy-regex, whose look-behinds must have a constant size: one step per
    # number of case-ignorables between the cased letter and the sigma (0..3).
    for k in range(4):
        ign = r"\p{Case_Ignorable}" * k
        steps.append(normalizers.Replace(
            Regex(rf"(?<=\p{{Cased}}{ign})\x{{3A3}}(?!\p{{Case_Ignorable}}*\p{{Cased}})"), "\u03c2"))
    steps.append(normalizers.Lowercase())
    tok.normalizer = normalizers.Sequence(steps)

    word = _WORD_PATTERN.replace("WS", _class(_regex_whitespace()))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(word), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.Sequence([
        decoders.Replace("</w>", "\u0120"),  # the byte-level character of a space
        decoders.ByteLevel(),
        decoders.Strip(" ", 0, 1),
    ])
    tok.add_special_tokens([AddedToken(SOT, special=True, normalized=True),
                            AddedToken(EOT, special=True, normalized=True)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SOT}:0 $A:0 {EOT}:0",
        pair=f"{SOT}:0 $A:0 {EOT}:0 {SOT}:1 $B:1 {EOT}:1",
        special_tokens=[(SOT, SOT_ID), (EOT, EOT_ID)],
    )
    tok.enable_truncation(max_length=context_length, strategy="longest_first", direction="right")
    tok.no_padding()
    if tok.token_to_id(SOT) != SOT_ID or tok.token_to_id(EOT) != EOT_ID:
        raise TokenizerBuildError("special token ids moved; expected 49406/49407")
    return tok


def write_tokenizer(bpe_path: Path, out: Path, context_length: int = CONTEXT_LENGTH) -> None:
    tok = build_tokenizer(bpe_path, context_length)
    data = json.loads(tok.to_str())
    out.write_text(json.dumps(data, ensure_ascii=False, indent=None, separators=(",", ":")), encoding="utf-8")


# Parity prompts: the kind zoom uses plus punctuation, case, numbers, unicode, apostrophes, HTML,
# whitespace, over-long prompts and near-empty ones.
PARITY_PROMPTS = [
    "a face",
    "a photo of a smiling face",
    "A face with BLOND hair, on a dark background.",
    "a grinning person with pale skin",
    "Portrait of someone frowning; café lighting!",
    "zxqv unknownword photographed",
    "It's a photo of a dog's toy; they're here, we've been, I'm sure you'll, he'd",
    "IT'S SHOUTING'S AND 'QUOTES' \"double\"",
    "the year 2024, 3.14159 and 1,000,000 people (approx.)",
    "a 4k HDR 16:9 image @ 60fps #nofilter",
    "e-mail: someone@example.com, url https://example.org/a?b=c&d=e",
    "naïve résumé façade jalapeño Ångström",
    "Straße, ŒUVRE, İstanbul, ΟΔΟΣ ΣΟΦΟΣ",
    "日本語のテキスト、中文文本。",
    "한국어 문장입니다",
    "Привет, мир! Как дела?",
    "مرحبا بالعالم",
    "emoji 😀👍🏽 and flags 🇫🇷 and ZWJ 👨‍👩‍👧",
    "“curly quotes” and ‘single’ ones — em dash – en dash … ellipsis",
    "ligatures: ﬁsh ﬂour ﬀ ﬃ",
    "ｆｕｌｌｗｉｄｔｈ ＴＥＸＴ １２３ and halfwidth ｶﾀｶﾅ",
    "tom &amp; jerry &lt;3 &quot;quoted&quot; it&#39;s &amp;amp;",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em-space\u3000ideographic",
    "",
    " ",
    ".",
    "!!!???",
    "a",
    "A",
    "x" * 100,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    " ".join(["word"] * 90),
    " ".join(f"token{i}" for i in range(60)),
    "a photo of a " + "very " * 80 + "big cat",
    "mixedCASE camelCase snake_case kebab-case PascalCase",
    "numbers 0123456789 and ½ ² ³ ① Ⅻ",
    "math: x^2 + y^2 = z^2, a<b>c, 50% off, $5.99, €10, £3",
    "control\x07chars\x1b[31mred\x1b[0m and \u200bzero width",
    "<start_of_text> literal <end_of_text> and <|endoftext|>",
    "a face in front of a bright background",
    "a face with blond hair",
    "a surprised face with an open mouth",
    "a face in front of green foliage",
    "a face in front of a blue sky",
    "ain't can't won't shouldn't y'all o'clock rock'n'roll",
    "''s 's 'S ''' '",
    "a photo of a {}.",
]


def reference_ids(ref_tokenizer, texts: list[str], context_length: int = CONTEXT_LENGTH) -> list[list[int]]:
    """open_clip's rows [N, context_length] (zero-padded), as lists."""
    return [[int(v) for v in row] for row in ref_tokenizer(texts, context_length=context_length).numpy()]


MOJIBAKE = "ftfy.fix_text repairs this text as mojibake (fix_encoding, not replicated)"


HTML = "an HTML entity outside the replicated set (or ftfy's all-caps entities)"


def replicated_unescape(text: str) -> str:
    """What the normaliser's entity steps do (two passes over _ENTITIES)."""
    import re
    for _ in range(2):
        for ent, ch in _ENTITIES:
            text = re.sub(ent, ch, text)
    return text


def _mismatch_cause(text: str) -> str | None:
    """A known, documented cause of a mismatch, or None."""
    import ftfy
    if ftfy.fix_text(text) != ftfy.fix_text(text, fix_encoding=False):
        return MOJIBAKE
    full = html.unescape(html.unescape(ftfy.fix_text(text, fix_encoding=False)))
    mine = replicated_unescape(ftfy.fix_text(text, fix_encoding=False, unescape_html=False))
    if full != mine:
        return HTML
    return None


def python_encoder(tokenizer_json: Path):
    """texts -> [(ids, special_tokens_mask, attention_mask)] with the Python `tokenizers` binding (its
    regex engine is Oniguruma; zoom's Rust build uses fancy-regex: see clip_checks.rust_encoder)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tokenizer_json))

    def encode(texts):
        out = []
        for t in texts:
            e = tok.encode(t, add_special_tokens=True)
            out.append((list(e.ids), list(e.special_tokens_mask), list(e.attention_mask)))
        return out
    return encode


def check_parity(tokenizer_json: Path, ref_tokenizer, texts: list[str] | None = None,
                 context_length: int = CONTEXT_LENGTH, encoder=None, library: str | None = None) -> dict:
    """Compares tokenizer.json's encodings (Python binding by default, or `encoder`) with open_clip's
    tokenizer, as zoom uses them: the ids then zeros up to max_tokens (src/models/clip.rs) against
    open_clip's zero-padded rows; and the special-tokens / attention masks zoom reads."""
    texts = PARITY_PROMPTS if texts is None else texts
    encoder = encoder or python_encoder(tokenizer_json)
    ref = reference_ids(ref_tokenizer, texts, context_length)
    encs = encoder(texts)
    mismatches = []
    specials_ok = True
    truncated = 0
    for text, want, (got, special, mask) in zip(texts, ref, encs):
        padded = (got + [0] * context_length)[:context_length]
        if len(got) > context_length:
            mismatches.append({"text": text, "problem": f"{len(got)} ids, over {context_length}"})
        elif padded != want:
            mismatches.append({"text": text, "open_clip": want[:len(got) + 2], "tokenizer_json": got,
                               "cause": _mismatch_cause(text)})
        if len(got) == context_length:
            truncated += 1
        if special != [1] + [0] * (len(got) - 2) + [1] or any(m != 1 for m in mask):
            specials_ok = False
    return {
        "reference": "open_clip.get_tokenizer (SimpleTokenizer, clean='lower')",
        "library": library or "tokenizers (Python binding, Oniguruma regex)",
        "texts_compared": len(texts),
        "texts_truncated_at_77": truncated,
        "mismatches": len(mismatches),
        "mismatches_unexplained": sum(1 for m in mismatches if m.get("cause") is None),
        "mismatches_ftfy_mojibake_repair": sum(1 for m in mismatches if m.get("cause") == MOJIBAKE),
        "mismatches_rare_html_entity": sum(1 for m in mismatches if m.get("cause") == HTML),
        "mismatch_examples": mismatches[:5],
        "special_tokens_mask_and_attention_mask_ok": specials_ok,
    }


def decode_roundtrip(tokenizer_json: Path, texts: list[str]) -> list[tuple[str, str]]:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tokenizer_json))
    return [(t, tok.decode(tok.encode(t).ids, skip_special_tokens=True)) for t in texts]


def _python_clean(text: str) -> str:  # for debugging: open_clip's cleaning with the stdlib only
    import ftfy
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).strip().lower()


if __name__ == "__main__":  # quick manual check: python clip_bpe.py OUT.json
    import sys
    import open_clip
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    out = Path(sys.argv[1])
    write_tokenizer(bpe, out)
    print(json.dumps(check_parity(out, open_clip.get_tokenizer("ViT-B-32")), indent=1, ensure_ascii=False))
