from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "billionsongs.web.accounts"
    label = "accounts"
    verbose_name = "Accounts"
