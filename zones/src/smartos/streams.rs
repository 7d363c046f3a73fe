//! (being written) Streams of SmartOS zones.
