"""safeglass: attack, defend, measure and report on the safety of vision-language models.

The top-level package stays import-light (no torch) so that `safeglass list` is instant.
"""

from safeglass.api import component_options, judge, list_components, report, run
from safeglass.version import __version__

__all__ = ["__version__", "component_options", "judge", "list_components", "report", "run"]
