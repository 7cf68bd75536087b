"""schemathesis hooks for the locally served API (scripts/schemathesis/schemathesis.toml)."""

import schemathesis


@schemathesis.hook
def before_load_schema(context, raw_schema):
    # Deployed, API Gateway checks SigV4 before the function runs; locally nothing does,
    # so the local API is tested as the function sees it: without the security scheme.
    raw_schema.pop("security", None)


@schemathesis.hook
def filter_body(context, body):
    # `cargo lambda watch` answers 500 itself, before the function sees the request,
    # to a body that is not UTF-8 text (API Gateway base64-encodes such a body; the
    # handler's 400 for it is tested in functions/api/tests/handlers.rs).
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _describe_lambdas_safely():
    # hypothesis names a lambda by parsing its module's source; with schemathesis's 220 KB
    # coverage module, CPython 3.11.7's parser (these machines' python3) raises
    # "SystemError: AST constructor recursion depth mismatch" at random. The name is only
    # for messages, so a parser failure gives a plain one instead of ending the operation.
    from hypothesis.internal import lambda_sources

    describe = lambda_sources._lambda_description

    def described(f, *args, **kwargs):
        try:
            return describe(f, *args, **kwargs)
        except SystemError:
            return "lambda: <source not parsed>"

    lambda_sources._lambda_description = described


_describe_lambdas_safely()
