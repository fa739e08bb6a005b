"""credenza's client library: fresh credentials from a credenza broker."""

from credenza.client.auth import Auth, AuthError, OAuthError, get_default_auth, set_default_auth

__all__ = ["Auth", "AuthError", "OAuthError", "get_default_auth", "set_default_auth"]
