-- Free space inside a table's files (MySQL data_free) and when its data last changed
-- (MySQL update_time), for the statistics API and fragmentation trends.
ALTER TABLE table_stats ADD COLUMN free_bytes REAL;
ALTER TABLE table_stats ADD COLUMN last_modified INTEGER;
