"""Duly's own tables: SQLAlchemy 2 models, repositories and Alembic migrations."""
