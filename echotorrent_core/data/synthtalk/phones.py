"""Phone inventory (ARPAbet, as pocketsphinx aligns it) and the viseme target of each phone.

A viseme target is `(open, width, round, teeth)` in [0, 1]: jaw/lip opening, mouth-corner spread, lip protrusion /
rounding, and how much of the upper teeth shows. `DOMINANCE` says how strongly a phone imposes its shape on its
neighbours in the coarticulation model (`visemes.py`): bilabial closures and rounded vowels dominate, /h/ and
schwa barely do. espeak-ng mnemonics are mapped onto the same inventory (`espeak_to_arpabet`).
"""

from __future__ import annotations

SILENCE = "SIL"

# phone: (open, width, round, teeth)
VISEME_TARGETS: dict[str, tuple[float, float, float, float]] = {
    "SIL": (0.03, 0.50, 0.20, 0.00),
    "P": (0.00, 0.45, 0.30, 0.00), "B": (0.00, 0.45, 0.30, 0.00), "M": (0.00, 0.47, 0.25, 0.00),
    "F": (0.12, 0.55, 0.05, 1.00), "V": (0.12, 0.55, 0.05, 1.00),
    "TH": (0.22, 0.55, 0.05, 0.90), "DH": (0.22, 0.55, 0.05, 0.90),
    "T": (0.28, 0.58, 0.05, 0.75), "D": (0.28, 0.58, 0.05, 0.75), "N": (0.26, 0.56, 0.05, 0.70),
    "L": (0.32, 0.55, 0.05, 0.60),
    "S": (0.14, 0.62, 0.00, 1.00), "Z": (0.14, 0.62, 0.00, 1.00),
    "SH": (0.22, 0.38, 0.75, 0.80), "ZH": (0.22, 0.38, 0.75, 0.80),
    "CH": (0.24, 0.38, 0.70, 0.80), "JH": (0.24, 0.38, 0.70, 0.80),
    "K": (0.34, 0.55, 0.10, 0.45), "G": (0.34, 0.55, 0.10, 0.45), "NG": (0.30, 0.55, 0.10, 0.45),
    "HH": (0.40, 0.55, 0.10, 0.30),
    "R": (0.24, 0.38, 0.65, 0.30), "W": (0.14, 0.22, 1.00, 0.00), "Y": (0.26, 0.66, 0.00, 0.60),
    "AA": (1.00, 0.58, 0.15, 0.25), "AE": (0.85, 0.76, 0.00, 0.55), "AH": (0.68, 0.56, 0.10, 0.35),
    "AO": (0.80, 0.36, 0.70, 0.20), "AW": (0.85, 0.46, 0.50, 0.30), "AY": (0.85, 0.66, 0.05, 0.40),
    "EH": (0.60, 0.70, 0.00, 0.50), "ER": (0.40, 0.44, 0.50, 0.30), "EY": (0.52, 0.76, 0.00, 0.60),
    "IH": (0.42, 0.70, 0.00, 0.60), "IY": (0.30, 0.86, 0.00, 0.80), "OW": (0.60, 0.30, 0.90, 0.10),
    "OY": (0.65, 0.34, 0.75, 0.20), "UH": (0.40, 0.34, 0.80, 0.20), "UW": (0.28, 0.20, 1.00, 0.10),
}
PHONES: tuple[str, ...] = tuple(VISEME_TARGETS)  # index = phone id stored in the params files
PHONE_ID: dict[str, int] = {phone: index for index, phone in enumerate(PHONES)}
VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
BILABIALS = frozenset({"P", "B", "M"})

DOMINANCE: dict[str, float] = {phone: 1.0 for phone in PHONES}
DOMINANCE.update({"P": 3.0, "B": 3.0, "M": 3.0, "F": 2.0, "V": 2.0, "W": 2.0, "UW": 1.6, "OW": 1.4,
                  "HH": 0.3, "AH": 0.7, "SIL": 0.8, "K": 0.6, "G": 0.6, "NG": 0.6, "T": 0.8, "D": 0.8, "N": 0.8})

# espeak-ng (English) phoneme mnemonics -> ARPAbet
_ESPEAK: dict[str, str] = {
    "p": "P", "b": "B", "m": "M", "f": "F", "v": "V", "T": "TH", "D": "DH", "t": "T", "d": "D", "n": "N",
    "l": "L", "s": "S", "z": "Z", "S": "SH", "Z": "ZH", "tS": "CH", "dZ": "JH", "k": "K", "g": "G", "N": "NG",
    "h": "HH", "r": "R", "r-": "R", "w": "W", "j": "Y", "t#": "T", "?": "SIL", "x": "HH", "n-": "N", "l/": "L",
    "a": "AE", "aa": "AE", "a#": "AH", "A:": "AA", "A@": "AA", "A": "AA", "0": "AA", "V": "AH", "@": "AH",
    "@2": "AH", "@5": "AH", "@L": "L", "3": "ER", "3:": "ER", "E": "EH", "e@": "EH", "e": "EH", "I": "IH",
    "I2": "IH", "I#": "IH", "i": "IY", "i:": "IY", "i@": "IY", "i@3": "IY", "O:": "AO", "O@": "AO", "O": "AO",
    "o@": "OW", "oU": "OW", "U": "UH", "U@": "UH", "u:": "UW", "aI": "AY", "aI@": "AY", "aI3": "AY",
    "aU": "AW", "aU@": "AW", "eI": "EY", "OI": "OY", "IR": "IH", "VR": "AH", "O2": "AO", "w#": "W",
    "_": "SIL", "_:": "SIL", "_!": "SIL", "_^_": "SIL",
}


ESPEAK_MODIFIERS = frozenset({";"})  # palatalisation mark: belongs to the phone before it


def espeak_to_arpabet(mnemonic: str) -> str | None:
    """Map an espeak-ng phoneme mnemonic (stress marks stripped) to an ARPAbet phone of `PHONES`.

    Unknown mnemonics fall back on their longest known prefix (`aI@3` -> AY); pauses (`_...`) become SIL;
    modifiers (`;`) return None (they extend the phone before). Raises `ValueError` when nothing matches.
    """
    name = mnemonic.strip().lstrip("',%=")
    if name in ESPEAK_MODIFIERS:
        return None
    if not name or name.startswith("_"):
        return SILENCE
    for end in range(len(name), 0, -1):
        if name[:end] in _ESPEAK:
            return _ESPEAK[name[:end]]
    raise ValueError(f"unknown espeak-ng phoneme {mnemonic!r}")


def normalize_arpabet(phone: str) -> str:
    """pocketsphinx phone name (`AH`, `AH1`, `SIL`, `+NSN+`, ...) -> a phone of `PHONES` (noise -> SIL)."""
    name = phone.strip().upper().rstrip("012")
    return name if name in VISEME_TARGETS else SILENCE
