"""The user's project and machine: `init`'s scaffold and `doctor`'s checks."""
