"""How missing runs get made: one floor below the reports, one above the experiments' helpers.

* ``runner``: find-or-run, the one rule for reusing a stored run (a COMPLETED run of an
  equal config, made on the same data files) and for making it in this process;
* ``needs``: what a report declares it needs (``Need``, ``After``, ``run_id``) and
  ``gather``, which finds or makes those runs in the order declared;
* ``launch``: the plan of a report's missing runs and the executors that run it (local
  subprocesses, Slurm job arrays) through submitit;
* ``preflight``: the data check before any run starts.

``lfr_report.report`` reaches this package only through ``report/spec.py`` (a report's
``gather`` and ``build``); nothing here imports the reports.
"""
