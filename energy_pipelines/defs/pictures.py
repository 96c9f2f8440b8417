"""Pictures in materialization metadata, kept small in Dagster's event log.

A picture inline in metadata is stored with every materialization event, and the UI can only
show a picture that is inline (a file path cannot be opened by the browser). So a picture is
stored as a palette PNG (a quarter of matplotlib's size, the same to the eye for these charts),
only when it differs from the one the asset's latest materialization showed (of the same
partition), and only up to MAX_INLINE_BYTES; otherwise the metadata says where it is."""

import base64
import hashlib
import io

import dagster as dg
from PIL import Image

# A palette PNG of the fleet chart is about 16 KB; a picture past this stays out of the log.
MAX_INLINE_BYTES = 64 * 1024
_PALETTE_COLORS = 64
DIGEST_KEY = "picture_sha256"


def compact_png(png: bytes) -> bytes:
    """The picture with a palette of _PALETTE_COLORS colors (charts have few)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(colors=_PALETTE_COLORS).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _latest_shown(context: dg.AssetExecutionContext) -> tuple[str | None, str | None]:
    """The picture digest and run of the asset's (partition's) latest materialization."""
    key = context.asset_key
    partitions = [context.partition_key] if context.has_partition_key else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None, None
    digest = records[0].asset_materialization.metadata.get(DIGEST_KEY)
    return (None if digest is None else str(digest.value)), records[0].run_id


def picture_metadata(
    context: dg.AssetExecutionContext, key: str, png: bytes, alt: str, where: str | None = None
) -> dict[str, dg.MetadataValue]:
    """Metadata `key` (the picture, or why it is not inline) and the picture's digest; `where`
    names a file holding the full picture."""
    digest = hashlib.sha256(png).hexdigest()
    shown, run_id = _latest_shown(context)
    also = f"; the full picture is at {where}" if where else ""
    if shown == digest:
        text = f"_unchanged since run {run_id}, whose materialization shows it{also}_"
    else:
        small = compact_png(png)
        if len(small) > MAX_INLINE_BYTES:
            text = f"_too large to keep in the event log ({len(small) // 1024} KB){also}_"
        else:
            text = f"![{alt}](data:image/png;base64,{base64.b64encode(small).decode()})"
    return {key: dg.MetadataValue.md(text), DIGEST_KEY: dg.MetadataValue.text(digest)}
