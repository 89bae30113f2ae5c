"""Board runs: a board file's cells (models x methods x attacks) scored in one pass per model."""
