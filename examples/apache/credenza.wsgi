# The WSGI script Apache's mod_wsgi loads. The configuration comes from SetEnv (see credenza.conf):
# CREDENZA_CONFIG, or afp-core's CONFIG_PATH and ACCOUNT_CONFIG_PATH, read on the first request.
from credenza.wsgi import application  # noqa: F401
