"""The bare WSGI app of the HTTP limit: what serving one small JSON answer costs, and nothing else.

The same app as the shared ``limit.sh`` of the team's machines; :mod:`benchmarks.wrk` serves it
with the same gunicorn layout as the credenza server it measures, so a ratio compares the two
apps and not two servers.
"""

import json


def application(environ, start_response):
    body = json.dumps({"Code": "Success", "AccessKeyId": "ASIA" + "X" * 16}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
