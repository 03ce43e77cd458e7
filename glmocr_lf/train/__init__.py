"""Training: plan a launch (plan.py), fit it to the machine (fit.py), run and follow it (run.py)."""
