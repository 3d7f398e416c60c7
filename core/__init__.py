"""driftloop's floor: facts every layer shares (metrics, errors, ...). Imports nothing of ours."""
