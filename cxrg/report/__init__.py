"""`cxrg report`: one HTML page per bench run to look at it: the summary table and CI chart, a gallery of
every sample with each model's heatmap over the radiograph and the boxes, sorting, filtering and paging in
the page, a large view with the Otsu mask, the paired "where does A beat B" strip, and every failed or
skipped sample with its reason. Plain HTML and vanilla JavaScript; pictures in RUN_DIR/report_files/ (or
embedded); no server, no network. See docs/report.md."""

from cxrg.report.writer import REPORT, write_report

__all__ = ["REPORT", "write_report"]
