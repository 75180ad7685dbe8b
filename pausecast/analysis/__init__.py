"""Pure functions over records: prediction against measurement, calibration from measured runs."""
