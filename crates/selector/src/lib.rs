//! skiff-selector (being written).
