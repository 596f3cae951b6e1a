"""The scale-out engine: the same monitor on Faust and Kafka (see docs/scale-out.md).

Import `processors.scaleout.app` only where the engine runs: it imports faust
(the `kafka` extra). `ordering` and `fold` do not.
"""
