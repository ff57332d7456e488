"""The report: tables, figures, the HTML page and the published numbers beside ours."""
