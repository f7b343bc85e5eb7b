"""Statement intake (R1, R2): one parser per real file format, each producing the normalised
lines of ``statements.model`` after checking the file's own totals."""
