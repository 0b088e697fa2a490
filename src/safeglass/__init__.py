"""safeglass: attack, defend, measure and report on the safety of vision-language models.

The top-level package stays import-light (no torch) so that `safeglass list` is instant.
"""

__version__ = "0.1.0"

from safeglass.api import component_options, judge, list_components, report, run  # noqa: E402

__all__ = ["__version__", "component_options", "judge", "list_components", "report", "run"]
