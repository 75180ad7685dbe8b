"""Running many scenarios and keeping what they give: sweeps, result tables and their manifest."""
