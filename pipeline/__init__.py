"""The top floor: orchestration over every stage (the ``mksgn`` command line, ``demo``, ``sweep``,
``doctor``). It may import any stage; no stage and nothing in the core imports it."""
