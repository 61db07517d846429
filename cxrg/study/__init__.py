"""The reader study of Appendix J: raters score heatmaps 1-5 in a browser, then the scores are compared with
CNR and mIoU.

- ``create``: draw cases from bench runs (stratified per class, spread over locations, seeded) and copy what
  the page shows (a display-windowed radiograph, a coloured heatmap per model) into a study folder with a
  SQLite database (``db``);
- ``server``: a standard-library web server for the rating page (``page``), loopback by default;
- ``analyse``: the ratings CSV, and the statistics (``stats``): mean +- sd per rater and model, Spearman rho
  against CNR/mIoU, the paired delta analysis between two models, inter-rater agreement, a figure and a
  results.md.
"""

from __future__ import annotations

# The paper's five criteria (Appendix J), in our words.
CRITERIA: tuple[tuple[int, str, str], ...] = (
    (1, "very poor", "mostly irrelevant regions highlighted; little or no overlap with relevant areas"),
    (2, "poor", "some correct activation, but primarily irrelevant"),
    (3, "moderate",
     "partial alignment with relevant regions, but substantial activation on irrelevant areas"),
    (4, "good", "mostly correct, with minor leakage or slight under-representation"),
    (5, "excellent", "predominantly relevant regions highlighted, with minimal to no irrelevant activation"),
)
SCORES = tuple(score for score, _, _ in CRITERIA)
