//! skiff-tables (being written).
