"""A real multi-process function-call detection pipeline over a Python source tree, instrumented with the emitters.

Run it with `python -m emitters.demo` (see `--help`). Modules: `calls` (pure
call detection), `tree` (scanning, incremental change detection, churn),
`cache` (the breadcrumb LRU), `worker` and `extractor` (the process pool),
`faults` (injected faults), `topology` (which component depends on which), `instruments` (emitters and control clients),
`pipeline` (the loop). Importing it does no work.
"""
