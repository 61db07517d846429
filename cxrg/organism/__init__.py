"""The model organism: a small text-conditioned LDM of the real classes, trained here on chest phantoms.

phantoms.py draws the phantoms and their captions, train.py trains and writes the weights in the real
on-disk layout, heldout.py writes held-out benchmark sets in MS-CXR format, perturb.py makes the
swapped / re-initialised anatomy rows of the tuning experiment. See docs/organism.md.
"""
