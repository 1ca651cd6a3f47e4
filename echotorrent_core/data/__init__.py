"""Training data: SynthTalk (synthtalk/), real-clip windows (clips.py) and the preprocessing cache (cache.py)."""
