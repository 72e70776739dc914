"""Works around a CPython 3.11 parser bug in the schemathesis venv (python/cpython#106905).

Hypothesis describes a lambda by parsing its source; on CPython 3.11 parsing a deeply nested source
can fail with "SystemError: AST constructor recursion depth mismatch", which aborts a schemathesis
run with a Runtime Error that has nothing to do with the API under test. A description is only
text for messages, so on that error it falls back to Hypothesis's own unknown-lambda form.

The same bug fired once more while schemathesis loaded its transports, which it imports lazily on
first use, deep inside Hypothesis's generation ("AST constructor recursion depth mismatch" from
`schemathesis.transport.get`). They are loaded here, at interpreter start, on a shallow stack.

Loaded at interpreter start by phoenix_shims.pth (scripts/lib/services.sh, ensure_schemathesis).
"""

import importlib
import sys

if sys.version_info[:2] == (3, 11):
    try:
        from hypothesis.internal import lambda_sources as _lambda_sources
    except Exception:  # no hypothesis here (yet): nothing to mend
        _lambda_sources = None
    if _lambda_sources is not None and hasattr(_lambda_sources, "_lambda_description"):
        _describe = _lambda_sources._lambda_description

        def _lambda_description_surviving_the_parser_bug(f, *args, **kwargs):
            try:
                return _describe(f, *args, **kwargs)
            except SystemError:
                return "lambda: <unknown>"

        _lambda_sources._lambda_description = _lambda_description_surviving_the_parser_bug

    for _transport in ("requests", "asgi", "wsgi"):
        try:
            importlib.import_module(f"schemathesis.transport.{_transport}")
        except Exception:  # no schemathesis here (yet), or an optional dependency missing: nothing to load
            pass
