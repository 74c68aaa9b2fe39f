//! skiff-agent (being written).
