"""Every use lit-nn makes of a library's private names, one module per library.

Some things lit-nn needs have no public API: a subcommand's parser (jsonargparse), MLflow's
cap on HTTP retries and its module → distribution map. Private names change without notice
between releases, so they are kept here and nowhere else: each hook is one small function
saying why it is needed and which versions it was checked against, and
``tests/compat/test_compat.py`` has a test per hook that fails naming the hook when a release
changes what it relies on. ``tests/test_architecture.py`` keeps the rest of ``lit_nn`` from
reaching into private names. Modules here import only their library, never other lit-nn
packages.
"""
