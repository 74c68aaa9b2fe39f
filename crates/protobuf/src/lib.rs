//! skiff-protobuf (being written).
