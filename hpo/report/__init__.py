"""What comes out of a stored study: an HTML report and a portable JSON archive.

::

    import hpo
    from hpo.report import export_study, import_study, write_report

    write_report(hpo.load_study("quickstart", "sqlite:///quickstart.db"), "report.html")
    archive = export_study("quickstart", "sqlite:///quickstart.db")        # plain JSON data
    import_study(archive, "postgresql://hpo@db/hpo")                       # the same study, elsewhere
"""

from __future__ import annotations

from hpo.report._archive import ARCHIVE_FORMAT, export_study, import_study
from hpo.report._figures import Chart, study_charts
from hpo.report._page import THROUGHPUT_KEYS, render_report, write_report

__all__ = [
    "ARCHIVE_FORMAT",
    "THROUGHPUT_KEYS",
    "Chart",
    "export_study",
    "import_study",
    "render_report",
    "study_charts",
    "write_report",
]
