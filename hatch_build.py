"""Build hook: compile the message catalogues (.po → .mo) into every wheel, editable too.

The compiled catalogues are not kept in git (they are build output); a wheel carries them,
so an installed package translates with no step of its own. A source tree also compiles
them when the app starts (``newsletters.i18n.compile_stale``).
"""

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CataloguesHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version, build_data):
        """Compile each catalogue and add the .mo files to the build's artifacts."""
        root = Path(self.root) / "newsletters" / "translations"
        for po in sorted(root.glob("*/LC_MESSAGES/messages.po")):
            with po.open("rb") as source:
                catalogue = read_po(source)
            with po.with_suffix(".mo").open("wb") as target:
                write_mo(target, catalogue)
        build_data["artifacts"].append("newsletters/translations/*/LC_MESSAGES/messages.mo")
