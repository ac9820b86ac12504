"""Built-in attacks: dcrobench's PGD, the official AutoAttack components (pyautoattack), ART (optional)."""
