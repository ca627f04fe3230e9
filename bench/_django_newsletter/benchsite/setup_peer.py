"""Create the peer's schema and its one newsletter: ``python -m benchsite.setup_peer SLUG``."""

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchsite.settings")
django.setup()

from django.contrib.sites.models import Site  # noqa: E402
from django.core.management import call_command  # noqa: E402
from newsletter.models import Newsletter  # noqa: E402

call_command("migrate", verbosity=0, interactive=False)
Site.objects.update_or_create(id=1, defaults={"domain": "127.0.0.1", "name": "bench"})
slug = sys.argv[1] if len(sys.argv) > 1 else "bench"
newsletter, _ = Newsletter.objects.get_or_create(
    slug=slug,
    defaults={"title": "Bench", "email": "newsletters@bench.example.com", "sender": "Bench"},
)
newsletter.site.set([1])
print(f"newsletter {slug} ready")
