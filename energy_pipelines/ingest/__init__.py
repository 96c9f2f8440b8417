"""A stream's files through the stages: landing -> validate -> transform -> load.

- stream.py: the stage driver: waiting files planned into batches, read ahead, loaded, with
  the error policy written once;
- chunks.py: landing -> validate -> transform of a batch's files, as chunks of rows;
- batch.py: one batch loaded in one transaction, exactly once per file;
- files.py: a file's typed states and its outcome.
"""

from energy_pipelines.ingest.files import FileOutcome
from energy_pipelines.ingest.stream import StreamOutcomes, ingest_stream

__all__ = ["FileOutcome", "StreamOutcomes", "ingest_stream"]
