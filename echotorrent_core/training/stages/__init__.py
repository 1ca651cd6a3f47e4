"""Built-in training stages (`vae`, `teacher`, `student`) and their shared model-side helpers.

The registry imports every module here on the first lookup; helper modules define no stage and have no side effects.
"""
