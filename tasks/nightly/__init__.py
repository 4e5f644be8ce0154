"""The nightly pipeline's parameters: the few choices a person makes, each stage's the rest."""
