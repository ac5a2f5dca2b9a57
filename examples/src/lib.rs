//! Runnable examples of Varve; see the binaries in `src/bin/`.
