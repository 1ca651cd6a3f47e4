"""Procedural English sentences (every word in pocketsphinx's dictionary), deterministic from a numpy Generator.

Held-out clips draw from the same grammar with a separate random stream; the vocabulary is shared, the sentences
are not (they are drawn independently).
"""

from __future__ import annotations

import numpy as np

SUBJECTS = ("the old man", "my brother", "a young woman", "the teacher", "our neighbour", "the farmer",
            "my mother", "the pilot", "a small boy", "the baker", "her father", "the doctor", "a quiet girl",
            "the captain", "his sister", "the painter", "we", "they", "you", "the children")
VERBS = ("bought", "painted", "found", "carried", "moved", "opened", "washed", "played with", "looked at",
         "brought", "made", "fixed", "cooked", "loved", "wanted", "lost", "sold", "kept", "picked up", "pushed")
ADJECTIVES = ("blue", "heavy", "wooden", "small", "bright", "broken", "warm", "beautiful", "huge", "purple",
              "simple", "smooth", "quiet", "golden", "old", "new", "cheap", "yellow", "round", "shiny")
NOUNS = ("box", "boat", "chair", "window", "basket", "piano", "map", "book", "garden", "apple", "bottle",
         "mirror", "table", "bicycle", "umbrella", "jacket", "pumpkin", "lamp", "wheel", "teapot")
PLACES = ("near the river", "in the morning", "by the market", "after lunch", "on monday", "at the beach",
          "behind the house", "before the storm", "under the bridge", "in the evening", "with great care",
          "for a moment", "by the fire", "at the museum", "in the kitchen", "on the hill")
OPENERS = ("well", "oh", "yes", "so", "now", "look", "really", "maybe")


def sentence(rng: np.random.Generator) -> str:
    """One sentence such as 'well the old man painted a blue boat near the river'."""
    words = []
    if rng.random() < 0.3:
        words.append(OPENERS[rng.integers(len(OPENERS))])
    words += [SUBJECTS[rng.integers(len(SUBJECTS))], VERBS[rng.integers(len(VERBS))],
              "a" if rng.random() < 0.5 else "the", ADJECTIVES[rng.integers(len(ADJECTIVES))],
              NOUNS[rng.integers(len(NOUNS))]]
    if rng.random() < 0.7:
        words.append(PLACES[rng.integers(len(PLACES))])
    return " ".join(words)
