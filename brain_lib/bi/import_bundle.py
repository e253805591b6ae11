"""Import Brain's dashboard bundle into Superset, overwriting what an earlier import made.

Run by ``brain bi`` with the BI environment's Python (it imports Superset, not Brain):
``python import_bundle.py BUNDLE.zip USER``. ``superset import-dashboards`` keeps the
database, datasets and charts of an earlier import as they were (it overwrites the
dashboard only), so a changed dashboard.yaml or a new password of brain_bi would not
take; here each kind is imported with overwrite, databases first.
"""

import sys
import zipfile

import yaml
from flask import g
from superset.app import create_app

KINDS = ("Database", "SqlaTable", "Slice", "Dashboard")


def main(bundle: str, username: str) -> None:
    app = create_app()
    with app.app_context():
        from superset import security_manager
        from superset.commands.chart.importers.v1 import ImportChartsCommand
        from superset.commands.dashboard.importers.v1 import ImportDashboardsCommand
        from superset.commands.database.importers.v1 import ImportDatabasesCommand
        from superset.commands.dataset.importers.v1 import ImportDatasetsCommand
        from superset.commands.importers.v1.utils import get_contents_from_bundle

        g.user = security_manager.find_user(username=username)
        with zipfile.ZipFile(bundle) as z:
            contents = get_contents_from_bundle(z)
        metadata = yaml.safe_load(contents["metadata.yaml"])
        commands = (
            ImportDatabasesCommand,
            ImportDatasetsCommand,
            ImportChartsCommand,
            ImportDashboardsCommand,
        )
        for kind, command in zip(KINDS, commands, strict=True):
            files = dict(contents)
            files["metadata.yaml"] = yaml.safe_dump(dict(metadata, type=kind))
            command(files, overwrite=True).run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
