"""The stepper behind ``lmstep step``: a pure session value (``session``), what is measured about states and
logits (``measure``), how tokens are written (``text``), the rich screens (``render``) and the key loop
(``keys``). Only ``keys`` touches the terminal."""
