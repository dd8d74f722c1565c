"""Extension instances, created unbound and initialised in the app factory."""

from __future__ import annotations

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from flask_telemetry import Telemetry

db = SQLAlchemy()
migrate = Migrate()
telemetry = Telemetry()
