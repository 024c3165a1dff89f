//! A library's contents: the folders it indexes (locations), one row per file and folder under
//! them, content ids, a live watcher and thumbnails. Everything here is synchronous and
//! network-free; `ferry-core` runs it on blocking threads and turns its progress into events.

pub mod serve;
pub mod thumb;
