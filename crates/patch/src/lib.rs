//! skiff-patch (being written).
