//! skiff-openapi (being written).
