"""UbiOps Organizations API emulator: an in-memory, deterministic Starlette app run by uvicorn.

It shares no code with the pipeline, only the HTTP contract. Modules, one concept each:

* ``periods``: date parsing, anchored month arithmetic, usage buckets;
* ``model``: the records (users, memberships, projects, organizations, usage arrays);
* ``state``: the API rules over the in-memory world, ground-truth helpers;
* ``demo``: the deterministic demo data set, ``SCENARIO``, budgets and limits, scaling;
* ``ratelimit`` and ``faults``: per-client rate limiting and fault injection;
* ``app``: HTTP routes and the outer ASGI wrapper; ``server``: the background-thread handle
  (``EmulatorServer``, ``EmulatorConfig``); ``cli``: ``usage-etl emulator``.

See ``emulator/README.md`` for the interface.
"""
