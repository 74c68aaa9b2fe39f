//! skiff-runtime (being written).
