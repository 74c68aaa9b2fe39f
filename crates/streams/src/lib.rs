//! skiff-streams (being written).
