"""Reporting: the paper's tables, evaluation summaries in Markdown, figures and
TensorBoard scalars."""
