"""Attributes, their labelers and the prompt phrasings of the face-CLIP image tower.

Every attribute is measured on the generated image by an *independent* labeler (the emotion classifier
or plain colour statistics; never the gender classifier or MTCNN, which demo configs diagnose).

Phrasings come in two disjoint sets: `train` (seen while training the image tower) and `heldout`
(synonyms/paraphrases never seen in training, used only for the zero-shot evaluation). Templates and
neutral prompts are split the same way. `demo` is the phrasing recommended for zoom's demo configs.
`tests` are the binary choices the tower is trained and evaluated on: (name, pole A, pole B), where a
pole is an attribute side ("+" or "-") or "neutral"; the image's label decides which pole is correct.
"""

from __future__ import annotations

TEMPLATES = {
    "train": ["{}", "a photo of {}", "a close-up photo of {}", "a portrait of {}", "a cropped photo of {}",
              "a low-resolution photo of {}", "a blurry photo of {}", "a picture of {}"],
    "heldout": ["an image of {}", "a snapshot of {}", "a rendering of {}", "{}, photographed up close",
                "a small headshot of {}"],
}

NEUTRAL = {
    "train": ["a face", "a person", "a human face", "someone's face"],
    "heldout": ["a headshot of someone", "an individual", "somebody"],
    "demo": "a face",
}

# labeler: what produces the label (see labelers.py); "+" is the attribute, "-" its opposite.
ATTRIBUTES = {
    "smiling": {
        "labeler": "emotion classifier (onnx/emotion): p(happy)",
        "+": {"train": ["a smiling face", "a happy face", "a face with a big smile", "a person who is smiling",
                        "a cheerful person showing teeth"],
              "heldout": ["a grinning face", "a joyful person", "someone beaming with delight"],
              "demo": "a smiling face"},
        "-": {"train": ["a face with a neutral expression", "a serious face", "a face that is not smiling",
                        "an expressionless person"],
              "heldout": ["a stern face", "someone keeping a straight face", "a solemn person"],
              "demo": "a face with a neutral expression"},
        "tests": [("+", "-"), ("+", "neutral")],
    },
    "surprised": {
        "labeler": "emotion classifier (onnx/emotion): p(surprise)",
        "+": {"train": ["a surprised face", "a face with an open mouth", "a shocked person",
                        "an astonished face with the mouth wide open"],
              "heldout": ["an amazed face", "a startled person gasping", "someone stunned, jaw dropped"],
              "demo": "a surprised face with an open mouth"},
        "-": {"train": ["a calm face", "a face that is not surprised", "a relaxed person"],
              "heldout": ["a composed face", "someone unfazed and at ease"],
              "demo": "a calm face"},
        "tests": [("+", "-"), ("+", "neutral")],
    },
    "blond_hair": {
        "labeler": "colour statistics: luminance of the top-centre region (hair; hats and high backgrounds "
                   "leak in)",
        "+": {"train": ["a face with blond hair", "a person with light hair", "a fair-haired person",
                        "a face with white or grey hair"],
              "heldout": ["a blonde", "someone with golden locks", "a person with platinum tresses"],
              "demo": "a face with blond hair"},
        "-": {"train": ["a face with dark hair", "a person with black hair", "a dark-haired person",
                        "a face with dark brown hair"],
              "heldout": ["a brunette", "someone with raven locks", "a person with jet-black tresses"],
              "demo": "a face with dark hair"},
        "tests": [("+", "-"), ("+", "neutral"), ("-", "neutral")],
    },
    "pale_skin": {
        "labeler": "colour statistics: luminance of the central face region (skin tone confounded with "
                   "lighting)",
        "+": {"train": ["a face with pale skin", "a person with fair skin", "a light-skinned face",
                        "a face with very light skin"],
              "heldout": ["someone with a pale complexion", "a pallid face", "a person with porcelain skin"],
              "demo": "a face with pale skin"},
        "-": {"train": ["a face with dark skin", "a dark-skinned person", "a person with brown skin",
                        "a face with a deep skin tone"],
              "heldout": ["someone with a dark complexion", "a person with a deep brown complexion",
                          "a dark-complexioned individual"],
              "demo": "a face with dark skin"},
        "tests": [("+", "-"), ("+", "neutral"), ("-", "neutral")],
    },
    "bright_background": {
        "labeler": "colour statistics: luminance of the left and right image borders",
        "+": {"train": ["a face in front of a bright background", "a portrait on a white background",
                        "a person against a light backdrop"],
              "heldout": ["a face before a luminous, sunlit setting", "someone in an overexposed, glaring scene"],
              "demo": "a face in front of a bright background"},
        "-": {"train": ["a face in front of a dark background", "a portrait on a black background",
                        "a person against a dark backdrop"],
              "heldout": ["a face surrounded by darkness", "someone in a shadowy, unlit scene"],
              "demo": "a face in front of a dark background"},
        "tests": [("+", "-"), ("+", "neutral"), ("-", "neutral")],
    },
    "green_background": {
        "labeler": "colour statistics: greenness (G minus max(R, B)) of the left and right image borders",
        "+": {"train": ["a face in front of green leaves", "a portrait with a green background",
                        "a person outdoors in front of trees"],
              "heldout": ["someone standing in a leafy garden", "a face surrounded by foliage",
                          "a person in a park among grass and bushes"],
              "demo": "a face in front of green foliage"},
        "tests": [("+", "neutral")],
    },
    "blue_background": {
        "labeler": "colour statistics: blueness (B minus max(R, G)) of the left and right image borders",
        "+": {"train": ["a face in front of a blue sky", "a portrait with a blue background",
                        "a person outdoors under a blue sky"],
              "heldout": ["someone photographed against the sky", "a face with azure surroundings",
                          "a person beneath a clear cerulean sky"],
              "demo": "a face in front of a blue sky"},
        "tests": [("+", "neutral")],
    },
}


def pole_phrases(attr: str, pole: str, split: str) -> list[str]:
    """Phrases (before templating) for one pole of one attribute in `split` ('train'/'heldout'/'demo')."""
    src = NEUTRAL if pole == "neutral" else ATTRIBUTES[attr][pole]
    v = src[split]
    return [v] if isinstance(v, str) else list(v)


def sentences(phrases: list[str], split: str) -> list[str]:
    """Every phrase in every template of `split` (the demo phrasing is used bare, as zoom would)."""
    if split == "demo":
        return list(phrases)
    return [t.format(p) for p in phrases for t in TEMPLATES[split]]


def check_disjoint() -> None:
    """Held-out phrasings must never appear in training (the point of the evaluation)."""
    train, held = set(), set()
    for a, spec in ATTRIBUTES.items():
        for pole in ("+", "-"):
            if pole in spec:
                train |= set(spec[pole]["train"])
                held |= set(spec[pole]["heldout"])
    train |= set(NEUTRAL["train"])
    held |= set(NEUTRAL["heldout"])
    both = (train & held) | (set(TEMPLATES["train"]) & set(TEMPLATES["heldout"]))
    if both:
        raise ValueError(f"phrasings in both train and held-out sets: {sorted(both)}")
