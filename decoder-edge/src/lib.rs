//! tenbit-edge library (decode/listen logic shared with the host CLI).

pub mod io;
