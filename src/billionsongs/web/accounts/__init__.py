"""Accounts: sign-up and an account page; log in/out and password change/reset are Django's own views."""
