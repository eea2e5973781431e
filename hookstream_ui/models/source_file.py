"""Uploaded files, stored in the database in chunks: web and workers share no filesystem,
and a chunked file is written and read as a stream, never whole in memory."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import EnvScoped, Model, Timestamps, new_id

CHUNK_SIZE = 1024 * 1024


class SourceFile(EnvScoped, Timestamps, Model):
    __tablename__ = "source_files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("file"))
    source_id: Mapped[str] = mapped_column(
        ForeignKey("source_connections.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(10))
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))


class SourceFileChunk(Model):
    __tablename__ = "source_file_chunks"

    file_id: Mapped[str] = mapped_column(ForeignKey("source_files.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
