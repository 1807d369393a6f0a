"""Reports: MLflow tracking, the results table, paired comparisons, figures, Markdown/HTML/terminal.

- :mod:`.tracking`: ``MLflowTracker`` (the runners' tracker) and the sweep's parent/child runs;
  reading a sweep back from MLflow.
- :mod:`.results`: results.csv -> the table (mean ± std over seeds per algo x domain x metric).
- :mod:`.stats`: paired hierarchical bootstrap of per-domain differences against a baseline.
- :mod:`.paper`: the QoQ-Med paper's numbers (arXiv 2506.00711), shown beside ours.
- :mod:`.figures`: matplotlib figures; :mod:`.render`: Markdown, HTML and terminal renderers.
- :mod:`.report`: builds ``report.md``, ``report.html`` and ``figures/`` of a run.
- :mod:`.progress`: the terminal progress bars of ``rlbench-med run``.
"""
