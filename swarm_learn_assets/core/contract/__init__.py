"""The landing-record contract of DESIGN §4: its schema as data, the validation that splits good
rows from quarantined ones (with a reason), typed records for row-at-a-time code, and the importer
of the Rust `FileRecordStore` JSON Lines."""
