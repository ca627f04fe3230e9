"""A minimal Django project around django-newsletter: the peer of bench/signups.py."""
