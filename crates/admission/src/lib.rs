//! skiff-admission (being written).
