"""Minimal Coreset (MCS, Chen & Selvan): exact k-center / set-cover coresets with Pyomo + HiGHS."""
