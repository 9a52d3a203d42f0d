"""Reports a person reads: text and Markdown tables, and report.html rendered from templates."""
