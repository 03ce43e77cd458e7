"""Runtime plumbing every feature shares: names, errors, child processes, the machine, the
installed stack, model folders, file writes, shipped resources and the launch command."""
