# A no-op, the python twin of handler.js: the time measured is the platform's, not the
# handler's. The first request an instance serves says so in its body, so the bench can
# check a cold sample was cold.
_cold = True


def noop(event, context):
    global _cold
    body = '{"cold":true}' if _cold else "{}"
    _cold = False
    return {"statusCode": 200, "body": body}
