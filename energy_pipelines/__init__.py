"""Energy Ingestion Engine.

landing files -> validate -> transform -> load -> hot status -> daily analytics.
"""
